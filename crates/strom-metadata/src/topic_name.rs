//! Kafka's rules for topic names.

/// Longest legal topic name, as in Kafka.
pub const TOPIC_NAME_LENGTH_MAX: usize = 249;

/// Checks a topic name against Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`. Returns a message saying what is wrong.
pub fn validate_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("topic name is empty".to_string());
    }
    if name == "." || name == ".." {
        return Err(format!("topic name cannot be '{name}'"));
    }
    if name.len() > TOPIC_NAME_LENGTH_MAX {
        return Err(format!(
            "topic name is {} characters long, the limit is {TOPIC_NAME_LENGTH_MAX}",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '.' || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "topic name '{name}' contains '{bad}': only ASCII letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_legal_names() {
        for name in ["a", "orders", "game-events", "a.b_c-D9", &"x".repeat(249)] {
            assert!(validate_topic_name(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_illegal_names() {
        for name in ["", ".", "..", "a b", "a/b", "é", &"x".repeat(250)] {
            assert!(validate_topic_name(name).is_err(), "{name}");
        }
    }
}

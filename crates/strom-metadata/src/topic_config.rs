//! Topic configs: the keys Strom knows, their defaults, types and validation, by Kafka's names
//! and meanings.

use std::collections::BTreeMap;

/// Kafka's config value types (as in DescribeConfigs' `config_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `true` or `false`.
    Boolean,
    /// Free text.
    String,
    /// 32-bit integer.
    Int,
    /// 64-bit integer.
    Long,
    /// Floating point.
    Double,
    /// Comma-separated list.
    List,
}

impl ConfigType {
    /// The DescribeConfigs wire code of this type.
    pub fn wire_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

/// One topic config key Strom understands.
#[derive(Debug, Clone, Copy)]
pub struct ConfigKey {
    /// Kafka's name, e.g. `retention.ms`.
    pub name: &'static str,
    /// Kafka's default value, as text.
    pub default_value: &'static str,
    /// Value type.
    pub config_type: ConfigType,
    /// Smallest legal value for numbers.
    pub min: Option<i64>,
    /// Allowed values for enumerations (and list items).
    pub allowed: &'static [&'static str],
    /// One line of documentation.
    pub doc: &'static str,
}

const LONG_MAX: &str = "9223372036854775807";

/// Every topic config key Strom knows, sorted by name.
pub const TOPIC_CONFIG_KEYS: &[ConfigKey] = &[
    key(
        "cleanup.policy",
        "delete",
        ConfigType::List,
        None,
        &["delete", "compact"],
        "Retention policy: delete old segments, compact by key, or both.",
    ),
    key(
        "compression.type",
        "producer",
        ConfigType::String,
        None,
        &["producer", "uncompressed", "gzip", "snappy", "lz4", "zstd"],
        "Final compression of the topic's batches; 'producer' keeps what the producer sent.",
    ),
    key(
        "delete.retention.ms",
        "86400000",
        ConfigType::Long,
        Some(0),
        &[],
        "How long tombstones are kept on compacted topics.",
    ),
    key(
        "file.delete.delay.ms",
        "60000",
        ConfigType::Long,
        Some(0),
        &[],
        "Delay before a deleted segment file is removed.",
    ),
    key(
        "flush.messages",
        LONG_MAX,
        ConfigType::Long,
        Some(1),
        &[],
        "Fsync after this many messages.",
    ),
    key(
        "flush.ms",
        LONG_MAX,
        ConfigType::Long,
        Some(0),
        &[],
        "Fsync when the oldest unflushed message is this old.",
    ),
    key(
        "index.interval.bytes",
        "4096",
        ConfigType::Int,
        Some(0),
        &[],
        "Bytes between offset index entries.",
    ),
    key(
        "max.compaction.lag.ms",
        LONG_MAX,
        ConfigType::Long,
        Some(1),
        &[],
        "Longest time a message stays ineligible for compaction.",
    ),
    key(
        "max.message.bytes",
        "1048588",
        ConfigType::Int,
        Some(0),
        &[],
        "Largest record batch the topic accepts.",
    ),
    key(
        "message.timestamp.after.max.ms",
        LONG_MAX,
        ConfigType::Long,
        Some(0),
        &[],
        "How far in the future a CreateTime timestamp may be.",
    ),
    key(
        "message.timestamp.before.max.ms",
        LONG_MAX,
        ConfigType::Long,
        Some(0),
        &[],
        "How far in the past a CreateTime timestamp may be.",
    ),
    key(
        "message.timestamp.type",
        "CreateTime",
        ConfigType::String,
        None,
        &["CreateTime", "LogAppendTime"],
        "Whether record timestamps are the producer's or the broker's append time.",
    ),
    key(
        "min.cleanable.dirty.ratio",
        "0.5",
        ConfigType::Double,
        None,
        &[],
        "Dirty fraction of the log that triggers compaction.",
    ),
    key(
        "min.compaction.lag.ms",
        "0",
        ConfigType::Long,
        Some(0),
        &[],
        "Shortest time a message stays uncompacted.",
    ),
    key(
        "min.insync.replicas",
        "1",
        ConfigType::Int,
        Some(1),
        &[],
        "In-sync replicas needed for an acks=all write.",
    ),
    key(
        "preallocate",
        "false",
        ConfigType::Boolean,
        None,
        &[],
        "Preallocate segment files.",
    ),
    key(
        "retention.bytes",
        "-1",
        ConfigType::Long,
        Some(-1),
        &[],
        "Largest size of a partition before old segments are deleted; -1 means no limit.",
    ),
    key(
        "retention.ms",
        "604800000",
        ConfigType::Long,
        Some(-1),
        &[],
        "Age after which old segments are deleted; -1 means forever.",
    ),
    key(
        "segment.bytes",
        "1073741824",
        ConfigType::Int,
        Some(1024),
        &[],
        "Size at which the active segment rolls.",
    ),
    key(
        "segment.index.bytes",
        "10485760",
        ConfigType::Int,
        Some(4096),
        &[],
        "Size of a segment's offset index.",
    ),
    key(
        "segment.jitter.ms",
        "0",
        ConfigType::Long,
        Some(0),
        &[],
        "Random jitter subtracted from segment.ms.",
    ),
    key(
        "segment.ms",
        "604800000",
        ConfigType::Long,
        Some(1),
        &[],
        "Age at which the active segment rolls.",
    ),
    key(
        "unclean.leader.election.enable",
        "false",
        ConfigType::Boolean,
        None,
        &[],
        "Whether an out-of-sync replica may become leader.",
    ),
];

#[allow(clippy::too_many_arguments)]
const fn key(
    name: &'static str,
    default_value: &'static str,
    config_type: ConfigType,
    min: Option<i64>,
    allowed: &'static [&'static str],
    doc: &'static str,
) -> ConfigKey {
    ConfigKey {
        name,
        default_value,
        config_type,
        min,
        allowed,
        doc,
    }
}

/// Looks a key up by its Kafka name.
pub fn config_key(name: &str) -> Option<&'static ConfigKey> {
    TOPIC_CONFIG_KEYS.iter().find(|k| k.name == name)
}

/// Checks one key and value. Returns a message saying what is wrong.
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), String> {
    let Some(key) = config_key(name) else {
        return Err(format!("unknown topic config '{name}'"));
    };
    let value = value.trim();
    match key.config_type {
        ConfigType::Boolean => {
            if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                return Err(format!("{name} must be true or false, not '{value}'"));
            }
        }
        ConfigType::Int | ConfigType::Long => {
            let parsed: i64 = value
                .parse()
                .map_err(|_| format!("{name} must be an integer, not '{value}'"))?;
            if key.config_type == ConfigType::Int && i32::try_from(parsed).is_err() {
                return Err(format!("{name} must fit in 32 bits, not '{value}'"));
            }
            if let Some(min) = key.min {
                if parsed < min {
                    return Err(format!("{name} must be at least {min}, not {parsed}"));
                }
            }
        }
        ConfigType::Double => {
            let parsed: f64 = value
                .parse()
                .map_err(|_| format!("{name} must be a number, not '{value}'"))?;
            if !(0.0..=1.0).contains(&parsed) {
                return Err(format!("{name} must be between 0 and 1, not {parsed}"));
            }
        }
        ConfigType::String => {
            if !key.allowed.is_empty() && !key.allowed.contains(&value) {
                return Err(format!(
                    "{name} must be one of {}, not '{value}'",
                    key.allowed.join(", ")
                ));
            }
        }
        ConfigType::List => {
            for item in value.split(',').map(str::trim) {
                if !key.allowed.is_empty() && !key.allowed.contains(&item) {
                    return Err(format!(
                        "{name} items must be among {}, not '{item}'",
                        key.allowed.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Where an effective config value came from (DescribeConfigs' `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set on the topic.
    Topic,
    /// Set in the broker's static configuration (`[topic_defaults]` in strom.toml).
    StaticBroker,
    /// Kafka's built-in default.
    Default,
}

impl ConfigSource {
    /// DescribeConfigs wire code.
    pub fn wire_code(self) -> i8 {
        match self {
            ConfigSource::Topic => 1,
            ConfigSource::StaticBroker => 4,
            ConfigSource::Default => 5,
        }
    }
}

/// One effective config entry of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveConfig {
    /// Key name.
    pub name: &'static str,
    /// Effective value.
    pub value: String,
    /// Where it came from.
    pub source: ConfigSource,
}

/// The effective value of every known key for a topic: its override, else the broker's
/// default, else Kafka's.
pub fn effective_configs(
    overrides: &BTreeMap<String, String>,
    broker_defaults: &BTreeMap<String, String>,
) -> Vec<EffectiveConfig> {
    TOPIC_CONFIG_KEYS
        .iter()
        .map(|key| effective_config(key, overrides, broker_defaults))
        .collect()
}

fn effective_config(
    key: &'static ConfigKey,
    overrides: &BTreeMap<String, String>,
    broker_defaults: &BTreeMap<String, String>,
) -> EffectiveConfig {
    let (value, source) = if let Some(value) = overrides.get(key.name) {
        (value.clone(), ConfigSource::Topic)
    } else if let Some(value) = broker_defaults.get(key.name) {
        (value.clone(), ConfigSource::StaticBroker)
    } else {
        (key.default_value.to_string(), ConfigSource::Default)
    };
    EffectiveConfig {
        name: key.name,
        value,
        source,
    }
}

/// The effective value of one key (override, broker default, Kafka default).
pub fn effective_value(
    name: &str,
    overrides: &BTreeMap<String, String>,
    broker_defaults: &BTreeMap<String, String>,
) -> Option<String> {
    config_key(name).map(|key| effective_config(key, overrides, broker_defaults).value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_sorted_and_defaults_valid() {
        for pair in TOPIC_CONFIG_KEYS.windows(2) {
            assert!(pair[0].name < pair[1].name);
        }
        for key in TOPIC_CONFIG_KEYS {
            assert_eq!(validate_topic_config(key.name, key.default_value), Ok(()));
        }
    }

    #[test]
    fn rejects_bad_values() {
        assert!(validate_topic_config("no.such.key", "1").is_err());
        assert!(validate_topic_config("retention.ms", "soon").is_err());
        assert!(validate_topic_config("retention.ms", "-2").is_err());
        assert!(validate_topic_config("segment.bytes", "99999999999").is_err());
        assert!(validate_topic_config("cleanup.policy", "delete,shred").is_err());
        assert!(validate_topic_config("message.timestamp.type", "Now").is_err());
        assert!(validate_topic_config("preallocate", "yes").is_err());
        assert!(validate_topic_config("cleanup.policy", "compact,delete").is_ok());
    }

    #[test]
    fn effective_value_prefers_topic_then_broker_then_default() {
        let mut overrides = BTreeMap::new();
        let mut defaults = BTreeMap::new();
        assert_eq!(
            effective_value("retention.ms", &overrides, &defaults).as_deref(),
            Some("604800000")
        );
        defaults.insert("retention.ms".to_string(), "1000".to_string());
        assert_eq!(
            effective_value("retention.ms", &overrides, &defaults).as_deref(),
            Some("1000")
        );
        overrides.insert("retention.ms".to_string(), "5".to_string());
        assert_eq!(
            effective_value("retention.ms", &overrides, &defaults).as_deref(),
            Some("5")
        );
    }
}

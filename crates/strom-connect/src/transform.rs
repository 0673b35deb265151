//! In-flight transforms (Flume's interceptors): filter, mask, hash, drop, route, header.
//!
//! Each works on a record's value as a JSON object, addressed by paths like `$.ip` or
//! `$.player.ip`. The value is parsed once per record for the whole chain and written back
//! only when a transform changed it. A value that is not JSON passes the masking transforms
//! untouched and fails every filter predicate.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::record::Record;

/// A transform as the pipeline file declares it (`[[transform]]` with `type = ...`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum TransformConfig {
    /// Keep records whose field satisfies the predicate (exactly one of `equals`,
    /// `not_equals`, `in`, `exists`, `gt`, `lt`).
    Filter {
        /// JSON path.
        field: String,
        /// Keep when equal.
        equals: Option<Value>,
        /// Keep when not equal (a missing field is not equal).
        not_equals: Option<Value>,
        /// Keep when equal to one of these.
        #[serde(rename = "in")]
        one_of: Option<Vec<Value>>,
        /// Keep when the field is present (true) or absent (false).
        exists: Option<bool>,
        /// Keep when a number greater than this.
        gt: Option<f64>,
        /// Keep when a number less than this.
        lt: Option<f64>,
    },
    /// Replace fields with a fixed string.
    Mask {
        /// JSON paths.
        fields: Vec<String>,
        /// Replacement (default `***`).
        with: Option<String>,
    },
    /// Replace fields with the hex SHA-256 of their text (strings as they are, other values as
    /// JSON), so equal values still join.
    Hash {
        /// JSON paths.
        fields: Vec<String>,
    },
    /// Remove fields.
    Drop {
        /// JSON paths.
        fields: Vec<String>,
    },
    /// Send the record to a topic chosen by a field's value (Kafka sinks).
    Route {
        /// JSON path.
        field: String,
        /// Field value (as text) to topic.
        topics: BTreeMap<String, String>,
        /// Topic for other values; without it the record keeps its topic.
        default: Option<String>,
    },
    /// Add a header, with a fixed value or a field's value.
    Header {
        /// Header key.
        name: String,
        /// Fixed value.
        value: Option<String>,
        /// JSON path whose value (as text) is the header value.
        from_field: Option<String>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Predicate {
    Equals(Value),
    NotEquals(Value),
    OneOf(Vec<Value>),
    Exists(bool),
    Gt(f64),
    Lt(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Filter(Path, Predicate),
    Mask(Vec<Path>, String),
    Hash(Vec<Path>),
    Drop(Vec<Path>),
    Route(Path, BTreeMap<String, String>, Option<String>),
    Header(String, HeaderValue),
}

#[derive(Debug, Clone, PartialEq)]
enum HeaderValue {
    Fixed(String),
    Field(Path),
}

/// A parsed JSON path: object keys from the top.
#[derive(Debug, Clone, PartialEq)]
struct Path(Vec<String>);

impl Path {
    fn parse(text: &str) -> Result<Path> {
        let rest = text
            .strip_prefix("$.")
            .or_else(|| text.strip_prefix('$'))
            .unwrap_or(text);
        let keys: Vec<String> = rest.split('.').map(str::to_string).collect();
        if keys.iter().any(String::is_empty) {
            return Err(Error::Config(format!(
                "bad field path {text:?}: use $.name or $.outer.inner"
            )));
        }
        Ok(Path(keys))
    }

    fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.0.iter().try_fold(value, |v, k| v.get(k))
    }

    fn get_mut<'v>(&self, value: &'v mut Value) -> Option<&'v mut Value> {
        self.0.iter().try_fold(value, |v, k| v.get_mut(k))
    }

    fn remove(&self, value: &mut Value) -> bool {
        let (last, parents) = self.0.split_last().expect("paths are non-empty");
        let parent = parents.iter().try_fold(value, |v, k| v.get_mut(k));
        parent
            .and_then(Value::as_object_mut)
            .and_then(|o| o.remove(last))
            .is_some()
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A chain of transforms, applied in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    steps: Vec<Step>,
}

impl Chain {
    /// Checks and compiles the declared transforms.
    pub fn new(configs: &[TransformConfig]) -> Result<Chain> {
        let steps = configs.iter().map(compile).collect::<Result<Vec<_>>>()?;
        Ok(Chain { steps })
    }

    /// Whether the chain does nothing.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies the chain: `None` when a filter dropped the record.
    pub fn apply(&self, mut record: Record) -> Option<Record> {
        if self.steps.is_empty() {
            return Some(record);
        }
        let mut json: Option<Value> = record
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok());
        let mut changed = false;
        for step in &self.steps {
            match step {
                Step::Filter(path, predicate) => {
                    if !json
                        .as_ref()
                        .is_some_and(|j| matches(predicate, path.get(j)))
                    {
                        return None;
                    }
                }
                Step::Mask(paths, with) => {
                    for path in paths {
                        if let Some(v) = json.as_mut().and_then(|j| path.get_mut(j)) {
                            *v = Value::String(with.clone());
                            changed = true;
                        }
                    }
                }
                Step::Hash(paths) => {
                    for path in paths {
                        if let Some(v) = json.as_mut().and_then(|j| path.get_mut(j)) {
                            let digest = Sha256::digest(text_of(v).as_bytes());
                            *v = Value::String(digest.iter().map(|b| format!("{b:02x}")).collect());
                            changed = true;
                        }
                    }
                }
                Step::Drop(paths) => {
                    for path in paths {
                        changed |= json.as_mut().is_some_and(|j| path.remove(j));
                    }
                }
                Step::Route(path, topics, default) => {
                    let target = json
                        .as_ref()
                        .and_then(|j| path.get(j))
                        .and_then(|v| topics.get(&text_of(v)));
                    if let Some(topic) = target.or(default.as_ref()) {
                        record.topic = topic.clone();
                    }
                }
                Step::Header(name, value) => {
                    let value = match value {
                        HeaderValue::Fixed(text) => Some(text.clone()),
                        HeaderValue::Field(path) => {
                            json.as_ref().and_then(|j| path.get(j)).map(text_of)
                        }
                    };
                    record.headers.push((name.clone(), value.map(Bytes::from)));
                }
            }
        }
        if changed {
            record.value = json.map(|j| Bytes::from(j.to_string()));
        }
        Some(record)
    }
}

fn matches(predicate: &Predicate, field: Option<&Value>) -> bool {
    match predicate {
        Predicate::Equals(want) => field == Some(want),
        Predicate::NotEquals(want) => field != Some(want),
        Predicate::OneOf(wants) => field.is_some_and(|f| wants.contains(f)),
        Predicate::Exists(want) => field.is_some() == *want,
        Predicate::Gt(bound) => field.and_then(Value::as_f64).is_some_and(|f| f > *bound),
        Predicate::Lt(bound) => field.and_then(Value::as_f64).is_some_and(|f| f < *bound),
    }
}

fn paths(fields: &[String]) -> Result<Vec<Path>> {
    if fields.is_empty() {
        return Err(Error::Config(
            "a transform's fields list is empty".to_string(),
        ));
    }
    fields.iter().map(|f| Path::parse(f)).collect()
}

fn compile(config: &TransformConfig) -> Result<Step> {
    Ok(match config {
        TransformConfig::Filter {
            field,
            equals,
            not_equals,
            one_of,
            exists,
            gt,
            lt,
        } => {
            let mut predicates = Vec::new();
            predicates.extend(equals.clone().map(Predicate::Equals));
            predicates.extend(not_equals.clone().map(Predicate::NotEquals));
            predicates.extend(one_of.clone().map(Predicate::OneOf));
            predicates.extend(exists.map(Predicate::Exists));
            predicates.extend(gt.map(Predicate::Gt));
            predicates.extend(lt.map(Predicate::Lt));
            if predicates.len() != 1 {
                return Err(Error::Config(format!(
                    "filter on {field:?} needs exactly one of equals, not_equals, in, exists, gt, lt"
                )));
            }
            Step::Filter(Path::parse(field)?, predicates.remove(0))
        }
        TransformConfig::Mask { fields, with } => Step::Mask(
            paths(fields)?,
            with.clone().unwrap_or_else(|| "***".to_string()),
        ),
        TransformConfig::Hash { fields } => Step::Hash(paths(fields)?),
        TransformConfig::Drop { fields } => Step::Drop(paths(fields)?),
        TransformConfig::Route {
            field,
            topics,
            default,
        } => Step::Route(Path::parse(field)?, topics.clone(), default.clone()),
        TransformConfig::Header {
            name,
            value,
            from_field,
        } => match (value, from_field) {
            (Some(v), None) => Step::Header(name.clone(), HeaderValue::Fixed(v.clone())),
            (None, Some(f)) => Step::Header(name.clone(), HeaderValue::Field(Path::parse(f)?)),
            _ => {
                return Err(Error::Config(format!(
                    "header {name:?} needs exactly one of value, from_field"
                )))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(toml_text: &str) -> Chain {
        #[derive(Deserialize)]
        struct File {
            transform: Vec<TransformConfig>,
        }
        let file: File = toml::from_str(toml_text).unwrap();
        Chain::new(&file.transform).unwrap()
    }

    fn value(record: &Record) -> Value {
        serde_json::from_slice(record.value.as_deref().unwrap()).unwrap()
    }

    #[test]
    fn filter_hash_mask_drop_route_header() {
        let c = chain(
            r#"
            [[transform]]
            type = "filter"
            field = "$.type"
            equals = "trade"
            [[transform]]
            type = "hash"
            fields = ["$.ip"]
            [[transform]]
            type = "mask"
            fields = ["$.card.number"]
            [[transform]]
            type = "drop"
            fields = ["$.debug"]
            [[transform]]
            type = "route"
            field = "$.region"
            topics = { eu = "trades-eu" }
            [[transform]]
            type = "header"
            name = "player"
            from_field = "$.player_id"
            "#,
        );
        let login = Record::new("t", r#"{"type":"login","ip":"1.2.3.4"}"#);
        assert!(c.apply(login).is_none());
        let trade = Record::new(
            "t",
            r#"{"type":"trade","ip":"1.2.3.4","card":{"number":"4111"},"debug":1,"region":"eu","player_id":7}"#,
        );
        let out = c.apply(trade).unwrap();
        let v = value(&out);
        assert_eq!(
            v["ip"],
            "6694f83c9f476da31f5df6bcc520034e7e57d421d247b9d34f49edbfc84a764c"
        );
        assert_eq!(v["card"]["number"], "***");
        assert!(v.get("debug").is_none());
        assert_eq!(out.topic, "trades-eu");
        assert_eq!(
            out.headers,
            vec![("player".to_string(), Some(Bytes::from("7")))]
        );
        assert!(c.apply(Record::new("t", "not json")).is_none());
    }

    #[test]
    fn numeric_and_membership_predicates() {
        let big = chain("[[transform]]\ntype = \"filter\"\nfield = \"$.amount\"\ngt = 100\n");
        assert!(big.apply(Record::new("t", r#"{"amount":101}"#)).is_some());
        assert!(big.apply(Record::new("t", r#"{"amount":100}"#)).is_none());
        assert!(big
            .apply(Record::new("t", r#"{"amount":"lots"}"#))
            .is_none());
        let some = chain("[[transform]]\ntype = \"filter\"\nfield = \"$.k\"\nin = [1, \"a\"]\n");
        assert!(some.apply(Record::new("t", r#"{"k":"a"}"#)).is_some());
        assert!(some.apply(Record::new("t", r#"{"k":2}"#)).is_none());
    }

    #[test]
    fn untouched_values_keep_their_bytes_and_bad_configs_are_refused() {
        let c = chain("[[transform]]\ntype = \"mask\"\nfields = [\"$.absent\"]\n");
        let record = Record::new("t", "{ \"spaced\" : 1 }");
        assert_eq!(c.apply(record.clone()).unwrap().value, record.value);
        let two = TransformConfig::Filter {
            field: "$.a".into(),
            equals: Some(1.into()),
            not_equals: None,
            one_of: None,
            exists: Some(true),
            gt: None,
            lt: None,
        };
        assert!(Chain::new(&[two]).is_err());
        assert!(Chain::new(&[TransformConfig::Drop {
            fields: vec!["$.".into()]
        }])
        .is_err());
        assert!(Chain::new(&[TransformConfig::Hash { fields: vec![] }]).is_err());
    }
}

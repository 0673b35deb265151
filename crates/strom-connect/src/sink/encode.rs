//! Encoding a file's records: Parquet (raw or JSON columns) and JSON lines.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow_array::builder::{
    BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, ListBuilder,
    StringBuilder, StructBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::record::Record;

/// What a file's rows hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// `topic, partition, offset, timestamp, key, value, headers`: every record as it is.
    #[default]
    Raw,
    /// The value's top-level JSON fields as typed columns, plus `_partition`, `_offset`,
    /// `_timestamp` and `_key`.
    Json,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Mode, String> {
        match s {
            "raw" => Ok(Mode::Raw),
            "json" => Ok(Mode::Json),
            _ => Err(format!("mode must be raw or json, not {s:?}")),
        }
    }
}

/// A column type of JSON mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnType {
    /// `true`/`false`.
    Bool,
    /// Integers (64-bit).
    Long,
    /// Numbers (64-bit float).
    Double,
    /// Strings; any other JSON value is written as its JSON text.
    String,
}

/// A JSON-mode schema: columns in order.
pub type JsonSchema = Vec<(String, ColumnType)>;

/// Infers a schema from records: fields in order of first appearance; a field seen as ints only
/// is `long`, ints and floats `double`, booleans only `bool`, anything else `string`.
pub fn infer_schema(records: &[Record]) -> JsonSchema {
    let mut order: Vec<String> = Vec::new();
    let mut seen: BTreeMap<String, (bool, bool, bool, bool)> = BTreeMap::new(); // bool, int, float, other
    for record in records {
        let Some(Value::Object(object)) = record
            .value
            .as_deref()
            .and_then(|v| serde_json::from_slice(v).ok())
        else {
            continue;
        };
        for (name, value) in object {
            let entry = seen.entry(name.clone()).or_insert_with(|| {
                order.push(name.clone());
                (false, false, false, false)
            });
            match value {
                Value::Null => {}
                Value::Bool(_) => entry.0 = true,
                Value::Number(n) if n.is_i64() || n.is_u64() => entry.1 = true,
                Value::Number(_) => entry.2 = true,
                _ => entry.3 = true,
            }
        }
    }
    order
        .into_iter()
        .map(|name| {
            let kind = match seen[&name] {
                (true, false, false, false) => ColumnType::Bool,
                (false, true, false, false) => ColumnType::Long,
                (false, _, true, false) => ColumnType::Double,
                _ => ColumnType::String,
            };
            (name, kind)
        })
        .collect()
}

/// Parquet compression of the sink.
pub fn parse_compression(name: &str) -> Result<Compression> {
    match name {
        "none" | "uncompressed" => Ok(Compression::UNCOMPRESSED),
        "snappy" => Ok(Compression::SNAPPY),
        "zstd" => Ok(Compression::ZSTD(ZstdLevel::default())),
        _ => Err(Error::Config(format!(
            "parquet compression must be none, snappy or zstd, not {name:?}"
        ))),
    }
}

/// Encodes `records` as one Parquet file.
pub fn parquet_file(
    records: &[Record],
    mode: Mode,
    schema: &JsonSchema,
    compression: Compression,
) -> Result<Vec<u8>> {
    let columns = match mode {
        Mode::Raw => raw_columns(records),
        Mode::Json => json_columns(records, schema),
    };
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, array)| Field::new(name.as_str(), array.data_type().clone(), true))
        .collect();
    let arrow_schema = Arc::new(Schema::new(fields));
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, a)| a).collect();
    let batch = RecordBatch::try_new(arrow_schema.clone(), arrays)
        .map_err(|e| Error::Parquet(e.to_string()))?;
    let properties = WriterProperties::builder()
        .set_compression(compression)
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, arrow_schema, Some(properties))
        .map_err(|e| Error::Parquet(e.to_string()))?;
    writer
        .write(&batch)
        .map_err(|e| Error::Parquet(e.to_string()))?;
    writer.close().map_err(|e| Error::Parquet(e.to_string()))?;
    Ok(out)
}

fn timestamps(records: &[Record]) -> ArrayRef {
    let mut b = TimestampMillisecondBuilder::with_capacity(records.len()).with_timezone("UTC");
    records.iter().for_each(|r| b.append_value(r.timestamp_ms));
    Arc::new(b.finish())
}

fn raw_columns(records: &[Record]) -> Vec<(String, ArrayRef)> {
    let mut topic = StringBuilder::new();
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut key = BinaryBuilder::new();
    let mut value = BinaryBuilder::new();
    let header_fields = Fields::from(vec![
        Field::new("key", DataType::Utf8, false),
        Field::new("value", DataType::Binary, true),
    ]);
    let mut headers = ListBuilder::new(StructBuilder::new(
        header_fields.clone(),
        vec![
            Box::new(StringBuilder::new()),
            Box::new(BinaryBuilder::new()),
        ],
    ))
    .with_field(Arc::new(Field::new(
        "item",
        DataType::Struct(header_fields),
        true,
    )));
    for r in records {
        topic.append_value(&r.topic);
        partition.append_value(r.partition);
        offset.append_value(r.offset);
        key.append_option(r.key.as_deref());
        value.append_option(r.value.as_deref());
        let entries = headers.values();
        for (k, v) in &r.headers {
            entries
                .field_builder::<StringBuilder>(0)
                .expect("key builder")
                .append_value(k);
            entries
                .field_builder::<BinaryBuilder>(1)
                .expect("value builder")
                .append_option(v.as_deref());
            entries.append(true);
        }
        headers.append(true);
    }
    vec![
        ("topic".to_string(), Arc::new(topic.finish()) as ArrayRef),
        ("partition".to_string(), Arc::new(partition.finish())),
        ("offset".to_string(), Arc::new(offset.finish())),
        ("timestamp".to_string(), timestamps(records)),
        ("key".to_string(), Arc::new(key.finish())),
        ("value".to_string(), Arc::new(value.finish())),
        ("headers".to_string(), Arc::new(headers.finish())),
    ]
}

fn json_objects(records: &[Record]) -> Vec<Map<String, Value>> {
    records
        .iter()
        .map(|r| {
            match r
                .value
                .as_deref()
                .and_then(|v| serde_json::from_slice(v).ok())
            {
                Some(Value::Object(object)) => object,
                _ => Map::new(),
            }
        })
        .collect()
}

fn json_columns(records: &[Record], schema: &JsonSchema) -> Vec<(String, ArrayRef)> {
    let objects = json_objects(records);
    let mut columns: Vec<(String, ArrayRef)> = Vec::with_capacity(schema.len() + 4);
    for (name, kind) in schema {
        let values = objects.iter().map(|o| o.get(name));
        let array: ArrayRef = match kind {
            ColumnType::Bool => {
                let mut b = BooleanBuilder::with_capacity(objects.len());
                values.for_each(|v| b.append_option(v.and_then(Value::as_bool)));
                Arc::new(b.finish())
            }
            ColumnType::Long => {
                let mut b = Int64Builder::with_capacity(objects.len());
                values.for_each(|v| b.append_option(v.and_then(Value::as_i64)));
                Arc::new(b.finish())
            }
            ColumnType::Double => {
                let mut b = Float64Builder::with_capacity(objects.len());
                values.for_each(|v| b.append_option(v.and_then(Value::as_f64)));
                Arc::new(b.finish())
            }
            ColumnType::String => {
                let mut b = StringBuilder::new();
                for v in values {
                    match v {
                        None | Some(Value::Null) => b.append_null(),
                        Some(Value::String(s)) => b.append_value(s),
                        Some(other) => b.append_value(other.to_string()),
                    }
                }
                Arc::new(b.finish())
            }
        };
        columns.push((name.clone(), array));
    }
    let mut partition = Int32Builder::new();
    let mut offset = Int64Builder::new();
    let mut key = StringBuilder::new();
    for r in records {
        partition.append_value(r.partition);
        offset.append_value(r.offset);
        key.append_option(r.key.as_deref().map(String::from_utf8_lossy));
    }
    columns.push(("_partition".to_string(), Arc::new(partition.finish())));
    columns.push(("_offset".to_string(), Arc::new(offset.finish())));
    columns.push(("_timestamp".to_string(), timestamps(records)));
    columns.push(("_key".to_string(), Arc::new(key.finish())));
    columns
}

/// Encodes `records` as JSON lines: in raw mode an envelope per record (key and value as
/// UTF-8 text, lossy), in JSON mode the value's object with `_partition`, `_offset`,
/// `_timestamp` and `_key` added.
pub fn jsonl_file(records: &[Record], mode: Mode) -> Vec<u8> {
    let text = |b: &Option<bytes::Bytes>| {
        b.as_deref()
            .map(|b| Value::String(String::from_utf8_lossy(b).into_owned()))
    };
    let mut out = Vec::new();
    for (r, object) in records.iter().zip(json_objects(records)) {
        let line = match mode {
            Mode::Raw => serde_json::json!({
                "topic": r.topic, "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp_ms,
                "key": text(&r.key), "value": text(&r.value),
                "headers": r.headers.iter().map(|(k, v)| serde_json::json!({"key": k, "value": text(v)})).collect::<Vec<_>>(),
            }),
            Mode::Json => {
                let mut object = object;
                object.insert("_partition".into(), r.partition.into());
                object.insert("_offset".into(), r.offset.into());
                object.insert("_timestamp".into(), r.timestamp_ms.into());
                object.insert("_key".into(), text(&r.key).unwrap_or(Value::Null));
                Value::Object(object)
            }
        };
        out.extend_from_slice(line.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn rec(offset: i64, value: &str) -> Record {
        Record {
            partition: 2,
            offset,
            timestamp_ms: 1_000 + offset,
            ..Record::new("t", value.to_string())
        }
    }

    #[test]
    fn inference_widens_ints_to_doubles_and_conflicts_to_strings() {
        let records = [
            rec(0, r#"{"a":1,"b":1,"c":true,"d":"x"}"#),
            rec(1, r#"{"a":2,"b":1.5,"c":false,"d":3}"#),
            rec(2, "not json"),
        ];
        let schema = infer_schema(&records);
        assert_eq!(
            schema,
            vec![
                ("a".to_string(), ColumnType::Long),
                ("b".to_string(), ColumnType::Double),
                ("c".to_string(), ColumnType::Bool),
                ("d".to_string(), ColumnType::String)
            ]
        );
    }

    #[test]
    fn parquet_round_trips_rows_in_both_modes() {
        let mut records = vec![rec(5, r#"{"a":1,"d":"x"}"#), rec(6, r#"{"a":"oops"}"#)];
        records[0]
            .headers
            .push(("h".to_string(), Some(bytes::Bytes::from_static(b"v"))));
        records[1].key = Some(bytes::Bytes::from_static(b"k"));
        for mode in [Mode::Raw, Mode::Json] {
            let schema = infer_schema(&records[..1]);
            let bytes = parquet_file(&records, mode, &schema, Compression::SNAPPY).unwrap();
            let reader = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
                .unwrap()
                .build()
                .unwrap();
            let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
            assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
            let names: Vec<String> = batches[0]
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            match mode {
                Mode::Raw => assert_eq!(
                    names,
                    [
                        "topic",
                        "partition",
                        "offset",
                        "timestamp",
                        "key",
                        "value",
                        "headers"
                    ]
                ),
                Mode::Json => assert_eq!(
                    names,
                    ["a", "d", "_partition", "_offset", "_timestamp", "_key"]
                ),
            }
        }
    }

    #[test]
    fn jsonl_lines_are_one_per_record() {
        let records = [rec(0, r#"{"a":1}"#), rec(1, "plain")];
        let raw = String::from_utf8(jsonl_file(&records, Mode::Raw)).unwrap();
        assert_eq!(raw.lines().count(), 2);
        assert!(raw.contains(r#""value":"plain""#), "{raw}");
        let json = String::from_utf8(jsonl_file(&records, Mode::Json)).unwrap();
        let first: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
        assert_eq!(first["a"], 1);
        assert_eq!(first["_offset"], 0);
    }
}

//! Sinks: Parquet and JSON-lines files in a Hive layout, locally or on an object store.

pub mod encode;
pub mod file;
pub mod layout;
pub mod store;

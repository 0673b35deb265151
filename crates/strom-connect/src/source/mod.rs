//! Ingest sources: they read records from outside and send them through an
//! [`Output`](crate::runner::Output) to a topic.

pub mod http;
pub mod stdin;
pub mod taildir;

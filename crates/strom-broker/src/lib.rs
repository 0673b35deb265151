//! The Strom broker: accepts Kafka client connections, decodes requests (through
//! `strom-protocol`'s bounded decoding), and answers them from the metadata image
//! (`strom-metadata`) and the partition logs (`strom-storage`).
//!
//! Owns: connection handling (framing, pipelining with in-order responses, limits), one thin
//! handler per Kafka API, the partition manager (which logs this node hosts, their high
//! watermarks and configs), delayed operations (fetch long polls), background retention, and
//! the HTTP side (`/health`).
//!
//! Never: parse records on the produce or fetch path (batch headers only), hold a partition
//! lock across an `.await`, or panic on anything a client sends.

pub mod catchup;
pub mod config;
mod connection;
pub mod errors;
pub mod group;
mod handlers;
mod http;
pub mod partition;
pub mod producer_ids;
mod server;
pub mod state;

pub use config::BrokerConfig;
pub use server::{Broker, BrokerError};

//! The Kafka wire layer of Strom, on top of the `kafka-protocol` crate.
//!
//! What it owns:
//! - [`frame`]: validation of the 4-byte size prefix of a request frame.
//! - [`versions`]: the table of APIs and versions the broker speaks ([`versions::SUPPORTED_APIS`]),
//!   which the ApiVersions response advertises as it is, and the wider table of those with a
//!   request schema ([`versions::SCHEMA_VERSIONS`]), proven by the tests before they are enabled.
//! - [`bounded`]: a bounded pre-pass over untrusted request bytes. `kafka-protocol` trusts array
//!   counts from the wire (`Vec::with_capacity(n)`), so every request is first walked against a
//!   hand-written schema that checks every count and length against the bytes that remain and
//!   caps the total number of array elements.
//! - [`request`]: request decoding (prefix, version check, bounded pre-pass, then `kafka-protocol`).
//! - [`response`]: response frame encoding, including the ApiVersions fallback.
//! - [`compression`]: decompression of record batches under a size bound.
//! - [`record_batch`]: the record batch v2 header layout (field offsets, attribute bits), the one
//!   definition the storage format, the broker and the client share.
//! - [`chunked`]: response frames as chunks, so fetched record batches are written to the socket
//!   from the buffers they were read into, not copied into the response.
//!
//! What it never does: socket I/O or anything async (the broker owns connections), panic on
//! input, or hand bytes to `kafka-protocol`'s decoders before [`bounded::check_request`] accepted
//! them.

#![deny(missing_docs)]

pub mod bounded;
pub mod chunked;
pub mod compression;
pub mod frame;
pub mod record_batch;
pub mod request;
pub mod response;
pub mod versions;

pub use kafka_protocol;

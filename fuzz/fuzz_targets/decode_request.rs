//! Arbitrary bytes as a request frame (after the size prefix): decoding must return `Ok` or
//! `Err`, never panic, never allocate out of proportion (run with `-malloc_limit_mb`). Decodes
//! against every API that has a schema (`SCHEMA_VERSIONS`), a superset of what the broker
//! enables, so schemas are fuzzed before they are switched on.
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_protocol::bounded::DecodeLimits;
use strom_protocol::request::decode_request_in;
use strom_protocol::versions::SCHEMA_VERSIONS;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let _ = decode_request_in(SCHEMA_VERSIONS, bytes::Bytes::copy_from_slice(data), &limits);
});

//! Arbitrary bytes as a request frame (after the size prefix): `decode_request` must return
//! `Ok` or `Err`, never panic, never allocate out of proportion (run with `-malloc_limit_mb`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use strom_protocol::bounded::DecodeLimits;
use strom_protocol::request::decode_request;

fuzz_target!(|data: &[u8]| {
    let limits = DecodeLimits::default();
    let _ = decode_request(bytes::Bytes::copy_from_slice(data), &limits);
});

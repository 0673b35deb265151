//! Mutation test: every single byte and every 4-byte window of a valid request of every API and
//! version with a schema (accepted by the broker or not yet) is overwritten with count-like
//! patterns; decoding (`decode_request_in` over `SCHEMA_VERSIONS`, the path of `decode_request`)
//! must never panic and never make an allocation out of proportion to the frame.
//!
//! This binary holds one test only, so the counting allocator sees no other test's allocations.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::{all_versions, build, encode_frame};
use strom_protocol::bounded::DecodeLimits;
use strom_protocol::request::decode_request_in;
use strom_protocol::versions::SCHEMA_VERSIONS;

/// Records the largest single allocation since the last reset.
struct LargestAllocation;

static LARGEST_BYTES: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_BYTES.fetch_max(layout.size(), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_BYTES.fetch_max(new_size, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

/// Largest allocation allowed while decoding a frame of `frame_bytes` bytes: the decoded structs
/// are bigger than their wire form, but only by a constant factor.
fn allocation_max_bytes(frame_bytes: usize) -> usize {
    4096 + 256 * frame_bytes
}

fn decode_bounded(frame: Vec<u8>, limits: &DecodeLimits) -> bool {
    let frame_bytes = frame.len();
    let frame = Bytes::from(frame);
    LARGEST_BYTES.store(0, Ordering::Relaxed);
    let ok = decode_request_in(SCHEMA_VERSIONS, frame, limits).is_ok();
    let largest = LARGEST_BYTES.load(Ordering::Relaxed);
    assert!(
        largest <= allocation_max_bytes(frame_bytes),
        "allocated {largest} bytes for a {frame_bytes}-byte frame"
    );
    ok
}

#[test]
fn mutated_requests_never_panic_nor_allocate_absurdly() {
    let limits = DecodeLimits::default();
    let byte_patterns = [0xffu8, 0x7f, 0x80, 0x00, 0x01];
    let window_patterns = [
        0x7fff_ffffu32,
        0xffff_ffff,
        0x8000_0000,
        0xffff_ff7f,
        0x0001_0000,
    ];
    let (mut decoded, mut rejected) = (0usize, 0usize);
    for (api_key, version) in all_versions() {
        let frame = encode_frame(api_key, version, &build(api_key, version)).to_vec();
        assert!(decode_bounded(frame.clone(), &limits));
        let mut tally = |ok| if ok { decoded += 1 } else { rejected += 1 };
        for position in 0..frame.len() {
            for pattern in byte_patterns {
                let mut mutated = frame.clone();
                mutated[position] = pattern;
                tally(decode_bounded(mutated, &limits));
            }
            for pattern in window_patterns {
                let mut mutated = frame.clone();
                let end = (position + 4).min(frame.len());
                mutated[position..end].copy_from_slice(&pattern.to_be_bytes()[..end - position]);
                tally(decode_bounded(mutated, &limits));
            }
            // Truncation at every position.
            tally(decode_bounded(frame[..position].to_vec(), &limits));
        }
    }
    assert!(
        decoded > 0 && rejected > 0,
        "decoded {decoded}, rejected {rejected}"
    );
    println!("{decoded} mutated frames decoded, {rejected} rejected");

    // The detector detects: kafka-protocol alone, handed 8 bytes claiming 100 000 topics,
    // allocates far beyond the bound before failing.
    use kafka_protocol::protocol::Decodable;
    let mut body = Bytes::from([&100_000i32.to_be_bytes()[..], &[0, 0, 0, 0]].concat());
    LARGEST_BYTES.store(0, Ordering::Relaxed);
    let result = kafka_protocol::messages::MetadataRequest::decode(&mut body, 1);
    assert!(result.is_err());
    assert!(LARGEST_BYTES.load(Ordering::Relaxed) > allocation_max_bytes(8));
}

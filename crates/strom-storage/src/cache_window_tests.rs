//! Tests of logs opened with a [`CacheTrimmer`] (see `cache_window.rs`): across segment rolls,
//! a truncation and reopening, every batch reads back as it was appended while what fell a
//! window behind the log end is written back and evicted from the page cache.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::Compression;

use crate::batch::batches;
use crate::cache_window::tests::{page_cache_evicts, resident_pages, wait_for};
use crate::cache_window::CACHE_STEP_BYTES;
use crate::test_support::{files_with_extension, keyed_batch, KeyedRecord};
use crate::{CacheTrimStats, CacheTrimmer, FileCache, LogConfig, LogOpenOptions, PartitionLog};

const NOW_MS: i64 = 1_700_000_000_000;
const MIB: u64 = 1024 * 1024;
const WINDOW_BYTES: u64 = 8 * MIB;
const SEGMENT_BYTES: u64 = 16 * MIB;
/// 16 records of 16 KiB: blobs of about 256 KiB.
const RECORDS_PER_BLOB: usize = 16;
const VALUE_BYTES: usize = 16 * 1024 - 64;

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes: SEGMENT_BYTES,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, trimmer: Option<&Arc<CacheTrimmer>>) -> PartitionLog {
    let options = LogOpenOptions {
        files: FileCache::new(64),
        cache_trimmer: trimmer.cloned(),
        ..LogOpenOptions::default()
    };
    PartitionLog::open_with(dir, config(), NOW_MS, &options).unwrap()
}

/// Blob number `index`: records whose values say which blob and record they are.
fn blob(index: usize) -> Vec<u8> {
    let records: Vec<KeyedRecord> = (0..RECORDS_PER_BLOB)
        .map(|r| {
            let id = (index * RECORDS_PER_BLOB + r) as u64;
            let mut value = vec![(id % 251) as u8; VALUE_BYTES];
            value[..8].copy_from_slice(&id.to_be_bytes());
            KeyedRecord {
                key: Some(Bytes::from(format!("key-{id}"))),
                value: Some(Bytes::from(value)),
                timestamp_ms: NOW_MS + id as i64,
            }
        })
        .collect();
    keyed_batch(&records, Compression::None, None)
}

/// Appends blobs `indexes` and adds the bytes the log stored (offsets assigned) to `expected`.
fn append_blobs(log: &mut PartitionLog, indexes: std::ops::Range<usize>, expected: &mut Vec<u8>) {
    for index in indexes {
        let mut bytes = blob(index);
        log.append(&mut bytes, 0, None, NOW_MS).unwrap();
        log.set_high_watermark(log.log_end_offset());
        expected.extend_from_slice(&bytes);
    }
}

/// Reads the whole log from offset 0 in fetches of at most 1 MiB, as a consumer does, checking
/// that the batches' offsets are contiguous; returns the bytes read.
fn read_back(log: &PartitionLog) -> Vec<u8> {
    let end = log.log_end_offset();
    let mut out = Vec::new();
    let mut next = 0;
    while next < end {
        let bytes = log.read(next, MIB as usize, end, true).unwrap();
        assert!(!bytes.is_empty(), "nothing read at offset {next} of {end}");
        for batch in batches(&bytes) {
            let (header, _) = batch.unwrap();
            assert_eq!(header.base_offset, next, "batches not contiguous");
            next = header.next_offset();
        }
        out.extend_from_slice(&bytes);
    }
    assert_eq!(next, end);
    out
}

/// Asserts `read` is `expected` without printing 60 MB when it is not.
fn assert_same_bytes(read: &[u8], expected: &[u8]) {
    assert_eq!(read.len(), expected.len(), "bytes read back");
    if let Some(at) = (0..read.len()).find(|&i| read[i] != expected[i]) {
        panic!("byte {at} of {} read back differs", read.len());
    }
}

/// Waits until the thread evicted all but what may still be in a window: the oldest step
/// kept (at most a step and a blob) and the window of newer bytes.
fn wait_for_evictions(trimmer: &CacheTrimmer, evicted_before: u64, bytes: u64) -> CacheTrimStats {
    let kept_max = WINDOW_BYTES + CACHE_STEP_BYTES + blob(0).len() as u64;
    let stats = wait_for(trimmer, "evictions", |s| {
        s.bytes_evicted - evicted_before + kept_max >= bytes
    });
    assert_eq!(stats.jobs_skipped, 0, "{stats:?}");
    assert!(stats.steps_evicted < stats.steps_written, "{stats:?}");
    stats
}

#[test]
fn a_trimmed_log_reads_back_every_batch_across_rolls_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let trimmer = CacheTrimmer::start(WINDOW_BYTES).unwrap();
    let mut log = open(dir.path(), Some(&trimmer));
    let mut expected = Vec::new();
    // ~60 MiB: four segments of 16 MiB.
    append_blobs(&mut log, 0..240, &mut expected);
    assert!(log.segment_count() >= 4, "{} segments", log.segment_count());
    let bytes = log.size_bytes();
    assert_eq!(bytes, expected.len() as u64);
    let stats = wait_for_evictions(&trimmer, 0, bytes);
    // About two steps a segment: at 8 MiB, and the rest when it rolls.
    assert!(stats.steps_evicted >= 4, "{stats:?}");

    // The first segment is a window behind and gone from the page cache (before anything
    // reads it again).
    let segments = files_with_extension(dir.path(), "log");
    if page_cache_evicts(dir.path()) {
        let first_len = std::fs::metadata(&segments[0]).unwrap().len();
        let (resident, pages) = resident_pages(&segments[0], 0, first_len);
        assert_eq!(
            resident, 0,
            "{resident} of {pages} pages of the first segment cached"
        );
        let last = segments.last().unwrap();
        let last_len = std::fs::metadata(last).unwrap().len();
        let (resident, pages) = resident_pages(last, 0, last_len);
        assert_eq!(resident, pages, "the active segment is within the window");
    }
    assert_same_bytes(&read_back(&log), &expected);

    // Reopened with the trimmer: the same bytes, and appends from the middle of the active
    // segment (no page boundary) are trimmed as before.
    log.close().unwrap();
    let mut log = open(dir.path(), Some(&trimmer));
    assert_same_bytes(&read_back(&log), &expected);
    let before = trimmer.stats();
    append_blobs(&mut log, 240..320, &mut expected);
    let after = wait_for_evictions(&trimmer, before.bytes_evicted, log.size_bytes() - bytes);
    assert!(after.steps_evicted > before.steps_evicted, "{after:?}");
    assert_same_bytes(&read_back(&log), &expected);
    log.close().unwrap();

    // Without it, as any log.
    let log = open(dir.path(), None);
    assert_same_bytes(&read_back(&log), &expected);
    log.close().unwrap();
    assert_eq!(trimmer.stats().jobs_skipped, 0);
}

#[test]
fn a_trimmed_log_truncated_and_appended_again_reads_back_every_batch() {
    let dir = tempfile::tempdir().unwrap();
    let trimmer = CacheTrimmer::start(WINDOW_BYTES).unwrap();
    let mut log = open(dir.path(), Some(&trimmer));
    let mut expected = Vec::new();
    // ~30 MiB: the second segment holds ~14 MiB, its first 8 MiB handed over as a step; the
    // first segment's two steps are a window behind.
    append_blobs(&mut log, 0..120, &mut expected);
    assert_eq!(log.segment_count(), 2);
    let before = wait_for(&trimmer, "the first segment evicted", |s| {
        s.steps_evicted >= 2
    });
    assert_eq!(before.jobs_skipped, 0, "{before:?}");

    // Cut the last 30 blobs (replica truncation: back into the step handed over) and append
    // others in their place: the window starts a new step at the cut.
    log.truncate_to((90 * RECORDS_PER_BLOB) as i64).unwrap();
    assert_eq!(log.segment_count(), 2);
    let kept_bytes = log.size_bytes();
    expected.truncate(kept_bytes as usize);
    assert_same_bytes(&read_back(&log), &expected);
    append_blobs(&mut log, 1000..1100, &mut expected);
    wait_for_evictions(
        &trimmer,
        before.bytes_evicted,
        log.size_bytes() - kept_bytes,
    );
    assert_same_bytes(&read_back(&log), &expected);
    log.close().unwrap();
    let log = open(dir.path(), None);
    assert_same_bytes(&read_back(&log), &expected);
}

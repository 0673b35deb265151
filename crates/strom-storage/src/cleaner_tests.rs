//! Tests of log compaction through `PartitionLog`: shrinking to one record per key, tombstones
//! and the delete horizon, the active segment, lags, policies, empty batches of idempotent
//! producers, compressed batches, crashes at every step of the swap protocol, and a property
//! test against a model (the last value of each key).

use std::collections::BTreeMap;
use std::path::Path;

use bytes::Bytes;
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use proptest::prelude::*;

use crate::batch::{batches, BatchHeader};
use crate::cleaner::CleanStep;
use crate::test_support::{files_with_extension, keyed_batch, offsets_for_timestamps, KeyedRecord};
use crate::{CompactionConfig, LogConfig, PartitionLog};

const NOW_MS: i64 = 1_700_000_000_000;
const DAY_MS: i64 = 86_400_000;

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 600,
        index_interval_bytes: 64,
        segment_ms: 1000,
        ..LogConfig::default()
    }
}

fn compact() -> CompactionConfig {
    CompactionConfig {
        cleanup_policy_compact: true,
        cleanup_policy_delete: false,
        ..CompactionConfig::default()
    }
}

/// Opens the log as the broker does on one node (high watermark = log end offset).
fn open(dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(dir, config(), NOW_MS).unwrap();
    log.set_compaction_config(compact());
    log.set_high_watermark(log.log_end_offset());
    log
}

/// Appends one batch of `(key, value)` records (`None` value: tombstone) at `timestamp_ms`.
fn put(log: &mut PartitionLog, records: &[(&str, Option<&str>)], timestamp_ms: i64) -> (i64, i64) {
    let records: Vec<KeyedRecord> = records
        .iter()
        .map(|(k, v)| KeyedRecord::new(Some(k), *v, timestamp_ms))
        .collect();
    let mut blob = keyed_batch(&records, Compression::None, None);
    let info = log.append(&mut blob, 0, None, NOW_MS).unwrap();
    log.set_high_watermark(log.log_end_offset());
    (info.base_offset, info.last_offset)
}

/// Closes the active segment so that everything written so far is cleanable.
fn roll(log: &mut PartitionLog) {
    assert!(log.roll_if_due(NOW_MS + 10 * DAY_MS).unwrap());
}

/// Every record readable from the log start: (offset, key, value), in order.
fn all_records(log: &PartitionLog) -> Vec<(i64, Option<Bytes>, Option<Bytes>)> {
    let mut bytes = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .unwrap();
    let mut out = Vec::new();
    for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
        for record in set.records {
            out.push((record.offset, record.key, record.value));
        }
    }
    assert!(out.windows(2).all(|w| w[0].0 < w[1].0), "offsets increase");
    out
}

/// The latest value of each key as a consumer from offset 0 sees it (tombstones delete).
fn latest_values(log: &PartitionLog) -> BTreeMap<Bytes, Bytes> {
    let mut view = BTreeMap::new();
    for (_, key, value) in all_records(log) {
        let Some(key) = key else { continue };
        match value {
            Some(value) => view.insert(key, value),
            None => view.remove(&key),
        };
    }
    view
}

fn headers(log: &PartitionLog) -> Vec<BatchHeader> {
    let bytes = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .unwrap();
    batches(&bytes).map(|b| b.unwrap().0).collect()
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".cleaned") || n.ends_with(".swap"))
        .collect()
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// 8 keys updated 30 times each in small batches over many segments, then rolled.
fn write_updates(log: &mut PartitionLog) -> BTreeMap<Bytes, Bytes> {
    let mut model = BTreeMap::new();
    for round in 0..30 {
        for pair in 0..4 {
            let (k1, k2) = (format!("key-{}", pair * 2), format!("key-{}", pair * 2 + 1));
            let v = format!("value-{round}");
            put(log, &[(&k1, Some(&v)), (&k2, Some(&v))], NOW_MS + round);
            model.insert(b(&k1), b(&v));
            model.insert(b(&k2), b(&v));
        }
    }
    roll(log);
    model
}

#[test]
fn many_updates_per_key_shrink_to_one_record_per_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let model = write_updates(&mut log);
    let (log_end, size_before, segments_before) =
        (log.log_end_offset(), log.size_bytes(), log.segment_count());
    assert!(segments_before > 10);
    assert_eq!(log.cleanable_dirty_ratio(NOW_MS), 1.0);
    assert!(log.needs_cleaning(NOW_MS));
    let stats = log.clean(NOW_MS).unwrap();
    assert_eq!(stats.records_read, 240);
    assert_eq!(stats.records_superseded, 232);
    assert_eq!(stats.cleaned_up_to_offset, log_end);
    assert_eq!(log.cleanable_dirty_ratio(NOW_MS), 0.0);
    assert!(!log.needs_cleaning(NOW_MS));
    let records = all_records(&log);
    assert_eq!(records.len(), 8, "one record per key");
    assert_eq!(latest_values(&log), model);
    // The kept records are the last updates, at their original offsets.
    assert!(records.iter().all(|(offset, _, _)| *offset >= log_end - 8));
    assert_eq!(log.log_end_offset(), log_end);
    assert_eq!(log.log_start_offset(), 0);
    assert!(log.size_bytes() < size_before / 4);
    // Groups are formed from the sizes before cleaning (as Kafka): the next run merges the
    // small cleaned segments.
    assert_eq!(log.segment_count(), segments_before);
    put(&mut log, &[("key-0", Some("value-29"))], NOW_MS);
    roll(&mut log);
    log.clean(NOW_MS).unwrap();
    assert!(
        log.segment_count() < segments_before / 4,
        "small cleaned segments are grouped: {} of {segments_before}",
        log.segment_count()
    );
    assert_eq!(all_records(&log).len(), 8);
    // Reopen (recovery scans and indexes the cleaned segments) and clean again: stable.
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(latest_values(&log), model);
    let again = log.clean(NOW_MS).unwrap();
    assert_eq!(again.segments_written, 0);
    assert_eq!(all_records(&log).len(), 8);
}

#[test]
fn reads_from_offsets_that_were_cleaned_away_start_at_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    write_updates(&mut log);
    log.clean(NOW_MS).unwrap();
    let kept: Vec<BatchHeader> = headers(&log);
    for offset in 0..log.log_end_offset() {
        let bytes = log.read(offset, 1, i64::MAX, true).unwrap();
        let first = batches(&bytes).next().unwrap().unwrap().0;
        let expected = kept.iter().find(|h| h.last_offset() >= offset).unwrap();
        assert_eq!(
            first.base_offset, expected.base_offset,
            "read from {offset}"
        );
    }
    assert!(log
        .read(log.log_end_offset(), 100, i64::MAX, true)
        .unwrap()
        .is_empty());
}

#[test]
fn tombstones_survive_one_clean_and_disappear_after_delete_retention() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    put(&mut log, &[("a", Some("1")), ("b", Some("1"))], NOW_MS);
    put(&mut log, &[("a", None)], NOW_MS);
    roll(&mut log);
    let first = log.clean(NOW_MS).unwrap();
    assert_eq!(first.tombstones_removed, 0);
    let records = all_records(&log);
    assert_eq!(records.len(), 2, "b=1 and the tombstone of a");
    assert!(records
        .iter()
        .any(|(_, k, v)| k.as_deref() == Some(&b"a"[..]) && v.is_none()));
    let tombstone_batch = headers(&log)
        .into_iter()
        .find(|h| h.delete_horizon_ms().is_some())
        .unwrap();
    assert_eq!(tombstone_batch.delete_horizon_ms(), Some(NOW_MS + DAY_MS));
    // Record timestamps are unchanged although the base timestamp holds the horizon.
    let mut bytes = log.read(0, usize::MAX, i64::MAX, true).unwrap();
    for set in RecordBatchDecoder::decode_all(&mut bytes).unwrap() {
        assert!(set.records.iter().all(|r| r.timestamp == NOW_MS));
    }
    // Not due before the horizon, due at it, also after a restart.
    assert!(!log.needs_cleaning(NOW_MS + DAY_MS - 1));
    drop(log);
    let mut log = open(dir.path());
    assert!(log.needs_cleaning(NOW_MS + DAY_MS));
    let early = log.clean(NOW_MS + DAY_MS - 1).unwrap();
    assert_eq!(early.tombstones_removed, 0);
    let second = log.clean(NOW_MS + DAY_MS).unwrap();
    assert_eq!(second.tombstones_removed, 1);
    let records = all_records(&log);
    assert_eq!(records.len(), 1);
    assert_eq!(latest_values(&log), BTreeMap::from([(b("b"), b("1"))]));
    assert!(!log.needs_cleaning(NOW_MS + 2 * DAY_MS));
}

#[test]
fn a_tombstone_followed_by_a_new_value_keeps_the_new_value() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    put(&mut log, &[("a", Some("1"))], NOW_MS);
    put(&mut log, &[("a", None)], NOW_MS);
    put(&mut log, &[("a", Some("2"))], NOW_MS);
    roll(&mut log);
    log.clean(NOW_MS + 5 * DAY_MS).unwrap();
    assert_eq!(all_records(&log).len(), 1);
    assert_eq!(latest_values(&log), BTreeMap::from([(b("a"), b("2"))]));
}

#[test]
fn the_active_segment_is_never_touched() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    write_updates(&mut log);
    for round in 0..5 {
        put(
            &mut log,
            &[("key-0", Some(&format!("active-{round}")))],
            NOW_MS,
        );
    }
    let active_path = dir
        .path()
        .join(format!("{:020}.log", log.active().base_offset()));
    let active_before = std::fs::read(&active_path).unwrap();
    log.clean(NOW_MS).unwrap();
    assert_eq!(std::fs::read(&active_path).unwrap(), active_before);
    let key0: Vec<_> = all_records(&log)
        .into_iter()
        .filter(|(_, k, _)| k.as_deref() == Some(&b"key-0"[..]))
        .collect();
    // The closed segments keep key-0 once (its latest closed value is superseded by the
    // active segment only once that segment is cleaned), the active segment keeps all five.
    assert_eq!(key0.len(), 6);
    assert_eq!(latest_values(&log)[&b("key-0")], b("active-4"));
}

#[test]
fn min_compaction_lag_and_high_watermark_bound_the_cleanable_range() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    put(&mut log, &[("a", Some("old"))], NOW_MS - 10_000);
    roll(&mut log);
    put(&mut log, &[("a", Some("new"))], NOW_MS);
    roll(&mut log);
    log.set_compaction_config(CompactionConfig {
        min_compaction_lag_ms: 5_000,
        ..compact()
    });
    // Only the old segment is cleanable: "a" in it is not superseded within that range.
    let stats = log.clean(NOW_MS).unwrap();
    assert_eq!(stats.records_superseded, 0);
    assert_eq!(all_records(&log).len(), 2);
    let stats = log.clean(NOW_MS + 5_000).unwrap();
    assert_eq!(stats.records_superseded, 1);
    assert_eq!(all_records(&log).len(), 1);
    // Nothing above the high watermark is cleaned.
    put(&mut log, &[("b", Some("1"))], NOW_MS);
    put(&mut log, &[("b", Some("2"))], NOW_MS);
    roll(&mut log);
    log.set_high_watermark(log.log_end_offset() - 1);
    assert_eq!(log.clean(NOW_MS + 10_000).unwrap().records_superseded, 0);
    assert_eq!(all_records(&log).len(), 3);
}

#[test]
fn a_due_delete_horizon_never_cleans_above_the_high_watermark() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.set_config(LogConfig {
        segment_size_bytes: 1,
        ..config()
    });
    put(&mut log, &[("a", None)], NOW_MS);
    roll(&mut log);
    put(&mut log, &[("b", Some("1"))], NOW_MS);
    put(&mut log, &[("b", Some("2"))], NOW_MS);
    roll(&mut log);
    log.clean(NOW_MS).unwrap();
    assert_eq!(all_records(&log).len(), 2, "the tombstone of a and b=2");
    // The high watermark drops below the clean part (say, a follower that lost its log).
    log.set_high_watermark(1);
    let stats = log.clean(NOW_MS + 2 * 86_400_000).unwrap();
    assert_eq!(stats.tombstones_removed, 1);
    assert_eq!(
        stats.segments_read, 1,
        "only the segment below the high watermark"
    );
    assert_eq!(all_records(&log).len(), 1);
}

#[test]
fn max_compaction_lag_forces_cleaning_and_rolls_the_active_segment() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    write_updates(&mut log);
    log.clean(NOW_MS).unwrap();
    put(&mut log, &[("key-0", Some("x"))], NOW_MS);
    roll(&mut log);
    log.set_compaction_config(CompactionConfig {
        min_cleanable_dirty_ratio: 0.99,
        max_compaction_lag_ms: 60_000,
        ..compact()
    });
    assert!(!log.needs_cleaning(NOW_MS + 60_000));
    assert!(log.needs_cleaning(NOW_MS + 60_001));
    // The active segment rolls at max_compaction_lag_ms although segment_ms is larger.
    log.set_config(LogConfig {
        segment_ms: i64::MAX,
        ..config()
    });
    put(&mut log, &[("key-1", Some("y"))], NOW_MS);
    assert!(!log.roll_if_due(NOW_MS + 59_999).unwrap());
    assert!(log.roll_if_due(NOW_MS + 60_000).unwrap());
}

#[test]
fn keyless_records_are_dropped_and_delete_only_logs_are_never_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut blob = keyed_batch(
        &[
            KeyedRecord::new(None, Some("x"), NOW_MS),
            KeyedRecord::new(Some("k"), Some("v"), NOW_MS),
        ],
        Compression::None,
        None,
    );
    log.append(&mut blob, 0, None, NOW_MS).unwrap();
    log.set_high_watermark(log.log_end_offset());
    roll(&mut log);
    log.set_compaction_config(CompactionConfig::default());
    assert!(!log.needs_cleaning(NOW_MS));
    assert_eq!(log.clean(NOW_MS).unwrap().records_read, 0);
    log.set_compaction_config(compact());
    assert_eq!(log.clean(NOW_MS).unwrap().keyless_records_removed, 1);
    let records = all_records(&log);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].0, 1);
}

#[test]
fn retention_applies_with_compact_delete_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    write_updates(&mut log);
    log.set_config(LogConfig {
        retention_ms: 1,
        ..config()
    });
    assert_eq!(
        log.enforce_retention(NOW_MS + DAY_MS).unwrap(),
        0,
        "compact only"
    );
    log.set_compaction_config(CompactionConfig {
        cleanup_policy_delete: true,
        ..compact()
    });
    assert!(
        log.enforce_retention(NOW_MS + DAY_MS).unwrap() > 0,
        "compact,delete"
    );
}

#[test]
fn compressed_batches_keep_their_codec_offsets_and_values() {
    for compression in [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        for round in 0..20 {
            let records: Vec<KeyedRecord> = (0..4)
                .map(|k| {
                    KeyedRecord::new(
                        Some(&format!("k{k}")),
                        Some(&format!("v{round}")),
                        NOW_MS + round,
                    )
                })
                .collect();
            let mut blob = keyed_batch(&records, compression, None);
            log.append(&mut blob, 0, None, NOW_MS).unwrap();
        }
        log.set_high_watermark(log.log_end_offset());
        let last = log.log_end_offset() - 1;
        roll(&mut log);
        log.clean(NOW_MS).unwrap();
        let records = all_records(&log);
        assert_eq!(records.len(), 4, "{compression:?}");
        assert_eq!(
            records.iter().map(|r| r.0).collect::<Vec<_>>(),
            [last - 3, last - 2, last - 1, last]
        );
        assert!(records.iter().all(|r| r.2.as_deref() == Some(&b"v19"[..])));
        assert!(headers(&log)
            .iter()
            .filter(|h| h.records_count > 0)
            .all(|h| h.compression() == compression as u8));
    }
}

#[test]
fn a_producers_last_batch_is_kept_empty_with_its_offsets_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut idempotent = keyed_batch(
        &[KeyedRecord::new(Some("a"), Some("1"), NOW_MS)],
        Compression::None,
        Some((42, 3, 7)),
    );
    log.append(&mut idempotent, 0, None, NOW_MS).unwrap();
    put(&mut log, &[("a", Some("2"))], NOW_MS);
    put(&mut log, &[("b", Some("1"))], NOW_MS);
    roll(&mut log);
    let stats = log.clean(NOW_MS).unwrap();
    assert_eq!(stats.empty_batches_kept, 1);
    let kept = headers(&log);
    assert_eq!(kept.len(), 3);
    let empty = kept[0];
    assert_eq!(
        (empty.base_offset, empty.last_offset(), empty.records_count),
        (0, 0, 0)
    );
    assert_eq!(
        (empty.producer_id, empty.producer_epoch, empty.base_sequence),
        (42, 3, 7)
    );
    // Without snapshots, the producer state rebuilt from the cleaned log still knows it.
    drop(log);
    for offset in crate::producer_state::snapshot_offsets(dir.path()).unwrap() {
        std::fs::remove_file(crate::producer_state::snapshot_path(dir.path(), offset)).unwrap();
    }
    let log = open(dir.path());
    let entry = log.producer_state().entry(42).unwrap();
    assert_eq!(entry.last_batch().unwrap().last_sequence, 7);
    assert_eq!(
        latest_values(&log),
        BTreeMap::from([(b("a"), b("2")), (b("b"), b("1"))])
    );
}

#[test]
fn the_last_batch_of_a_group_is_kept_empty_so_segments_stay_contiguous() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    put(&mut log, &[("a", Some("1"))], NOW_MS);
    put(&mut log, &[("a", Some("2"))], NOW_MS);
    roll(&mut log);
    put(&mut log, &[("a", Some("3"))], NOW_MS);
    roll(&mut log);
    log.set_config(LogConfig {
        segment_size_bytes: 1,
        ..config()
    });
    log.clean(NOW_MS).unwrap();
    let kept = headers(&log);
    // Segment [0, 2): both batches superseded; the last one stays as an empty header.
    assert_eq!(
        kept.iter()
            .map(|h| (h.base_offset, h.records_count))
            .collect::<Vec<_>>(),
        [(1, 0), (2, 1)]
    );
    drop(log);
    let log = open(dir.path());
    assert_eq!(log.segment_count(), 3);
    assert_eq!(latest_values(&log), BTreeMap::from([(b("a"), b("3"))]));
}

/// Writes a log for the crash tests: updates and tombstones over many segments, cleaned in
/// groups of `group_size_bytes`.
fn crash_fixture(dir: &Path, group_size_bytes: u64) -> (PartitionLog, BTreeMap<Bytes, Bytes>) {
    let mut log = open(dir);
    let mut model = write_updates(&mut log);
    put(&mut log, &[("key-3", None), ("key-9", Some("x"))], NOW_MS);
    model.remove(&b("key-3"));
    model.insert(b("key-9"), b("x"));
    roll(&mut log);
    log.set_config(LogConfig {
        segment_size_bytes: group_size_bytes,
        ..config()
    });
    (log, model)
}

#[test]
fn a_crash_at_any_step_of_a_clean_loses_nothing() {
    let steps = [
        CleanStep::CleanedWritten,
        CleanStep::SwapRenamed,
        CleanStep::OldSegmentsDeleted,
    ];
    for (step, group_size_bytes) in steps.into_iter().flat_map(|s| [(s, 600), (s, 1 << 20)]) {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, model) = crash_fixture(dir.path(), group_size_bytes);
        let log_end = log.log_end_offset();
        log.clean_until(NOW_MS, Some(step)).unwrap();
        assert!(
            !leftovers(dir.path()).is_empty(),
            "{step:?} leaves files behind"
        );
        drop(log); // SIGKILL: no close
        let mut log = open(dir.path());
        log.set_config(LogConfig {
            segment_size_bytes: group_size_bytes,
            ..config()
        });
        assert!(
            leftovers(dir.path()).is_empty(),
            "{step:?}: open finishes or rolls back"
        );
        assert_eq!(log.log_end_offset(), log_end);
        assert_eq!(latest_values(&log), model, "{step:?}");
        log.clean(NOW_MS).unwrap();
        assert_eq!(latest_values(&log), model, "{step:?} then a full clean");
        drop(log);
        let log = open(dir.path());
        assert_eq!(latest_values(&log), model);
    }
}

#[test]
fn a_crash_while_installing_a_swap_over_a_partly_deleted_group_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, model) = crash_fixture(dir.path(), 1 << 20);
    let segments_before = log.segment_count();
    log.clean_until(NOW_MS, Some(CleanStep::SwapRenamed))
        .unwrap();
    drop(log);
    // Delete only some of the old files, as a crash in the middle of the deletions would.
    let swap = leftovers(dir.path()).pop().unwrap();
    let base: i64 = swap[..20].parse().unwrap();
    let mut logs: Vec<i64> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".log").and_then(|s| s.parse().ok()))
        .filter(|&b| b > base)
        .collect();
    logs.sort();
    std::fs::remove_file(dir.path().join(format!("{:020}.log", logs[0]))).unwrap();
    std::fs::remove_file(dir.path().join(format!("{base:020}.index"))).unwrap();
    let log = open(dir.path());
    assert_eq!(latest_values(&log), model);
    assert!(leftovers(dir.path()).is_empty());
    assert_eq!(
        log.segment_count(),
        2,
        "{segments_before} segments became one plus the active"
    );
}

#[test]
fn a_swap_without_a_valid_batch_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (log, model) = crash_fixture(dir.path(), 600);
    drop(log);
    std::fs::write(dir.path().join(format!("{:020}.log.swap", 0)), [7u8; 30]).unwrap();
    std::fs::write(dir.path().join(format!("{:020}.log.cleaned", 0)), [7u8; 30]).unwrap();
    let log = open(dir.path());
    assert_eq!(latest_values(&log), model);
    assert!(leftovers(dir.path()).is_empty());
}

#[derive(Debug, Clone)]
enum Op {
    /// A batch of (key index, value or tombstone) records.
    Put(Vec<(u8, Option<u8>)>),
    Roll,
    /// Clean, `u8` days after the start.
    Clean(u8),
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec((0u8..6, prop::option::weighted(0.8, any::<u8>())), 1..4).prop_map(Op::Put),
        1 => Just(Op::Roll),
        2 => (0u8..4).prop_map(Op::Clean),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn compaction_keeps_the_last_value_of_every_key(ops in prop::collection::vec(op(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut model: BTreeMap<Bytes, Bytes> = BTreeMap::new();
        let mut days = 0i64;
        for op in ops {
            match op {
                Op::Put(records) => {
                    let owned: Vec<(String, Option<String>)> = records
                        .iter()
                        .map(|(k, v)| (format!("k{k}"), v.map(|v| format!("v{v}"))))
                        .collect();
                    let borrowed: Vec<(&str, Option<&str>)> =
                        owned.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
                    put(&mut log, &borrowed, NOW_MS);
                    for (k, v) in owned {
                        match v {
                            Some(v) => model.insert(b(&k), b(&v)),
                            None => model.remove(&b(&k)),
                        };
                    }
                }
                Op::Roll => {
                    log.roll_if_due(NOW_MS + 10 * DAY_MS).unwrap();
                }
                Op::Clean(step) => {
                    days += i64::from(step);
                    log.clean(NOW_MS + days * DAY_MS).unwrap();
                }
                Op::Reopen => {
                    drop(log);
                    log = open(dir.path());
                }
            }
            prop_assert_eq!(&latest_values(&log), &model);
        }
        // Two cleans far apart remove every superseded record and every tombstone from the
        // closed segments.
        log.roll_if_due(NOW_MS + 10 * DAY_MS).unwrap();
        log.clean(NOW_MS + (days + 10) * DAY_MS).unwrap();
        log.clean(NOW_MS + (days + 20) * DAY_MS).unwrap();
        let records = all_records(&log);
        prop_assert_eq!(records.len(), model.len());
        prop_assert!(records.iter().all(|(_, _, v)| v.is_some()));
        prop_assert_eq!(&latest_values(&log), &model);
    }
}

#[test]
fn cleaned_segments_keep_their_largest_timestamp_across_a_clean_restart() {
    // index.interval.bytes larger than the segments: only the seal records a segment's
    // largest timestamp, and a cleaned segment is sealed as a roll would seal it.
    let config = || LogConfig {
        index_interval_bytes: 1 << 20,
        ..config()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(), NOW_MS).unwrap();
    log.set_compaction_config(compact());
    for i in 0..12 {
        let value = format!("v{i}");
        put(
            &mut log,
            &[("a", Some(&value)), (&format!("k{i}"), Some("x"))],
            NOW_MS + 10 * i,
        );
    }
    roll(&mut log);
    log.clean(NOW_MS).unwrap();
    let targets = [NOW_MS, NOW_MS + 35, NOW_MS + 71, NOW_MS + 110];
    let answers = |log: &PartitionLog| offsets_for_timestamps(log, &targets);
    let before = answers(&log);
    assert!(before.iter().all(Option::is_some), "{before:?}");
    let closed = log.segment_count() - 1;
    log.close().unwrap();
    // Every closed segment has its time index file, so the reopen trusts it.
    assert_eq!(files_with_extension(dir.path(), "timeindex").len(), closed);
    let mut log = PartitionLog::open(dir.path(), config(), NOW_MS).unwrap();
    log.set_compaction_config(compact());
    assert_eq!(answers(&log), before);
}

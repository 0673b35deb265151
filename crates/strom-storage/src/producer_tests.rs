//! Tests of idempotent producer state through `PartitionLog`: duplicates across kills,
//! rejected appends that change nothing, epochs, expiry, truncation, snapshots, and a property
//! test that snapshot + tail replay equals a full rebuild from the log.

use std::path::Path;

use proptest::prelude::*;

use crate::producer_state::{snapshot_offsets, snapshot_path, ProducerEntry, ProducerStateError};
use crate::test_support::{batch, producer_batch};
use crate::{AppendInfo, AppendOutcome, LogConfig, PartitionLog, StorageError};

const NOW_MS: i64 = 1_700_000_000_000;

fn config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 500,
        index_interval_bytes: 64,
        ..LogConfig::default()
    }
}

fn open(dir: &Path) -> PartitionLog {
    let mut log = PartitionLog::open(dir, config(), NOW_MS).unwrap();
    log.set_high_watermark(log.log_end_offset());
    log
}

fn produce(
    log: &mut PartitionLog,
    pid: i64,
    epoch: i16,
    seq: i32,
    count: usize,
) -> Result<AppendOutcome, StorageError> {
    let mut blob = producer_batch(pid, epoch, seq, count, NOW_MS);
    log.append_checked(&mut blob, 0, None, NOW_MS)
}

fn appended(outcome: Result<AppendOutcome, StorageError>) -> (i64, i64) {
    match outcome {
        Ok(AppendOutcome::Appended(AppendInfo {
            base_offset,
            last_offset,
            ..
        })) => (base_offset, last_offset),
        other => panic!("expected an append, got {other:?}"),
    }
}

fn duplicate(outcome: Result<AppendOutcome, StorageError>) -> (i64, i64) {
    match outcome {
        Ok(AppendOutcome::Duplicate {
            base_offset,
            last_offset,
            ..
        }) => (base_offset, last_offset),
        other => panic!("expected a duplicate, got {other:?}"),
    }
}

fn producer_error(outcome: Result<AppendOutcome, StorageError>) -> ProducerStateError {
    match outcome {
        Err(StorageError::Producer(error)) => error,
        other => panic!("expected a producer error, got {other:?}"),
    }
}

fn sorted_entries(log: &PartitionLog) -> Vec<ProducerEntry> {
    let mut entries: Vec<ProducerEntry> = log.producer_state().entries().cloned().collect();
    entries.sort_by_key(|e| e.producer_id);
    entries
}

fn delete_snapshots(dir: &Path) {
    for offset in snapshot_offsets(dir).unwrap() {
        std::fs::remove_file(snapshot_path(dir, offset)).unwrap();
    }
}

#[test]
fn duplicates_are_detected_across_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    assert_eq!(appended(produce(&mut log, 7, 0, 0, 3)), (0, 2));
    assert_eq!(appended(produce(&mut log, 7, 0, 3, 2)), (3, 4));
    assert_eq!(duplicate(produce(&mut log, 7, 0, 0, 3)), (0, 2));
    assert_eq!(log.log_end_offset(), 5);
    drop(log); // SIGKILL: no close, no snapshot beyond the last roll
    let mut log = open(dir.path());
    assert_eq!(duplicate(produce(&mut log, 7, 0, 3, 2)), (3, 4));
    assert_eq!(duplicate(produce(&mut log, 7, 0, 0, 3)), (0, 2));
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(appended(produce(&mut log, 7, 0, 5, 1)), (5, 5));
    // Many rolls (snapshots) later, still detected after another kill.
    let mut sequence = 6;
    for _ in 0..30 {
        produce(&mut log, 7, 0, sequence, 4).unwrap();
        sequence += 4;
    }
    assert!(log.segment_count() > 5);
    let last = appended(produce(&mut log, 7, 0, sequence, 2));
    drop(log);
    let mut log = open(dir.path());
    assert_eq!(duplicate(produce(&mut log, 7, 0, sequence, 2)), last);
    assert!(matches!(
        producer_error(produce(&mut log, 7, 0, sequence + 3, 1)),
        ProducerStateError::OutOfOrderSequence { expected_sequence, .. } if expected_sequence == sequence + 2
    ));
}

#[test]
fn rejected_appends_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    appended(produce(&mut log, 1, 0, 0, 2));
    let (log_end, size_bytes, state) =
        (log.log_end_offset(), log.size_bytes(), sorted_entries(&log));
    let errors = [
        producer_error(produce(&mut log, 1, 0, 5, 1)),
        producer_error(produce(&mut log, 2, 0, 4, 1)),
        producer_error(produce(&mut log, 1, 1, 3, 1)),
    ];
    assert!(matches!(
        errors[0],
        ProducerStateError::OutOfOrderSequence {
            expected_sequence: 2,
            received_sequence: 5,
            ..
        }
    ));
    assert_eq!(
        errors[1],
        ProducerStateError::UnknownProducerId {
            producer_id: 2,
            received_sequence: 4
        }
    );
    assert!(
        matches!(errors[2], ProducerStateError::OutOfOrderSequence { .. }),
        "a new epoch starts at 0"
    );
    // A blob whose second batch has a gap: the first is not appended either.
    let mut blob = producer_batch(1, 0, 2, 1, NOW_MS);
    blob.extend(producer_batch(1, 0, 4, 1, NOW_MS));
    assert!(log.append_checked(&mut blob, 0, None, NOW_MS).is_err());
    // A blob mixing a replay with a new batch is refused rather than half-acknowledged.
    let mut mixed = producer_batch(1, 0, 0, 2, NOW_MS);
    mixed.extend(producer_batch(1, 0, 2, 1, NOW_MS));
    assert!(log.append_checked(&mut mixed, 0, None, NOW_MS).is_err());
    assert_eq!(
        (log.log_end_offset(), log.size_bytes()),
        (log_end, size_bytes)
    );
    assert_eq!(sorted_entries(&log), state);
    // The same two batches in sequence go in together, with a plain batch between them.
    let mut good = producer_batch(1, 0, 2, 1, NOW_MS);
    good.extend(batch(2, 8, NOW_MS));
    good.extend(producer_batch(1, 0, 3, 1, NOW_MS));
    assert_eq!(
        appended(log.append_checked(&mut good, 0, None, NOW_MS)),
        (2, 5)
    );
    assert_eq!(
        log.producer_state()
            .entry(1)
            .unwrap()
            .last_batch()
            .unwrap()
            .first_offset,
        5
    );
}

#[test]
fn epoch_bumps_fence_older_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    appended(produce(&mut log, 1, 0, 0, 1));
    appended(produce(&mut log, 1, 0, 1, 1));
    assert_eq!(appended(produce(&mut log, 1, 1, 0, 1)), (2, 2));
    assert_eq!(
        producer_error(produce(&mut log, 1, 0, 2, 1)),
        ProducerStateError::InvalidProducerEpoch {
            producer_id: 1,
            current_epoch: 1,
            received_epoch: 0
        }
    );
    assert!(matches!(
        producer_error(produce(&mut log, 1, 0, 1, 1)),
        ProducerStateError::InvalidProducerEpoch { .. }
    ));
    assert_eq!(duplicate(produce(&mut log, 1, 1, 0, 1)), (2, 2));
    drop(log);
    let mut log = open(dir.path());
    assert!(matches!(
        producer_error(produce(&mut log, 1, 0, 2, 1)),
        ProducerStateError::InvalidProducerEpoch { .. }
    ));
}

#[test]
fn plain_batches_pass_unchecked_and_log_append_time_duplicates_report_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut plain = batch(3, 8, NOW_MS);
    assert_eq!(
        appended(log.append_checked(&mut plain, 0, None, NOW_MS)),
        (0, 2)
    );
    assert!(log.producer_state().is_empty());
    let mut first = producer_batch(4, 0, 0, 2, NOW_MS);
    log.append_checked(&mut first, 0, Some(NOW_MS + 5), NOW_MS)
        .unwrap();
    let mut again = producer_batch(4, 0, 0, 2, NOW_MS);
    let outcome = log
        .append_checked(&mut again, 0, Some(NOW_MS + 9), NOW_MS)
        .unwrap();
    assert_eq!(
        outcome,
        AppendOutcome::Duplicate {
            base_offset: 3,
            last_offset: 4,
            max_timestamp_ms: NOW_MS + 5,
            log_start_offset: 0
        }
    );
}

#[test]
fn expired_producers_are_unknown_and_may_restart_at_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    appended(produce(&mut log, 1, 0, 0, 1));
    let expiration_ms = log.compaction_config().producer_id_expiration_ms;
    assert_eq!(log.remove_expired_producers(NOW_MS + expiration_ms - 1), 0);
    assert_eq!(log.remove_expired_producers(NOW_MS + expiration_ms), 1);
    assert_eq!(
        producer_error(produce(&mut log, 1, 0, 1, 1)),
        ProducerStateError::UnknownProducerId {
            producer_id: 1,
            received_sequence: 1
        }
    );
    appended(produce(&mut log, 1, 0, 0, 1));
}

#[test]
fn truncation_forgets_the_truncated_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    for sequence in 0..20 {
        appended(produce(&mut log, 1, 0, sequence, 1));
    }
    assert!(log.segment_count() > 2);
    log.truncate_to(5).unwrap();
    assert!(snapshot_offsets(dir.path())
        .unwrap()
        .iter()
        .all(|&o| o <= 5));
    assert_eq!(
        log.producer_state()
            .entry(1)
            .unwrap()
            .last_batch()
            .unwrap()
            .last_sequence,
        4
    );
    assert_eq!(appended(produce(&mut log, 1, 0, 5, 1)), (5, 5));
    assert_eq!(duplicate(produce(&mut log, 1, 0, 5, 1)), (5, 5));
}

#[test]
fn snapshots_are_written_on_roll_and_close_and_two_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    for sequence in 0..40 {
        produce(&mut log, 1, 0, sequence, 1).unwrap();
    }
    let offsets = snapshot_offsets(dir.path()).unwrap();
    assert_eq!(offsets.len(), 2);
    assert_eq!(offsets[1], log.active().base_offset());
    let (log_end, state) = (log.log_end_offset(), sorted_entries(&log));
    log.close().unwrap();
    assert_eq!(snapshot_offsets(dir.path()).unwrap().last(), Some(&log_end));
    let log = open(dir.path());
    assert_eq!(sorted_entries(&log), state);
}

#[test]
fn a_corrupt_snapshot_is_ignored() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    for sequence in 0..40 {
        produce(&mut log, sequence as i64 % 3, 0, sequence / 3, 1).unwrap();
    }
    let state = sorted_entries(&log);
    drop(log);
    for offset in snapshot_offsets(dir.path()).unwrap() {
        let path = snapshot_path(dir.path(), offset);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[12] ^= 0xff;
        std::fs::write(&path, bytes).unwrap();
    }
    let log = open(dir.path());
    assert_eq!(sorted_entries(&log), state);
}

#[derive(Debug, Clone)]
enum Op {
    /// Next batch of producer `pid % 3` with `count` records (a bumped epoch if `bump`).
    Produce {
        pid: u8,
        count: u8,
        bump: bool,
    },
    Plain,
    Kill,
    Close,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => (0u8..3, 1u8..4, prop::bool::weighted(0.05)).prop_map(|(pid, count, bump)| Op::Produce { pid, count, bump }),
        2 => Just(Op::Plain),
        1 => Just(Op::Kill),
        1 => Just(Op::Close),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn snapshot_and_tail_replay_equals_a_full_rebuild(ops in prop::collection::vec(op(), 1..80)) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = open(dir.path());
        let mut producers = [(0i16, 0i32); 3];
        for op in ops {
            match op {
                Op::Produce { pid, count, bump } => {
                    let (epoch, sequence) = &mut producers[usize::from(pid)];
                    if bump {
                        *epoch += 1;
                        *sequence = 0;
                    }
                    let outcome = produce(&mut log, i64::from(pid), *epoch, *sequence, usize::from(count));
                    prop_assert!(matches!(outcome, Ok(AppendOutcome::Appended(_))), "{:?}", outcome);
                    *sequence += i32::from(count);
                }
                Op::Plain => {
                    let mut blob = batch(2, 16, NOW_MS);
                    log.append_checked(&mut blob, 0, None, NOW_MS).unwrap();
                }
                Op::Kill => {
                    let before = sorted_entries(&log);
                    drop(log);
                    log = open(dir.path());
                    prop_assert_eq!(sorted_entries(&log), before);
                }
                Op::Close => {
                    let before = sorted_entries(&log);
                    log.close().unwrap();
                    log = open(dir.path());
                    prop_assert_eq!(sorted_entries(&log), before);
                }
            }
        }
        let live = sorted_entries(&log);
        drop(log);
        let from_snapshot = sorted_entries(&open(dir.path()));
        delete_snapshots(dir.path());
        let full = sorted_entries(&open(dir.path()));
        prop_assert_eq!(&from_snapshot, &live);
        prop_assert_eq!(&full, &live);
    }
}

//! Tests of the partition log as a whole: appends, reads, rolls, recovery, retention,
//! DeleteRecords, timestamps, epochs. Property tests use small segments to force many rolls.

use std::path::Path;

use proptest::prelude::*;

use crate::batch::{batches, BatchHeader};
use crate::checkpoint::Checkpoint;
use crate::test_support::{
    batch, batch_with_timestamps, compressed_batch, files_with_extension, offsets_for_timestamps,
};
use crate::{LogConfig, PartitionLog, StorageError};

const NOW_MS: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn append(
    log: &mut PartitionLog,
    records: usize,
    value_bytes: usize,
    timestamp_ms: i64,
) -> (i64, i64) {
    let mut blob = batch(records, value_bytes, timestamp_ms);
    let info = log.append(&mut blob, 0, None, NOW_MS).unwrap();
    log.set_high_watermark(log.log_end_offset());
    (info.base_offset, info.last_offset)
}

fn headers(bytes: &[u8]) -> Vec<BatchHeader> {
    batches(bytes).map(|b| b.unwrap().0).collect()
}

fn read_all(log: &PartitionLog) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .unwrap()
        .to_vec()
}

#[test]
fn append_assigns_offsets_and_read_returns_whole_batches() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), NOW_MS).unwrap();
    assert_eq!(
        (
            log.log_start_offset(),
            log.log_end_offset(),
            log.high_watermark()
        ),
        (0, 0, 0)
    );
    assert_eq!(append(&mut log, 3, 10, NOW_MS), (0, 2));
    assert_eq!(append(&mut log, 2, 10, NOW_MS), (3, 4));
    assert_eq!(append(&mut log, 1, 10, NOW_MS), (5, 5));
    let all = log.read(0, usize::MAX, 6, false).unwrap();
    assert_eq!(
        headers(&all)
            .iter()
            .map(|h| h.base_offset)
            .collect::<Vec<_>>(),
        [0, 3, 5]
    );
    let from_four = log.read(4, usize::MAX, 6, false).unwrap();
    assert_eq!(headers(&from_four)[0].base_offset, 3);
    // The high watermark (max offset) stops reads at whole batches.
    assert_eq!(
        headers(&log.read(0, usize::MAX, 5, false).unwrap()).len(),
        2
    );
    assert_eq!(
        headers(&log.read(0, usize::MAX, 4, false).unwrap()).len(),
        1
    );
    assert!(log.read(3, usize::MAX, 4, false).unwrap().is_empty());
    // max_bytes: whole batches only; min_one_batch returns the first even if too large.
    let first_size = headers(&all)[0].size_bytes();
    assert!(log.read(0, first_size - 1, 6, false).unwrap().is_empty());
    assert_eq!(
        log.read(0, first_size - 1, 6, true).unwrap().len(),
        first_size
    );
    assert_eq!(
        log.read(0, first_size + 1, 6, false).unwrap().len(),
        first_size
    );
    // Bounds.
    assert!(log.read(6, 100, 6, true).unwrap().is_empty());
    assert!(matches!(
        log.read(7, 100, 7, true),
        Err(StorageError::OffsetOutOfRange {
            requested: 7,
            log_start: 0,
            log_end: 6
        })
    ));
    assert!(matches!(
        log.read(-1, 100, 7, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    // Leader epoch went into the header.
    assert!(headers(&all).iter().all(|h| h.partition_leader_epoch == 0));
}

#[test]
fn rolls_segments_and_reopens_after_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    for i in 0..40 {
        append(&mut log, 1 + i % 4, 50, NOW_MS + i as i64);
    }
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    let logs = files_with_extension(dir.path(), "log");
    assert_eq!(logs.len(), log.segment_count());
    assert_eq!(logs[0].file_name().unwrap(), "00000000000000000000.log");
    let before = read_all(&log);
    let (log_end, size_bytes) = (log.log_end_offset(), log.size_bytes());
    log.close().unwrap();
    let checkpoint = Checkpoint::read(dir.path()).unwrap().unwrap();
    assert!(checkpoint.clean_shutdown);
    assert_eq!(checkpoint.recovery_point, log_end);
    let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.log_end_offset(), log_end);
    assert_eq!(log.high_watermark(), log_end);
    assert_eq!(log.size_bytes(), size_bytes);
    assert_eq!(read_all(&log), before);
}

#[test]
fn rolls_on_segment_ms() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1000,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW_MS).unwrap();
    assert!(
        !log.roll_if_due(NOW_MS + 5000).unwrap(),
        "empty segments never roll"
    );
    log.append(&mut batch(1, 10, NOW_MS), 0, None, NOW_MS)
        .unwrap();
    assert!(!log.roll_if_due(NOW_MS + 999).unwrap());
    assert!(log.roll_if_due(NOW_MS + 1000).unwrap());
    assert_eq!(log.segment_count(), 2);
    log.append(&mut batch(1, 10, NOW_MS), 0, None, NOW_MS + 1500)
        .unwrap();
    log.append(&mut batch(1, 10, NOW_MS), 0, None, NOW_MS + 2600)
        .unwrap();
    assert_eq!(
        log.segment_count(),
        3,
        "append rolls a segment older than segment_ms"
    );
}

#[test]
fn index_files_are_rebuilt_when_deleted_or_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    for i in 0..30 {
        append(&mut log, 2, 40, NOW_MS + 10 * i);
    }
    let before = read_all(&log);
    let timestamp_answer = log.offset_for_timestamp(NOW_MS + 101).unwrap();
    log.close().unwrap();
    let index_files = files_with_extension(dir.path(), "index");
    let time_files = files_with_extension(dir.path(), "timeindex");
    for path in &index_files {
        std::fs::remove_file(path).unwrap();
    }
    std::fs::write(&time_files[1], [7u8; 13]).unwrap();
    let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    // Closed segments' rebuilt indexes are written at once, the active one's at close.
    assert_eq!(
        files_with_extension(dir.path(), "index").len(),
        index_files.len() - 1
    );
    assert_eq!(read_all(&log), before);
    assert_eq!(
        log.offset_for_timestamp(NOW_MS + 101).unwrap(),
        timestamp_answer
    );
    for offset in 0..log.log_end_offset() {
        let first = headers(&log.read(offset, 1, i64::MAX, true).unwrap())[0];
        assert!(first.base_offset <= offset && offset <= first.last_offset());
    }
    log.close().unwrap();
    assert_eq!(
        files_with_extension(dir.path(), "index").len(),
        index_files.len()
    );
}

#[test]
fn recovery_truncates_at_a_corrupt_batch_and_drops_later_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    let mut ends = Vec::new();
    for _ in 0..20 {
        ends.push(append(&mut log, 2, 60, NOW_MS).1 + 1);
    }
    let segments_before = log.segment_count();
    drop(log); // a kill: no flush, no checkpoint update
    let first = &files_with_extension(dir.path(), "log")[0];
    let mut bytes = std::fs::read(first).unwrap();
    let first_batch = headers(&bytes)[0];
    let second_start = first_batch.size_bytes();
    bytes[second_start + 40] ^= 0x10; // inside the second batch, under its CRC
    std::fs::write(first, &bytes).unwrap();
    // Nothing is below the recovery point after an unclean stop, so everything is scanned
    // (a brand-new log writes no checkpoint until its first flush: there may be none).
    let _ = std::fs::remove_file(dir.path().join(crate::checkpoint::CHECKPOINT_FILE_NAME));
    let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert!(segments_before > 1);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), first_batch.next_offset());
    assert_eq!(
        std::fs::metadata(first).unwrap().len() as usize,
        second_start
    );
}

/// Appends 20 small batches (several segments) and kills the log: no flush, no checkpoint.
/// Returns the log's bytes and end offset, and its `.log` files in base offset order.
fn killed_log_of_several_segments(dir: &Path) -> (Vec<u8>, i64, Vec<std::path::PathBuf>) {
    let mut log = PartitionLog::open(dir, small_config(), NOW_MS).unwrap();
    for _ in 0..20 {
        append(&mut log, 2, 60, NOW_MS);
    }
    assert!(log.segment_count() >= 3, "{} segments", log.segment_count());
    let (bytes, end) = (read_all(&log), log.log_end_offset());
    drop(log);
    // Nothing is below the recovery point after an unclean stop, so everything is scanned.
    let _ = std::fs::remove_file(dir.join(crate::checkpoint::CHECKPOINT_FILE_NAME));
    (bytes, end, files_with_extension(dir, "log"))
}

/// Extends `path` with `zero_bytes` zeros (sparse), as a file system that extended a file but
/// had not written its data yet leaves it after a crash; returns the length of the data.
fn append_zeros(path: &Path, zero_bytes: u64) -> u64 {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    let len = file.metadata().unwrap().len();
    file.set_len(len + zero_bytes).unwrap();
    len
}

#[test]
fn zeros_after_the_active_segments_data_are_cut_without_losing_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (before, end, logs) = killed_log_of_several_segments(dir.path());
    let active = logs.last().unwrap();
    let data_bytes = append_zeros(active, 64 * 1024);
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.segment_count(), logs.len());
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log), before);
    assert_eq!(std::fs::metadata(active).unwrap().len(), data_bytes);
    // The next append goes right after the data, not after the zeros.
    let (base, last) = append(&mut log, 2, 60, NOW_MS);
    assert_eq!(base, end);
    let offsets: Vec<i64> = headers(&read_all(&log))
        .iter()
        .flat_map(|h| h.base_offset..h.next_offset())
        .collect();
    assert_eq!(offsets, (0..=last).collect::<Vec<_>>());
}

#[test]
fn zeros_after_a_closed_segments_data_count_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let (before, _, logs) = killed_log_of_several_segments(dir.path());
    let data_bytes = append_zeros(&logs[0], 64 * 1024);
    let first_segment_end = headers(&std::fs::read(&logs[0]).unwrap()[..data_bytes as usize])
        .last()
        .unwrap()
        .next_offset();
    let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    // Cut like any damage: the zeros, and every later segment with them.
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), first_segment_end);
    assert_eq!(std::fs::metadata(&logs[0]).unwrap().len(), data_bytes);
    assert!(before.starts_with(&read_all(&log)));
}

#[test]
fn delete_records_moves_log_start_and_retires_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    for _ in 0..30 {
        append(&mut log, 3, 40, NOW_MS);
    }
    let segments = log.segment_count();
    log.set_high_watermark(50);
    assert!(matches!(
        log.delete_records_before(51),
        Err(StorageError::InvalidOffset(_))
    ));
    assert_eq!(log.delete_records_before(40).unwrap(), 40);
    assert_eq!(
        log.delete_records_before(10).unwrap(),
        40,
        "never moves backwards"
    );
    assert!(log.segment_count() < segments);
    // Renamed under the lock, unlinked by the caller after it (as retention does).
    let retired = files_ending_with(dir.path(), ".log.deleted");
    assert_eq!(retired.len(), segments - log.segment_count());
    let files = log.take_retired_files();
    assert!(!files.is_empty());
    files.delete().unwrap();
    assert!(files_ending_with(dir.path(), ".deleted").is_empty());
    assert!(matches!(
        log.read(39, 100, 90, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let first = headers(&log.read(40, 1, 90, true).unwrap())[0];
    assert!(first.base_offset <= 40 && 40 <= first.last_offset());
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.log_start_offset(), 40);
    log.set_high_watermark(log.log_end_offset());
    let log_end = log.log_end_offset();
    assert_eq!(log.delete_records_before(log_end).unwrap(), log_end);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.size_bytes(), 0);
    assert!(log.read(log_end, 100, log_end, true).unwrap().is_empty());
    assert_eq!(append(&mut log, 1, 10, NOW_MS).0, log_end);
}

#[test]
fn retention_by_bytes_keeps_the_newest_segments() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    for _ in 0..40 {
        append(&mut log, 2, 60, NOW_MS);
    }
    let mut config = small_config();
    config.retention_bytes = 3000;
    log.set_config(config);
    let deleted = log.enforce_retention(NOW_MS).unwrap();
    assert!(deleted > 0);
    assert!(
        log.size_bytes() >= 3000 && log.size_bytes() < 3000 + 1024 + 200,
        "{}",
        log.size_bytes()
    );
    assert_eq!(log.enforce_retention(NOW_MS).unwrap(), 0);
    assert!(log.log_start_offset() > 0);
    assert!(matches!(
        log.read(0, 10, 100, true),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(!log
        .read(log.log_start_offset(), 10, i64::MAX, true)
        .unwrap()
        .is_empty());
}

fn files_ending_with(dir: &Path, suffix: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix))
        .collect();
    names.sort();
    names
}

/// A log of 40 small appends, its config switched to `retention.bytes` = 3000; with
/// `enforce`, retention has run (and deleted segments) once.
fn log_over_retention(dir: &Path, enforce: bool) -> (PartitionLog, LogConfig) {
    let mut log = PartitionLog::open(dir, small_config(), NOW_MS).unwrap();
    for _ in 0..40 {
        append(&mut log, 2, 60, NOW_MS);
    }
    let config = LogConfig {
        retention_bytes: 3000,
        ..small_config()
    };
    log.set_config(config.clone());
    if enforce {
        assert!(log.enforce_retention(NOW_MS).unwrap() > 0);
    }
    (log, config)
}

#[test]
fn retention_renames_segments_and_leaves_the_unlink_to_the_caller() {
    let dir = tempfile::tempdir().unwrap();
    let (mut log, _) = log_over_retention(dir.path(), false);
    let logs_before = files_ending_with(dir.path(), ".log");
    let deleted = log.enforce_retention(NOW_MS).unwrap();
    assert!(deleted > 0);
    // The deleted segments' files are renamed, not gone: no lock is held for an unlink.
    let retired = files_ending_with(dir.path(), ".log.deleted");
    assert_eq!(retired.len(), deleted);
    assert_eq!(
        files_ending_with(dir.path(), ".log").len(),
        logs_before.len() - deleted
    );
    for name in &retired {
        assert!(logs_before.contains(&name.trim_end_matches(".deleted").to_string()));
    }
    let kept = read_all(&log);
    let files = log.take_retired_files();
    assert!(!files.is_empty());
    files.delete().unwrap();
    assert!(files_ending_with(dir.path(), ".deleted").is_empty());
    assert!(log.take_retired_files().is_empty(), "taken once");
    assert_eq!(read_all(&log), kept);
}

#[test]
fn retired_files_left_by_a_crash_are_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let (log, config) = log_over_retention(dir.path(), true);
    let (start, end, kept) = (log.log_start_offset(), log.log_end_offset(), read_all(&log));
    // Killed before the retired files were unlinked (no close, nothing taken).
    drop(log);
    assert!(!files_ending_with(dir.path(), ".deleted").is_empty());
    let log = PartitionLog::open(dir.path(), config, NOW_MS).unwrap();
    assert!(files_ending_with(dir.path(), ".deleted").is_empty());
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log), kept);
}

#[test]
fn close_unlinks_retired_files_nobody_took() {
    let dir = tempfile::tempdir().unwrap();
    let (log, _) = log_over_retention(dir.path(), true);
    assert!(!files_ending_with(dir.path(), ".deleted").is_empty());
    log.close().unwrap();
    assert!(files_ending_with(dir.path(), ".deleted").is_empty());
}

#[test]
fn retention_by_time_never_deletes_above_the_high_watermark_and_empties_an_expired_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config();
    config.retention_ms = 60_000;
    let mut log = PartitionLog::open(dir.path(), config, NOW_MS).unwrap();
    for i in 0..20 {
        append(&mut log, 2, 60, NOW_MS + i * 1000);
    }
    for _ in 0..20 {
        append(&mut log, 2, 60, NOW_MS + 1_000_000);
    }
    let segments = log.segment_count();
    log.set_high_watermark(10);
    let deleted_below_hw = log.enforce_retention(NOW_MS + 1_000_000).unwrap();
    assert!(log.log_start_offset() <= 10);
    log.set_high_watermark(log.log_end_offset());
    let deleted = deleted_below_hw + log.enforce_retention(NOW_MS + 1_000_000).unwrap();
    assert!(deleted > 0 && deleted < segments);
    assert_eq!(
        log.offset_for_timestamp(0).unwrap().map(|(_, ts)| ts),
        Some(NOW_MS + 1_000_000)
    );
    // Everything old, even the active segment's data: it is rolled and deleted too (as Kafka
    // does), leaving an empty log that starts at its end offset.
    let log_end = log.log_end_offset();
    let all = log.enforce_retention(NOW_MS + 10_000_000).unwrap();
    assert!(all > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(
        (log.log_start_offset(), log.log_end_offset()),
        (log_end, log_end)
    );
    assert_eq!(log.size_bytes(), 0);
}

#[test]
fn offset_for_timestamp_is_record_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.offset_for_timestamp(0).unwrap(), None);
    assert_eq!(log.max_timestamp_and_offset(), None);
    // Offsets 0..=2 at 100, 300, 200; 3..=4 compressed at 400, 500; 5 at LogAppendTime 900.
    log.append(
        &mut batch_with_timestamps(&[100, 300, 200], 10),
        0,
        None,
        NOW_MS,
    )
    .unwrap();
    let mut gzip = compressed_batch(&[400, 500], 10, kafka_protocol::records::Compression::Gzip);
    log.append(&mut gzip, 0, None, NOW_MS).unwrap();
    log.append(&mut batch_with_timestamps(&[50], 10), 0, Some(900), NOW_MS)
        .unwrap();
    for _ in 0..20 {
        log.append(
            &mut batch_with_timestamps(&[600, 700], 100),
            0,
            None,
            NOW_MS,
        )
        .unwrap();
    }
    log.append(&mut batch_with_timestamps(&[800], 10), 0, None, NOW_MS)
        .unwrap();
    assert!(log.segment_count() > 2);
    let answer = |ts| log.offset_for_timestamp(ts).unwrap();
    assert_eq!(answer(0), Some((0, 100)));
    assert_eq!(answer(100), Some((0, 100)));
    assert_eq!(answer(150), Some((1, 300)));
    assert_eq!(answer(301), Some((3, 400)));
    assert_eq!(answer(450), Some((4, 500)));
    assert_eq!(answer(501), Some((5, 900)));
    assert_eq!(answer(900), Some((5, 900)));
    assert_eq!(answer(901), None);
    assert_eq!(log.max_timestamp_and_offset(), Some((900, 5)));
}

#[test]
fn leader_epochs_are_cached_persisted_and_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), NOW_MS).unwrap();
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), None);
    log.append(&mut batch(2, 10, NOW_MS), 1, None, NOW_MS)
        .unwrap(); // 0..=1
    log.append(&mut batch(2, 10, NOW_MS), 1, None, NOW_MS)
        .unwrap(); // 2..=3
    log.append(&mut batch(2, 10, NOW_MS), 3, None, NOW_MS)
        .unwrap(); // 4..=5
    assert_eq!(log.latest_epoch(), Some(3));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(3), Some((3, 6)));
    assert_eq!(log.end_offset_for_epoch(4), None);
    drop(log);
    // Lose the epoch file: recovery re-learns epochs from the scanned batches.
    std::fs::remove_file(dir.path().join(crate::epoch::LEADER_EPOCH_FILE_NAME)).unwrap();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), NOW_MS).unwrap();
    assert_eq!(log.end_offset_for_epoch(2), Some((1, 4)));
    assert!(matches!(
        log.truncate_to(3),
        Err(StorageError::InvalidOffset(_))
    ));
    log.truncate_to(4).unwrap();
    assert_eq!(log.log_end_offset(), 4);
    assert_eq!(log.latest_epoch(), Some(1));
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    log.append(&mut batch(1, 10, NOW_MS), 5, None, NOW_MS)
        .unwrap();
    assert_eq!(log.end_offset_for_epoch(1), Some((1, 4)));
    assert_eq!(log.end_offset_for_epoch(5), Some((5, 5)));
}

/// A leader records its epoch when it takes over, so appends in that epoch write no file,
/// and a flush makes the written file durable in place (the same inode) instead of replacing it.
#[test]
fn a_leader_epoch_assigned_at_takeover_spares_appends_and_flushes_new_files() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(crate::epoch::LEADER_EPOCH_FILE_NAME);
    let inode = || std::fs::metadata(&path).unwrap().ino();
    let mut log = PartitionLog::open(dir.path(), LogConfig::default(), NOW_MS).unwrap();
    log.assign_leader_epoch(-1).unwrap();
    assert!(!path.exists(), "no epoch, no file");
    log.assign_leader_epoch(4).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n1\n4 0\n");
    let first = inode();
    log.append(&mut batch(3, 10, NOW_MS), 4, None, NOW_MS)
        .unwrap();
    log.assign_leader_epoch(4).unwrap(); // not newer: nothing
    log.flush().unwrap();
    assert_eq!(
        inode(),
        first,
        "neither the append nor the flush replaced the file"
    );
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 3)));
    // A new epoch starts at the log end offset, and the flush after it syncs in place too.
    log.assign_leader_epoch(6).unwrap();
    let second = inode();
    log.append(&mut batch(2, 10, NOW_MS), 6, None, NOW_MS)
        .unwrap();
    log.flush().unwrap();
    assert_eq!(inode(), second);
    drop(log);
    let log = PartitionLog::open(dir.path(), LogConfig::default(), NOW_MS).unwrap();
    assert_eq!(log.end_offset_for_epoch(4), Some((4, 3)));
    assert_eq!(log.end_offset_for_epoch(6), Some((6, 5)));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "0\n2\n4 0\n6 3\n");
}

#[test]
fn truncate_to_across_segments_then_append() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    for _ in 0..30 {
        append(&mut log, 1, 100, NOW_MS);
    }
    assert!(log.segment_count() > 3);
    log.truncate_to(5).unwrap();
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(log.high_watermark(), 5);
    assert_eq!(headers(&read_all(&log)).len(), 5);
    assert_eq!(append(&mut log, 2, 10, NOW_MS), (5, 6));
    drop(log);
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.log_end_offset(), 7);
    log.truncate_to(0).unwrap();
    assert_eq!(
        (log.log_end_offset(), log.size_bytes(), log.segment_count()),
        (0, 0, 1)
    );
}

/// A brand-new, empty log writes no checkpoint when it opens (one file fewer per partition
/// created); its first close writes one, and a log reopened with data writes its own.
#[test]
fn a_brand_new_log_writes_its_checkpoint_at_the_first_close() {
    let dir = tempfile::tempdir().unwrap();
    let log = PartitionLog::open(dir.path(), LogConfig::default(), NOW_MS).unwrap();
    assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
    log.close().unwrap();
    let written = Checkpoint::read(dir.path())
        .unwrap()
        .expect("written at close");
    assert!(written.clean_shutdown);
    // Killed after an append, before any flush: the reopen recovers it and writes a checkpoint.
    let other = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(other.path(), LogConfig::default(), NOW_MS).unwrap();
    append(&mut log, 2, 10, NOW_MS);
    drop(log);
    let log = PartitionLog::open(other.path(), LogConfig::default(), NOW_MS).unwrap();
    assert_eq!(log.log_end_offset(), 2);
    assert!(Checkpoint::read(other.path()).unwrap().is_some());
}

#[test]
fn index_files_exist_only_for_indexes_with_entries() {
    let dir = tempfile::tempdir().unwrap();
    let names = |dir: &Path| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let index_files = |dir: &Path| {
        files_with_extension(dir, "index").len() + files_with_extension(dir, "timeindex").len()
    };
    // A new partition: a log file, no index files; a clean close adds only the checkpoint
    // (no producer snapshot for a log without batches or producers), and so does the next.
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(index_files(dir.path()), 0);
    assert!(!log.write_new_index_files().unwrap(), "nothing to index");
    log.close().unwrap();
    assert_eq!(
        names(dir.path()),
        ["00000000000000000000.log", "partition.checkpoint"]
    );
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.log_end_offset(), 0);

    // One batch (under index.interval.bytes): still no index entry, so no index file, and
    // the clean reopen checks the batch from the start of the segment.
    append(&mut log, 2, 40, NOW_MS);
    assert!(!log.write_new_index_files().unwrap());
    let one = read_all(&log);
    log.close().unwrap();
    assert_eq!(index_files(dir.path()), 0);
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(read_all(&log), one);
    assert_eq!(
        log.offset_for_timestamp(NOW_MS).unwrap().map(|(o, _)| o),
        Some(0)
    );

    // Index entries: the background pass writes both files once, with what they hold.
    for i in 1..4 {
        append(&mut log, 2, 40, NOW_MS + i);
    }
    assert_eq!(index_files(dir.path()), 0, "appends create no file");
    assert!(log.write_new_index_files().unwrap());
    assert_eq!(index_files(dir.path()), 2);
    assert!(!log.write_new_index_files().unwrap(), "written once");
    let before = read_all(&log);
    let timestamp_answer = log.offset_for_timestamp(NOW_MS + 2).unwrap();
    assert!(timestamp_answer.is_some());
    log.close().unwrap();
    let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(read_all(&log), before);
    assert_eq!(
        log.offset_for_timestamp(NOW_MS + 2).unwrap(),
        timestamp_answer
    );
    drop(log);

    // Without the background pass a clean close writes them; a kill before either
    // recovers the data from the log alone.
    let other = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(other.path(), small_config(), NOW_MS).unwrap();
    for i in 0..4 {
        append(&mut log, 2, 40, NOW_MS + i);
    }
    drop(log);
    assert_eq!(index_files(other.path()), 0);
    let log = PartitionLog::open(other.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.log_end_offset(), 8);
    log.close().unwrap();
    assert_eq!(index_files(other.path()), 2);

    // Truncated back to empty (a follower's truncation): the files go again.
    let mut log = PartitionLog::open(other.path(), small_config(), NOW_MS).unwrap();
    log.truncate_to(0).unwrap();
    log.close().unwrap();
    assert_eq!(index_files(other.path()), 0);
    let log = PartitionLog::open(other.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn closed_segments_rebuilt_after_a_kill_keep_their_largest_timestamp() {
    // Segments smaller than index.interval.bytes get no periodic index entry: only the seal
    // records their largest timestamp, which a trusted open then reads from the time index.
    let config = || LogConfig {
        segment_size_bytes: 1024,
        index_interval_bytes: 1 << 20,
        ..LogConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), config(), NOW_MS).unwrap();
    for i in 0..14 {
        append(&mut log, 2, 40, NOW_MS + 10 * i);
    }
    assert!(log.segment_count() >= 3);
    let targets = [NOW_MS, NOW_MS + 25, NOW_MS + 61, NOW_MS + 112, NOW_MS + 131];
    let answers = |log: &PartitionLog| offsets_for_timestamps(log, &targets);
    let before = answers(&log);
    assert!(before.iter().all(Option::is_some));
    // Killed: the rolled segments were never flushed, so the reopen scans and seals them.
    drop(log);
    let log = PartitionLog::open(dir.path(), config(), NOW_MS).unwrap();
    assert_eq!(answers(&log), before);
    let closed = log.segment_count() - 1;
    log.close().unwrap();
    assert_eq!(files_with_extension(dir.path(), "timeindex").len(), closed);
    // Clean: the closed segments are now trusted from their files.
    let log = PartitionLog::open(dir.path(), config(), NOW_MS).unwrap();
    assert_eq!(answers(&log), before);
}

#[test]
fn flush_messages_advances_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_messages: 3,
        ..LogConfig::default()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW_MS).unwrap();
    append(&mut log, 2, 10, NOW_MS);
    // No checkpoint yet (a brand-new log writes its first at its first flush), or one at 0.
    assert_eq!(
        Checkpoint::read(dir.path())
            .unwrap()
            .map_or(0, |c| c.recovery_point),
        0
    );
    append(&mut log, 2, 10, NOW_MS);
    assert_eq!(
        Checkpoint::read(dir.path())
            .unwrap()
            .unwrap()
            .recovery_point,
        4
    );
}

#[test]
fn rolls_wait_for_a_background_flush_to_move_the_recovery_point() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert!(log.pending_flush().unwrap().is_none());
    for _ in 0..30 {
        append(&mut log, 3, 100, NOW_MS);
    }
    assert!(log.segment_count() > 3, "small segments rolled");
    let pending = log
        .pending_flush()
        .unwrap()
        .expect("rolled segments wait for a flush");
    let recovery_point = |dir: &Path| {
        Checkpoint::read(dir)
            .unwrap()
            .map_or(0, |c| c.recovery_point)
    };
    assert_eq!(
        recovery_point(dir.path()),
        0,
        "no roll moved the recovery point"
    );
    // More rolls while the flush runs (outside the lock, in the broker).
    for _ in 0..10 {
        append(&mut log, 3, 100, NOW_MS);
    }
    pending.sync().unwrap();
    log.complete_flush(pending.up_to()).unwrap();
    assert_eq!(recovery_point(dir.path()), pending.up_to());
    let later = log
        .pending_flush()
        .unwrap()
        .expect("segments rolled after the first flush");
    assert!(later.up_to() > pending.up_to());
    later.sync().unwrap();
    log.complete_flush(later.up_to()).unwrap();
    assert!(log.pending_flush().unwrap().is_none());
    // A stale completion (below the recovery point) changes nothing.
    log.complete_flush(pending.up_to()).unwrap();
    assert_eq!(recovery_point(dir.path()), later.up_to());
    // Killed now (no close): the reopened log holds everything.
    let everything = read_all(&log);
    let log_end = log.log_end_offset();
    drop(log);
    let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
    assert_eq!(log.log_end_offset(), log_end);
    assert_eq!(read_all(&log), everything);
}

#[test]
fn with_a_flush_policy_rolls_are_durable_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        flush_ms: 60_000,
        ..small_config()
    };
    let mut log = PartitionLog::open(dir.path(), config, NOW_MS).unwrap();
    for _ in 0..30 {
        append(&mut log, 3, 100, NOW_MS);
    }
    assert!(log.segment_count() > 3);
    assert!(log.pending_flush().unwrap().is_none());
}

#[test]
fn delete_removes_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topic-0");
    let mut log = PartitionLog::open(&path, LogConfig::default(), NOW_MS).unwrap();
    append(&mut log, 1, 10, NOW_MS);
    log.delete().unwrap();
    assert!(!path.exists());
}

/// Appends batches of the given record counts and value sizes; returns (base, next, size) per batch.
fn append_all(log: &mut PartitionLog, shapes: &[(usize, usize)]) -> Vec<(i64, i64)> {
    shapes
        .iter()
        .map(|&(records, value_bytes)| {
            let (base, last) = append(log, records, value_bytes, NOW_MS);
            (base, last + 1)
        })
        .collect()
}

fn batch_shapes() -> impl Strategy<Value = Vec<(usize, usize)>> {
    prop::collection::vec((1usize..6, 0usize..300), 1..60)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn reads_return_the_batch_containing_the_offset(
        shapes in batch_shapes(),
        picks in prop::collection::vec(any::<prop::sample::Index>(), 1..20),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        let ranges = append_all(&mut log, &shapes);
        let log_end = log.log_end_offset();
        for pick in picks {
            let offset = pick.index(log_end as usize) as i64;
            let one = log.read(offset, 1, log_end, true).unwrap();
            let got = headers(&one);
            prop_assert_eq!(got.len(), 1);
            let expected = ranges.iter().find(|(base, next)| *base <= offset && offset < *next).unwrap();
            prop_assert_eq!((got[0].base_offset, got[0].next_offset()), *expected);
            let rest = headers(&log.read(offset, usize::MAX, log_end, false).unwrap());
            let expected_rest: Vec<(i64, i64)> = ranges.iter().copied().filter(|(_, next)| *next > offset).collect();
            prop_assert_eq!(rest.iter().map(|h| (h.base_offset, h.next_offset())).collect::<Vec<_>>(), expected_rest);
        }
    }

    #[test]
    fn read_regions_hold_what_read_returns_cut_only_by_max_bytes(
        shapes in batch_shapes(),
        picks in prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), 0usize..3000), 1..8),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        append_all(&mut log, &shapes);
        let log_end = log.log_end_offset();
        let regions_bytes = |offset, max_bytes, max_offset, min_one| {
            let mut out = Vec::new();
            for region in log.read_regions(offset, max_bytes, max_offset, min_one).unwrap().regions {
                region.read_into(&mut out).unwrap();
            }
            out
        };
        for (start, stop, max_bytes) in picks {
            let offset = start.index(log_end as usize + 1) as i64;
            let max_offset = stop.index(log_end as usize + 1) as i64;
            // Unbounded: exactly the whole batches `read` returns.
            let whole = log.read(offset, usize::MAX, max_offset, false).unwrap();
            // The lag is every byte from the read's first batch to the log end.
            let plan = log.read_regions(offset, max_bytes, max_offset, true).unwrap();
            let to_end = log.read(offset, usize::MAX, i64::MAX, false).unwrap();
            let expected_lag = if plan.regions.is_empty() { 0 } else { to_end.len() as u64 };
            prop_assert_eq!(plan.lag_bytes, expected_lag);
            prop_assert_eq!(regions_bytes(offset, usize::MAX, max_offset, false), whole.to_vec());
            // Bounded: a prefix of that, at most max_bytes long unless the first batch is
            // larger and min_one_batch asks for it whole; never shorter than `read`'s answer.
            for min_one in [false, true] {
                let cut = regions_bytes(offset, max_bytes, max_offset, min_one);
                let batches_only = log.read(offset, max_bytes, max_offset, min_one).unwrap();
                prop_assert!(whole.starts_with(&cut));
                prop_assert!(cut.starts_with(&batches_only));
                let first_batch = headers(&whole).first().map_or(0, |h| h.size_bytes());
                let allowed = if min_one { max_bytes.max(first_batch) } else { max_bytes };
                prop_assert!(cut.len() <= allowed);
                if first_batch > 0 && first_batch <= allowed {
                    prop_assert!(!cut.is_empty());
                }
            }
        }
        prop_assert!(log.read_regions(log_end + 1, 100, i64::MAX, true).is_err());
    }

    #[test]
    fn a_cut_last_segment_recovers_to_a_batch_aligned_prefix(
        shapes in batch_shapes(),
        cut in any::<prop::sample::Index>(),
        garbage in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        let ranges = append_all(&mut log, &shapes);
        let everything = read_all(&log);
        drop(log); // killed: nothing flushed beyond what rolls synced
        let last = files_with_extension(dir.path(), "log").pop().unwrap();
        let bytes = std::fs::read(&last).unwrap();
        let cut_at = cut.index(bytes.len() + 1);
        let mut damaged = bytes[..cut_at].to_vec();
        if garbage {
            damaged.extend_from_slice(&[0xAB; 70]); // a torn write leaves junk after the cut
        }
        std::fs::write(&last, &damaged).unwrap();
        // Batches of the last segment fully before the cut survive.
        let mut surviving_end_bytes = 0;
        for header in headers(&bytes) {
            if surviving_end_bytes + header.size_bytes() > cut_at { break; }
            surviving_end_bytes += header.size_bytes();
        }
        let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        let recovered = read_all(&log);
        prop_assert!(everything.starts_with(&recovered));
        let kept = headers(&recovered);
        let expected_end = ranges.iter().map(|r| r.1).filter(|next| kept.iter().any(|h| h.next_offset() == *next)).max().unwrap_or(0);
        prop_assert_eq!(log.log_end_offset(), expected_end);
        prop_assert_eq!(std::fs::metadata(&last).unwrap().len() as usize, surviving_end_bytes);
        let prefix_bytes = everything.len() - bytes.len() + surviving_end_bytes;
        prop_assert_eq!(recovered.len(), prefix_bytes);
        prop_assert!(log.high_watermark() <= log.log_end_offset());
    }

    #[test]
    fn reopen_after_kill_keeps_every_appended_batch(shapes in batch_shapes()) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        append_all(&mut log, &shapes);
        let everything = read_all(&log);
        let log_end = log.log_end_offset();
        drop(log);
        let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        prop_assert_eq!(log.log_end_offset(), log_end);
        prop_assert_eq!(read_all(&log), everything);
    }

    #[test]
    fn offset_for_timestamp_matches_a_linear_search(
        batches_ts in prop::collection::vec(prop::collection::vec(0i64..1000, 1..5), 1..40),
        targets in prop::collection::vec(-5i64..1100, 1..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        let mut all = Vec::new();
        for timestamps in &batches_ts {
            log.append(&mut batch_with_timestamps(timestamps, 40), 0, None, NOW_MS).unwrap();
            all.extend_from_slice(timestamps);
        }
        for target in targets {
            let expected = all.iter().position(|ts| *ts >= target).map(|i| (i as i64, all[i]));
            prop_assert_eq!(log.offset_for_timestamp(target).unwrap(), expected);
        }
        let max = *all.iter().max().unwrap();
        prop_assert_eq!(log.max_timestamp_and_offset().map(|(ts, _)| ts), Some(max));
    }

    #[test]
    fn delete_records_then_reopen(shapes in batch_shapes(), pick in any::<prop::sample::Index>()) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        let ranges = append_all(&mut log, &shapes);
        let log_end = log.log_end_offset();
        let offset = pick.index(log_end as usize + 1) as i64;
        prop_assert_eq!(log.delete_records_before(offset).unwrap(), offset);
        prop_assert!(log.segment_count() >= 1);
        drop(log);
        let log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        prop_assert_eq!(log.log_start_offset(), offset);
        prop_assert_eq!(log.log_end_offset(), log_end);
        if offset > 0 {
            let out_of_range = matches!(log.read(offset - 1, 10, i64::MAX, true), Err(StorageError::OffsetOutOfRange { .. }));
            prop_assert!(out_of_range);
        }
        let expected: Vec<(i64, i64)> = ranges.into_iter().filter(|(_, next)| *next > offset).collect();
        let got: Vec<(i64, i64)> = headers(&read_all(&log)).iter().map(|h| (h.base_offset, h.next_offset())).collect();
        prop_assert_eq!(got, expected);
    }

    #[test]
    fn retention_by_bytes_deletes_exactly_the_excess(shapes in batch_shapes(), retention_bytes in 0i64..6000) {
        let dir = tempfile::tempdir().unwrap();
        let mut log = PartitionLog::open(dir.path(), small_config(), NOW_MS).unwrap();
        append_all(&mut log, &shapes);
        let mut config = small_config();
        config.retention_bytes = retention_bytes;
        log.set_config(config);
        log.enforce_retention(NOW_MS).unwrap();
        let sizes: Vec<u64> = files_with_extension(dir.path(), "log").iter().map(|p| std::fs::metadata(p).unwrap().len()).collect();
        let total: u64 = sizes.iter().sum();
        prop_assert_eq!(total, log.size_bytes());
        // Deleting the oldest remaining closed segment would go below the limit.
        if sizes.len() > 1 {
            prop_assert!(((total - sizes[0]) as i64) < retention_bytes);
        }
        prop_assert!(log.log_start_offset() <= log.high_watermark());
    }
}

//! Tests of the open files budget ([`FileCache`]) and of opening logs after a clean shutdown
//! of their directory (the marker in `checkpoint.rs`, the trusted active segment).

use std::path::Path;
use std::sync::Arc;

use crate::batch::batches;
use crate::checkpoint::{
    clean_shutdown_marked, mark_clean_shutdown, unmark_clean_shutdown, Checkpoint,
};
use crate::test_support::batch;
use crate::{FileCache, LogConfig, LogOpenOptions, PartitionLog};

const NOW_MS: i64 = 1_700_000_000_000;

fn small_config() -> LogConfig {
    LogConfig {
        segment_size_bytes: 1024,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

fn open(dir: &Path, files: &Arc<FileCache>, clean_shutdown: bool) -> PartitionLog {
    let options = LogOpenOptions {
        files: files.clone(),
        clean_shutdown,
        cache_trimmer: None,
    };
    PartitionLog::open_with(dir, small_config(), NOW_MS, &options).unwrap()
}

/// Appends one batch of `records` records (timestamps from `timestamp_ms`) and returns the
/// stored bytes (offsets assigned).
fn append(log: &mut PartitionLog, records: usize, timestamp_ms: i64) -> Vec<u8> {
    let mut blob = batch(records, 100, timestamp_ms);
    log.append(&mut blob, 0, None, NOW_MS).unwrap();
    log.set_high_watermark(log.log_end_offset());
    blob
}

fn read_all(log: &PartitionLog) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .unwrap()
        .to_vec()
}

/// Every offset reads back from the batch holding it.
fn assert_every_offset_reads(log: &PartitionLog) {
    for offset in log.log_start_offset()..log.log_end_offset() {
        let bytes = log.read(offset, 1, i64::MAX, true).unwrap();
        let (first, _) = batches(&bytes).next().unwrap().unwrap();
        assert!(first.base_offset <= offset && offset <= first.last_offset());
    }
}

/// Flips a byte inside the batch holding `offset` (its records, so the CRC no longer holds).
fn corrupt_batch_at(log_path: &Path, log_bytes_before: &[u8], offset: i64) {
    let mut position = 0usize;
    for item in batches(log_bytes_before) {
        let (header, bytes) = item.unwrap();
        if header.base_offset <= offset && offset <= header.last_offset() {
            let mut file = std::fs::read(log_path).unwrap();
            file[position + bytes.len() - 1] ^= 0xff;
            std::fs::write(log_path, file).unwrap();
            return;
        }
        position += bytes.len();
    }
    panic!("offset {offset} not in {}", log_path.display());
}

fn active_log_path(dir: &Path) -> std::path::PathBuf {
    let mut logs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().unwrap()
}

#[test]
fn logs_with_more_segments_than_the_budget_read_every_segment() {
    let root = tempfile::tempdir().unwrap();
    let files = FileCache::new(16);
    let dirs: Vec<_> = (0..3).map(|i| root.path().join(format!("t-{i}"))).collect();
    let mut logs: Vec<PartitionLog> = dirs.iter().map(|d| open(d, &files, false)).collect();
    let mut expected = vec![Vec::new(); logs.len()];
    let mut last_len = 0;
    for round in 0..60 {
        for (log, expected) in logs.iter_mut().zip(&mut expected) {
            let stored = append(log, 2, NOW_MS + round);
            last_len = stored.len();
            expected.extend(stored);
        }
    }
    for (log, expected) in logs.iter().zip(&expected) {
        assert!(log.segment_count() > 16, "{} segments", log.segment_count());
        assert_eq!(&read_all(log), expected);
        assert_every_offset_reads(log);
    }
    let stats = files.stats();
    assert!(stats.open <= 16, "{stats:?}");
    assert!(stats.evicted > 0, "{stats:?}");

    // Timestamp lookups, retention, DeleteRecords and truncation still work with handles
    // closed and reopened under them.
    let log = &mut logs[0];
    assert_eq!(
        log.offset_for_timestamp(NOW_MS + 30).unwrap().unwrap().1,
        NOW_MS + 30
    );
    let end = log.log_end_offset();
    log.truncate_to(end - 2).unwrap();
    let kept = expected[0].len() - last_len;
    expected[0].truncate(kept);
    assert_eq!(read_all(log), expected[0]);
    let before = log.segment_count();
    log.delete_records_before(40).unwrap();
    assert!(log.segment_count() < before);
    assert_eq!(log.log_start_offset(), 40);
    log.set_config(LogConfig {
        retention_bytes: 2048,
        ..small_config()
    });
    assert!(log.enforce_retention(NOW_MS).unwrap() > 0);
    assert!(log.size_bytes() <= 2048 + 1024);
    assert_every_offset_reads(log);

    // Closing and reopening through the same small budget gives the same logs.
    let starts: Vec<i64> = logs.iter().map(PartitionLog::log_start_offset).collect();
    let contents: Vec<Vec<u8>> = logs.iter().map(read_all).collect();
    for log in logs {
        log.close().unwrap();
    }
    assert_eq!(files.stats().open, 0, "dropped logs leave no handle behind");
    for (i, dir) in dirs.iter().enumerate() {
        let log = open(dir, &files, false);
        assert_eq!(log.log_start_offset(), starts[i]);
        assert_eq!(read_all(&log), contents[i]);
        assert_every_offset_reads(&log);
    }
    assert!(files.stats().open <= 16);
}

#[test]
fn a_segment_file_deleted_behind_the_log_is_an_error_not_an_empty_segment() {
    let dir = tempfile::tempdir().unwrap();
    let files = FileCache::new(16);
    let mut log = open(dir.path(), &files, false);
    for round in 0..100 {
        append(&mut log, 2, NOW_MS + round);
    }
    assert!(log.segment_count() > 16);
    let first = dir.path().join(format!("{:020}.log", 0));
    std::fs::remove_file(&first).unwrap();
    // The first segment's handle was evicted long ago: reopening it fails.
    assert!(log.read(0, 1, i64::MAX, true).is_err());
    assert!(!first.exists());
}

#[test]
fn clean_shutdown_open_trusts_the_active_segment_and_matches_a_full_recovery() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("t-0");
    let files = FileCache::new(64);
    let config = LogConfig {
        segment_size_bytes: 64 * 1024,
        ..small_config()
    };
    let options = LogOpenOptions {
        files: files.clone(),
        clean_shutdown: false,
        cache_trimmer: None,
    };
    let mut log = PartitionLog::open_with(&dir, config.clone(), NOW_MS, &options).unwrap();
    for round in 0..40 {
        append(&mut log, 3, NOW_MS + round);
    }
    assert_eq!(log.segment_count(), 1);
    let before = read_all(&log);
    let end = log.log_end_offset();
    let max_timestamp = log.max_timestamp_and_offset();
    let by_timestamp = log.offset_for_timestamp(NOW_MS + 20).unwrap();
    log.close_unsynced().unwrap();
    mark_clean_shutdown(root.path()).unwrap();
    assert!(clean_shutdown_marked(root.path()));

    let clean = LogOpenOptions {
        files: files.clone(),
        clean_shutdown: true,
        cache_trimmer: None,
    };
    let mut log = PartitionLog::open_with(&dir, config.clone(), NOW_MS, &clean).unwrap();
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(read_all(&log), before);
    assert_eq!(log.max_timestamp_and_offset(), max_timestamp);
    assert_eq!(log.offset_for_timestamp(NOW_MS + 20).unwrap(), by_timestamp);
    assert_every_offset_reads(&log);
    // Appends continue where it ended; a full recovery afterwards agrees.
    let mut after = before.clone();
    after.extend(append(&mut log, 3, NOW_MS + 100));
    log.close().unwrap();
    unmark_clean_shutdown(root.path()).unwrap();
    assert!(!clean_shutdown_marked(root.path()));
    unmark_clean_shutdown(root.path()).unwrap();
    let log = PartitionLog::open_with(&dir, config.clone(), NOW_MS, &options).unwrap();
    assert_eq!(read_all(&log), after);

    // Proof that the clean open does not scan: a damaged batch well before the last index
    // entry goes unnoticed by it (as in Kafka), while a recovery scan cuts the log there.
    log.close().unwrap();
    corrupt_batch_at(&active_log_path(&dir), &after, 3);
    let log = PartitionLog::open_with(&dir, config.clone(), NOW_MS, &clean).unwrap();
    assert_eq!(log.log_end_offset(), end + 3);
    drop(log);
    let log = PartitionLog::open_with(&dir, config, NOW_MS, &options).unwrap();
    assert_eq!(log.log_end_offset(), 3);
}

#[test]
fn clean_open_scans_when_the_tail_is_damaged_or_the_log_was_not_closed() {
    let dir = tempfile::tempdir().unwrap();
    let files = FileCache::new(64);
    let mut log = open(dir.path(), &files, false);
    let mut stored = Vec::new();
    for round in 0..20 {
        stored.extend(append(&mut log, 2, NOW_MS + round));
    }
    let end = log.log_end_offset();
    log.close().unwrap();
    let active = active_log_path(dir.path());
    let active_base: i64 = active
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();

    // A torn last batch: the tail check fails and the segment is scanned and cut.
    let len = std::fs::metadata(&active).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&active)
        .unwrap();
    file.set_len(len - 5).unwrap();
    drop(file);
    let mut log = open(dir.path(), &files, true);
    assert_eq!(log.log_end_offset(), end - 2);
    assert_every_offset_reads(&log);
    stored.truncate(stored.len() - (len as usize));
    append(&mut log, 2, NOW_MS + 50);
    log.close().unwrap();

    // A checkpoint without the clean flag (the log itself was not closed): scanned, even
    // with the directory's marker.
    let active_bytes = std::fs::read(&active).unwrap();
    corrupt_batch_at(&active, &active_bytes, active_base);
    let mut checkpoint = Checkpoint::read(dir.path()).unwrap().unwrap();
    checkpoint.clean_shutdown = false;
    checkpoint.write(dir.path()).unwrap();
    let log = open(dir.path(), &files, true);
    assert_eq!(log.log_end_offset(), active_base);
}

#[test]
fn the_cache_evicts_the_least_recently_used_and_forgets_dropped_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = FileCache::new(16);
    let mut logs = Vec::new();
    for i in 0..20 {
        let path = dir.path().join(format!("{i}.log"));
        let mut file = crate::io::LogFile::create(&path, &files).unwrap();
        file.append(format!("file {i}").as_bytes()).unwrap();
        logs.push(file);
    }
    let stats = files.stats();
    assert_eq!((stats.open, stats.opened, stats.evicted), (16, 20, 4));
    // The first four were evicted; reading one reopens it and evicts the next oldest (4).
    let mut buf = [0u8; 6];
    assert_eq!(logs[0].read_at(&mut buf, 0).unwrap(), 6);
    assert_eq!(&buf, b"file 0");
    let stats = files.stats();
    assert_eq!((stats.open, stats.opened, stats.evicted), (16, 21, 5));
    // Using 5 keeps it; 6 is evicted next.
    logs[5].read_at(&mut buf, 0).unwrap();
    logs[1].read_at(&mut buf, 0).unwrap();
    assert_eq!(files.stats().opened, 22);
    logs[5].read_at(&mut buf, 0).unwrap();
    assert_eq!(files.stats().opened, 22, "5 stayed open");
    logs[6].read_at(&mut buf, 0).unwrap();
    assert_eq!(files.stats().opened, 23, "6 had been evicted");
    logs.truncate(10);
    assert!(files.stats().open <= 10);
    drop(logs);
    assert_eq!(files.stats().open, 0);
}

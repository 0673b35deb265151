//! Tests of preallocated, prefaulted segment files (see `prefault.rs`): the log's data and
//! offsets never see the space past the data; closed and cleanly closed segments end at their
//! last batch; a kill leaves zeros that recovery cuts without losing a batch.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::batch::batches;
use crate::test_support::{batch, files_with_extension};
use crate::{FileCache, LogConfig, LogOpenOptions, PartitionLog, Prefaulter};

const NOW_MS: i64 = 1_700_000_000_000;

/// 40 records of 1000 B: a blob over the 32 KiB below which appends are not prefaulted.
const RECORDS_PER_APPEND: usize = 40;
const VALUE_BYTES: usize = 1000;

/// Opens the log in `dir` with `prefaulter`, as after a crash unless `clean_shutdown`.
fn open(
    dir: &Path,
    config: LogConfig,
    prefaulter: &Arc<Prefaulter>,
    clean_shutdown: bool,
) -> PartitionLog {
    let options = LogOpenOptions {
        files: FileCache::new(64),
        clean_shutdown,
        prefaulter: Some(prefaulter.clone()),
        cache_trimmer: None,
    };
    PartitionLog::open_with(dir, config, NOW_MS, &options).unwrap()
}

fn config(segment_size_bytes: u64) -> LogConfig {
    LogConfig {
        segment_size_bytes,
        ..LogConfig::default()
    }
}

fn append_large(log: &mut PartitionLog) -> usize {
    let mut blob = batch(RECORDS_PER_APPEND, VALUE_BYTES, NOW_MS);
    let len = blob.len();
    assert!(len >= crate::prefault::PREFAULT_APPEND_BYTES_MIN);
    log.append(&mut blob, 0, None, NOW_MS).unwrap();
    log.set_high_watermark(log.log_end_offset());
    len
}

/// Length on disk of each `.log` file, in base offset order.
fn file_lengths(dir: &Path) -> Vec<u64> {
    files_with_extension(dir, "log")
        .iter()
        .map(|path| std::fs::metadata(path).unwrap().len())
        .collect()
}

/// Bytes of whole batches from the start of each `.log` file (where its data ends).
fn data_lengths(dir: &Path) -> Vec<u64> {
    files_with_extension(dir, "log")
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            batches(&bytes)
                .map_while(|b| b.ok())
                .map(|(header, _)| header.size_bytes() as u64)
                .sum()
        })
        .collect()
}

fn offsets(log: &PartitionLog) -> Vec<i64> {
    let bytes = log
        .read(log.log_start_offset(), usize::MAX, i64::MAX, true)
        .unwrap();
    batches(&bytes)
        .map(|b| b.unwrap().0)
        .flat_map(|h| h.base_offset..h.next_offset())
        .collect()
}

fn wait_for_jobs(prefaulter: &Prefaulter, jobs: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while prefaulter.stats().jobs_done < jobs {
        assert!(Instant::now() < deadline, "{:?}", prefaulter.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_active_segment_extends_past_its_data_and_ends_at_it_after_a_roll_and_a_close() {
    let dir = tempfile::tempdir().unwrap();
    let prefaulter = Prefaulter::start(4 << 20, true).unwrap();
    // Segments of 1 MiB: a roll every ~25 appends.
    let mut log = open(dir.path(), config(1 << 20), &prefaulter, false);
    let first = append_large(&mut log);
    wait_for_jobs(&prefaulter, 1);
    let lengths = file_lengths(dir.path());
    assert_eq!(lengths.len(), 1);
    assert!(
        lengths[0] > first as u64,
        "the file ({} B) extends past the data ({first} B)",
        lengths[0]
    );
    // Never past the segment size: that space would only be trimmed unused.
    assert!(lengths[0] <= 1 << 20);
    assert_eq!(log.size_bytes(), first as u64);
    assert_eq!(log.log_end_offset(), RECORDS_PER_APPEND as i64);

    for _ in 0..60 {
        append_large(&mut log);
    }
    let segments = log.segment_count();
    assert!(segments >= 3, "{segments} segments");
    let end = log.log_end_offset();
    assert_eq!(offsets(&log), (0..end).collect::<Vec<_>>());
    // Closed segments end at their last batch; the active one may extend past it.
    let (lengths, data) = (file_lengths(dir.path()), data_lengths(dir.path()));
    assert_eq!(lengths[..segments - 1], data[..segments - 1]);

    log.close().unwrap();
    assert_eq!(file_lengths(dir.path()), data_lengths(dir.path()));
    crate::checkpoint::mark_clean_shutdown(dir.path()).unwrap();
    let log = open(dir.path(), config(1 << 20), &prefaulter, true);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(offsets(&log), (0..end).collect::<Vec<_>>());
}

#[test]
fn a_kill_leaves_zeros_past_the_data_that_recovery_cuts_without_losing_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let prefaulter = Prefaulter::start(4 << 20, true).unwrap();
    let mut log = open(dir.path(), LogConfig::default(), &prefaulter, false);
    for _ in 0..10 {
        append_large(&mut log);
    }
    let end = log.log_end_offset();
    let size_bytes = log.size_bytes();
    drop(log); // a kill: nothing trimmed, flushed or checkpointed
    let on_disk = file_lengths(dir.path())[0];
    assert!(
        on_disk > size_bytes,
        "{on_disk} B on disk, {size_bytes} B of data"
    );
    let bytes = std::fs::read(&files_with_extension(dir.path(), "log")[0]).unwrap();
    assert!(bytes[size_bytes as usize..].iter().all(|b| *b == 0));

    let mut log = open(dir.path(), LogConfig::default(), &prefaulter, false);
    assert_eq!(log.log_end_offset(), end);
    assert_eq!(log.size_bytes(), size_bytes);
    assert_eq!(file_lengths(dir.path())[0], size_bytes);
    // The next append goes right after the data, not after the zeros.
    append_large(&mut log);
    let end = log.log_end_offset();
    assert_eq!(offsets(&log), (0..end).collect::<Vec<_>>());
    log.close().unwrap();
    assert_eq!(file_lengths(dir.path()), data_lengths(dir.path()));
}

#[test]
fn a_torn_batch_before_the_zeros_is_cut_with_them() {
    let dir = tempfile::tempdir().unwrap();
    let prefaulter = Prefaulter::start(4 << 20, true).unwrap();
    let mut log = open(dir.path(), LogConfig::default(), &prefaulter, false);
    for _ in 0..3 {
        append_large(&mut log);
    }
    let whole_end = log.log_end_offset();
    let whole_bytes = log.size_bytes();
    drop(log);
    // Half of a fourth batch, as a kill in the middle of its write would leave.
    let path = &files_with_extension(dir.path(), "log")[0];
    let torn = batch(RECORDS_PER_APPEND, VALUE_BYTES, NOW_MS);
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, &torn[..torn.len() / 2], whole_bytes).unwrap();
    drop(file);

    let log = open(dir.path(), LogConfig::default(), &prefaulter, false);
    assert_eq!(log.log_end_offset(), whole_end);
    assert_eq!(file_lengths(dir.path())[0], whole_bytes);
}

#[test]
fn small_appends_and_truncation_leave_no_space_past_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let prefaulter = Prefaulter::start(4 << 20, true).unwrap();
    let mut log = open(dir.path(), LogConfig::default(), &prefaulter, false);
    let mut small = batch(2, 100, NOW_MS);
    log.append(&mut small, 0, None, NOW_MS).unwrap();
    assert_eq!(file_lengths(dir.path()), vec![log.size_bytes()]);
    append_large(&mut log);
    append_large(&mut log);
    assert!(file_lengths(dir.path())[0] > log.size_bytes());
    // Replica truncation cuts the preallocated space too.
    log.truncate_to(2 + RECORDS_PER_APPEND as i64).unwrap();
    assert_eq!(file_lengths(dir.path()), vec![log.size_bytes()]);
    assert_eq!(
        offsets(&log),
        (0..2 + RECORDS_PER_APPEND as i64).collect::<Vec<_>>()
    );
}

//! The partition log: an ordered list of segments with a log start offset, a high watermark and
//! a log end offset, recovered on open and kept consistent on every operation.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use kafka_protocol::records::RecordBatchDecoder;

use crate::batch::{self, BatchError, BatchHeader};
use crate::cache_window::{CacheTrimmer, CacheWindow};
use crate::checkpoint::Checkpoint;
use crate::cleaner::{self, CleanerCheckpoint};
use crate::config::{CompactionConfig, LogConfig};
use crate::epoch::LeaderEpochCache;
use crate::error::{Result, StorageError};
use crate::io::{
    remove_file, sync_data_in_steps, sync_dir, FileCache, FileRegion, WRITE_BACK_STEP_BYTES,
};
use crate::producer_state::{snapshot_path, ProducerStateError, ProducerStateManager, Verdict};
use crate::segment::{segment_file_name, Segment, NO_TIMESTAMP};

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset of the first appended record.
    pub base_offset: i64,
    /// Offset of the last appended record.
    pub last_offset: i64,
    /// The append time written into the batches, or -1 with `CreateTime`.
    pub log_append_time_ms: i64,
    /// The log start offset after the append.
    pub log_start_offset: i64,
}

/// What [`PartitionLog::append_checked`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// The batches were appended.
    Appended(AppendInfo),
    /// Every batch was an exact replay of an idempotent batch already in the log: nothing was
    /// appended; answer the producer with the original offsets.
    Duplicate {
        /// Offset of the first record of the original (first) batch.
        base_offset: i64,
        /// Offset of the last record of the original (last) batch.
        last_offset: i64,
        /// `maxTimestamp` of the original batch (the append time with `LogAppendTime`).
        max_timestamp_ms: i64,
        /// The current log start offset.
        log_start_offset: i64,
    },
}

/// How [`PartitionLog::open_with`] opens a log.
#[derive(Debug, Clone)]
pub struct LogOpenOptions {
    /// The open segment files budget shared by every log of the broker.
    pub files: Arc<FileCache>,
    /// The log directory's clean-shutdown marker was found (see
    /// [`crate::checkpoint::CLEAN_SHUTDOWN_FILE_NAME`]): every log was closed cleanly, so the
    /// active segment is not scanned (only the tail after its last index entry is checked).
    pub clean_shutdown: bool,
    /// The thread that keeps each log's page cache to a window of its newest bytes (see
    /// `cache_window.rs`); `None`: the kernel keeps what it likes.
    pub cache_trimmer: Option<Arc<CacheTrimmer>>,
}

impl Default for LogOpenOptions {
    /// The process-wide [`FileCache::shared`], recovery as after a crash, no cache window.
    fn default() -> LogOpenOptions {
        LogOpenOptions {
            files: FileCache::shared(),
            clean_shutdown: false,
            cache_trimmer: None,
        }
    }
}

/// What [`PartitionLog::read_regions`] planned: the regions to read, in order, and how far
/// behind the log end the read starts.
#[derive(Debug, Clone, Default)]
pub struct ReadPlan {
    /// File regions holding the bytes, to be read outside the log's lock.
    pub regions: Vec<FileRegion>,
    /// Bytes stored from the first region's start to the end of the log (0 when nothing was
    /// planned): a consumer this far behind is catching up, not tailing.
    pub lag_bytes: u64,
}

/// One partition's log on disk. Not thread-safe by itself: reads take `&self`, everything that
/// changes the log takes `&mut self` (the broker wraps it in a lock).
#[derive(Debug)]
pub struct PartitionLog {
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    pub(crate) compaction: CompactionConfig,
    /// Never empty; the last segment is the active one. Batches of compacted segments may have
    /// offset gaps between them; segments themselves are contiguous.
    pub(crate) segments: BTreeMap<i64, Segment>,
    pub(crate) log_start_offset: i64,
    pub(crate) high_watermark: i64,
    recovery_point: i64,
    epochs: LeaderEpochCache,
    unflushed_messages: i64,
    last_flush_ms: i64,
    pub(crate) producers: ProducerStateManager,
    pub(crate) cleaner: CleanerCheckpoint,
    pub(crate) files: Arc<FileCache>,
    cache_trimmer: Option<Arc<CacheTrimmer>>,
    /// What of this log's page cache is being written back and evicted.
    cache_window: CacheWindow,
    /// The checkpoint as last written (or read), so unchanged ones are not written again.
    written_checkpoint: Option<Checkpoint>,
    /// Files of segments retention removed, renamed to `*.deleted` and waiting to be unlinked
    /// outside the log's lock (see [`PartitionLog::take_retired_files`]).
    retired_files: Vec<PathBuf>,
}

impl PartitionLog {
    /// Opens (creating if missing) the partition directory and recovers it: every segment
    /// reaching past the recovery point (and always the active one) is scanned batch by batch;
    /// the first batch with a bad length, magic, offset or CRC and everything after it is
    /// truncated (later segments deleted); missing or inconsistent indexes are rebuilt.
    ///
    /// Before that, a log clean interrupted by a crash is finished or rolled back (see
    /// [`PartitionLog::clean`]); after it, the producer state is loaded from the newest
    /// snapshot and the batches after it. Cleanup policy: delete only, until
    /// [`PartitionLog::set_compaction_config`].
    ///
    /// Segment files are opened through the process-wide [`FileCache::shared`]; the broker uses
    /// [`PartitionLog::open_with`] and its own budget.
    pub fn open(dir: &Path, config: LogConfig, now_ms: i64) -> Result<PartitionLog> {
        PartitionLog::open_with(dir, config, now_ms, &LogOpenOptions::default())
    }

    /// [`PartitionLog::open`] with a file handle budget and, after a clean shutdown of the
    /// whole log directory, without scanning the active segment.
    pub fn open_with(
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
        options: &LogOpenOptions,
    ) -> Result<PartitionLog> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        // One listing of the directory serves the cleaner's leftovers, the segments and the
        // producer snapshots (three listings per partition showed at start-up).
        let mut listing = list_dir(dir)?;
        if listing.clean_unfinished {
            cleaner::finish_interrupted_clean(dir, &options.files)?;
            listing = list_dir(dir)?;
        }
        let bases = listing.segment_bases;
        let checkpoint = Checkpoint::read(dir)?;
        let clean = options.clean_shutdown && checkpoint.is_some_and(|c| c.clean_shutdown);
        if let Some(checkpoint) = &checkpoint {
            if !clean {
                tracing::debug!(dir = %dir.display(), recovery_point = checkpoint.recovery_point, "recovering partition log after an unclean shutdown");
            }
        }
        let recovery_point = checkpoint.map_or(0, |c| c.recovery_point);
        let mut epochs = LeaderEpochCache::load(dir);
        let recovery = Recovery {
            dir,
            config: &config,
            files: &options.files,
            recovery_point,
            clean,
            now_ms,
        };
        let (mut segments, seen_epochs) = recovery.recover_segments(&bases)?;
        if segments.is_empty() {
            let base = checkpoint.map_or(0, |c| c.log_start_offset.max(0));
            segments.insert(base, Segment::create(dir, base, &config, &options.files)?);
        }
        let first_base = segments.values().next().map_or(0, Segment::base_offset);
        let log_end = segments
            .values()
            .next_back()
            .map_or(0, Segment::next_offset);
        let log_start = checkpoint
            .map_or(first_base, |c| c.log_start_offset)
            .clamp(first_base, log_end);
        let high_watermark = checkpoint
            .map_or(log_start, |c| c.high_watermark)
            .clamp(log_start, log_end);
        let mut epochs_changed = epochs.truncate_from_end(log_end);
        for (epoch, start_offset) in seen_epochs {
            if epoch >= 0 {
                epochs_changed |= epochs.assign(epoch, start_offset);
            }
        }
        epochs_changed |= epochs.truncate_from_start(log_start);
        if epochs_changed {
            epochs.persist()?;
        }
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            config,
            compaction: CompactionConfig::default(),
            segments,
            log_start_offset: log_start,
            high_watermark,
            recovery_point: recovery_point.min(log_end),
            epochs,
            unflushed_messages: 0,
            last_flush_ms: now_ms,
            producers: ProducerStateManager::new(dir),
            cleaner: CleanerCheckpoint::read(dir),
            files: options.files.clone(),
            cache_trimmer: options.cache_trimmer.clone(),
            cache_window: CacheWindow::default(),
            written_checkpoint: checkpoint,
            retired_files: Vec::new(),
        };
        // Written only when recovery changed what it says (not fsynced: recovery trusts only
        // what an earlier durable checkpoint covered). The clean-shutdown flag is left as it
        // is: only the log directory's marker, removed once every log is open, makes the next
        // open trust it.
        // A brand-new log (no checkpoint, nothing in it) has nothing to say yet: its first
        // flush or close writes the checkpoint, and creating 10,000 partitions makes 10,000
        // fewer files (file creation is most of what creating partitions costs).
        let brand_new = checkpoint.is_none() && log_end == 0;
        if !brand_new {
            let clean_flag = checkpoint.is_some_and(|c| c.clean_shutdown);
            log.write_checkpoint_with(clean_flag, false)?;
        }
        log.reload_producer_state(Some(listing.snapshot_offsets))?;
        log.check_invariants();
        Ok(log)
    }

    /// The cleanup policy and compaction settings.
    pub fn compaction_config(&self) -> &CompactionConfig {
        &self.compaction
    }

    /// Replaces the cleanup policy and compaction settings (from `cleanup.policy` and friends);
    /// takes effect from the next retention run, clean or roll.
    pub fn set_compaction_config(&mut self, compaction: CompactionConfig) {
        self.compaction = compaction;
    }

    /// The producer state of idempotent producers in this partition.
    pub fn producer_state(&self) -> &ProducerStateManager {
        &self.producers
    }

    /// Drops the state of producers idle for `producer_id_expiration_ms` (call periodically,
    /// as Kafka's `producer.id.expiration.check.interval.ms`, 10 minutes). A batch from an
    /// expired producer that does not start at sequence 0 then gets `UnknownProducerId`.
    /// Returns how many producers were dropped.
    pub fn remove_expired_producers(&mut self, now_ms: i64) -> usize {
        self.producers
            .remove_expired(now_ms, self.compaction.producer_id_expiration_ms)
    }

    /// Writes a producer state snapshot at the log end offset (done on roll and close; the
    /// broker may call it too, for example before a planned restart).
    pub fn take_producer_snapshot(&self) -> Result<()> {
        self.producers.take_snapshot(self.log_end_offset())
    }

    /// Loads the newest snapshot at or below the log end offset and replays the batch headers
    /// after it (from the log start offset if there is no snapshot or it is older).
    /// `snapshot_offsets`: the snapshots in the directory, when just listed.
    fn reload_producer_state(&mut self, snapshot_offsets: Option<Vec<i64>>) -> Result<()> {
        let log_end = self.log_end_offset();
        let snapshot = match snapshot_offsets {
            Some(offsets) => self
                .producers
                .load_latest_snapshot_among(log_end, offsets)?,
            None => self.producers.load_latest_snapshot(log_end)?,
        };
        let from = snapshot.map_or(self.log_start_offset, |s| s.max(self.log_start_offset));
        let first_base = self.segment_base_for(from);
        let mut replayed = 0u64;
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            let Some((position, _)) = segment.find_batch(from.max(segment.base_offset()))? else {
                continue;
            };
            for item in segment.headers_from(position) {
                let (_, header) = item?;
                self.producers.record(&header);
                replayed += 1;
            }
        }
        tracing::debug!(dir = %self.dir.display(), ?snapshot, from, replayed, producers = self.producers.len(), "loaded producer state");
        Ok(())
    }

    /// The partition directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current configuration.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the configuration; takes effect from the next append, roll or retention run.
    pub fn set_config(&mut self, config: LogConfig) {
        for segment in self.segments.values_mut() {
            segment.set_config(&config);
        }
        self.config = config;
    }

    /// First offset a consumer may read.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record gets.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// Offsets below the high watermark are visible to consumers.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark, clamped to `[log_start, log_end]`. On a single node the broker
    /// sets it to the log end offset after each append. Persisted at the next flush.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw.clamp(self.log_start_offset, self.log_end_offset());
        self.check_invariants();
    }

    /// Number of bytes in all segments.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size_bytes).sum()
    }

    /// Number of segments (at least 1).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Appends already-validated batches: assigns offsets from the log end offset (writing
    /// `leader_epoch` into each header, and the append time with `LogAppendTime`), rolls the
    /// active segment first if it is non-empty and would exceed `segment_size_bytes`, is older
    /// than `segment_ms` or has a full index, writes the bytes as they are, updates the
    /// indexes, records a new leader epoch, and flushes when `flush_messages`/`flush_ms` say so.
    /// When this returns `Ok`, a killed process keeps the batches (the page cache survives).
    ///
    /// Batches with a producer id update the producer state without being checked (as Kafka's
    /// replication appends); the produce path uses [`PartitionLog::append_checked`].
    pub fn append(
        &mut self,
        blob: &mut [u8],
        leader_epoch: i32,
        log_append_time_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        if blob.is_empty() {
            return Err(
                BatchError::InvalidRecord("append of no record batches".to_string()).into(),
            );
        }
        let base_offset = self.log_end_offset();
        let next_offset =
            batch::assign_offsets(blob, base_offset, leader_epoch, log_append_time_ms)?;
        let last_offset = next_offset - 1;
        if self.should_roll(blob.len() as u64, last_offset, now_ms) {
            self.roll()?;
        }
        if !self.active().can_hold(blob.len() as u64, last_offset) {
            return Err(BatchError::TooLarge {
                size_bytes: blob.len(),
                max_bytes: u32::MAX as usize,
            }
            .into());
        }
        let from_bytes = self.active().size_bytes();
        self.active_mut().append(blob, now_ms)?;
        debug_assert_eq!(self.log_end_offset(), next_offset);
        if let (Some(trimmer), Some(active)) =
            (&self.cache_trimmer, self.segments.values().next_back())
        {
            self.cache_window.after_append(
                trimmer,
                active.log_path(),
                from_bytes,
                active.size_bytes(),
            );
        }
        for (header, _) in batch::batches(blob).flatten() {
            if header.producer_id >= 0 {
                self.producers.record(&header);
            }
        }
        if leader_epoch >= 0 && self.epochs.assign(leader_epoch, base_offset) {
            // fsynced by the next roll or flush (see epoch.rs).
            self.epochs.persist_with(false)?;
        }
        self.unflushed_messages = self
            .unflushed_messages
            .saturating_add(next_offset - base_offset);
        let flush_due_by_count = self.unflushed_messages >= self.config.flush_messages;
        let flush_due_by_time = now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms;
        if flush_due_by_count || flush_due_by_time {
            self.flush()?;
            self.last_flush_ms = now_ms;
        }
        self.check_invariants();
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time_ms: log_append_time_ms.unwrap_or(-1),
            log_start_offset: self.log_start_offset,
        })
    }

    /// Records that `leader_epoch` starts at the log end offset, as a Kafka leader does when it
    /// takes over (`maybeAssignEpochStartOffset`); nothing if the epoch is negative or not newer
    /// than the latest. Written without an fsync, like the append that would otherwise record
    /// it: so the first append to each of 10,000 new partitions creates no file (creating
    /// them took most of the broker's CPU in a produce over 10,000 new partitions right after
    /// a topic deletion: ext4 without a journal scans recently deleted inodes on each create).
    pub fn assign_leader_epoch(&mut self, leader_epoch: i32) -> Result<()> {
        if leader_epoch >= 0 && self.epochs.assign(leader_epoch, self.log_end_offset()) {
            self.epochs.persist_with(false)?;
        }
        Ok(())
    }

    /// [`PartitionLog::append`] for the produce path, with idempotent producers checked first.
    /// Every batch with a producer id is checked against the producer state (as updated by the
    /// earlier batches of the same blob), with the offsets it would get, before anything is
    /// written: a rejected append changes nothing and fails with
    /// [`StorageError::Producer`]. When every idempotent batch is an exact replay (and the blob
    /// holds no other batch), nothing is appended and [`AppendOutcome::Duplicate`] carries the
    /// original offsets. A blob mixing replays with new batches is rejected as out of order
    /// (clients send one batch per partition, so this only guards against silent loss).
    /// Batches without a producer id cost one header parse each.
    pub fn append_checked(
        &mut self,
        blob: &mut [u8],
        leader_epoch: i32,
        log_append_time_ms: Option<i64>,
        now_ms: i64,
    ) -> Result<AppendOutcome> {
        match self.check_producers(blob)? {
            Some(duplicate) => Ok(duplicate),
            None => Ok(AppendOutcome::Appended(self.append(
                blob,
                leader_epoch,
                log_append_time_ms,
                now_ms,
            )?)),
        }
    }

    /// The producer checks of [`PartitionLog::append_checked`]: `Some` for an all-duplicate
    /// append, `None` to go ahead.
    fn check_producers(&self, blob: &[u8]) -> Result<Option<AppendOutcome>> {
        let mut next_offset = self.log_end_offset();
        let mut staged = self.producers.begin_append();
        let mut duplicate: Option<(i64, i64, i64)> = None;
        let (mut batch_count, mut duplicate_count) = (0usize, 0usize);
        for item in batch::batches(blob) {
            let (mut header, _) = item?;
            header.base_offset = next_offset;
            next_offset = header.next_offset();
            batch_count += 1;
            if header.producer_id < 0 {
                continue;
            }
            match staged.check_and_record(&header)? {
                Verdict::Append => {}
                Verdict::Duplicate {
                    base_offset,
                    last_offset,
                    max_timestamp_ms,
                } => {
                    duplicate_count += 1;
                    let first = duplicate.map_or(base_offset, |d| d.0);
                    duplicate = Some((first, last_offset, max_timestamp_ms));
                }
            }
        }
        match duplicate {
            None => Ok(None),
            Some((base_offset, last_offset, max_timestamp_ms))
                if duplicate_count == batch_count =>
            {
                Ok(Some(AppendOutcome::Duplicate {
                    base_offset,
                    last_offset,
                    max_timestamp_ms,
                    log_start_offset: self.log_start_offset,
                }))
            }
            Some(_) => {
                let header = batch::batches(blob)
                    .flatten()
                    .map(|(h, _)| h)
                    .find(|h| h.producer_id >= 0);
                Err(StorageError::Producer(
                    ProducerStateError::OutOfOrderSequence {
                        producer_id: header.map_or(-1, |h| h.producer_id),
                        producer_epoch: header.map_or(-1, |h| h.producer_epoch),
                        expected_sequence: -1,
                        received_sequence: header.map_or(-1, |h| h.base_sequence),
                    },
                ))
            }
        }
    }

    /// Reads whole batches, starting with the batch containing `start_offset`, up to
    /// `max_bytes`, only batches whose last offset is below `max_offset_exclusive` (the high
    /// watermark for consumers). With `min_one_batch` the first batch is returned whole even if
    /// larger than `max_bytes` (KIP-74). May continue into following segments. In a compacted
    /// log, an offset that was cleaned away reads from the next batch after it.
    /// `start_offset == log_end` gives empty bytes; outside `[log_start, log_end]` gives
    /// [`StorageError::OffsetOutOfRange`].
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<Bytes> {
        self.check_readable(start_offset)?;
        let mut out: Vec<u8> = Vec::new();
        let first_base = self.segment_base_for(start_offset);
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            let Some((position, header)) =
                segment.find_batch(start_offset.max(segment.base_offset()))?
            else {
                continue;
            };
            debug_assert!(
                header.last_offset() >= start_offset,
                "served batch must contain the offset"
            );
            let budget = max_bytes.saturating_sub(out.len());
            let min_one = min_one_batch && out.is_empty();
            let (bytes, at_segment_end) =
                segment.read_from(position, &header, budget, max_offset_exclusive, min_one)?;
            if out.is_empty() {
                out = bytes;
            } else {
                out.extend_from_slice(&bytes);
            }
            if !at_segment_end {
                break;
            }
        }
        Ok(Bytes::from(out))
    }

    /// [`StorageError::OffsetOutOfRange`] unless `start_offset` is in `[log_start, log_end]`.
    fn check_readable(&self, start_offset: i64) -> Result<()> {
        let log_end = self.log_end_offset();
        if start_offset < self.log_start_offset || start_offset > log_end {
            return Err(StorageError::OffsetOutOfRange {
                requested: start_offset,
                log_start: self.log_start_offset,
                log_end,
            });
        }
        Ok(())
    }

    /// Plans what [`PartitionLog::read`] would return as file regions, to be read after the
    /// log's lock is released (so a large or cold read never holds up appends): same start,
    /// `max_offset_exclusive` and `min_one_batch` rules, but the last region may end inside a
    /// batch when `max_bytes` cuts it, as Kafka's fetches do (clients drop a partial batch at
    /// the end). Continues into the next segment only when a region reaches its segment's end.
    /// The plan also says how far behind the log end the read starts, in bytes.
    pub fn read_regions(
        &self,
        start_offset: i64,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<ReadPlan> {
        self.check_readable(start_offset)?;
        let mut regions = Vec::new();
        let mut planned_bytes = 0usize;
        let mut lag_bytes = 0u64;
        let first_base = self.segment_base_for(start_offset);
        for (base, segment) in self.segments.range(first_base..) {
            let Some((position, header)) =
                segment.find_batch(start_offset.max(segment.base_offset()))?
            else {
                continue;
            };
            if regions.is_empty() {
                // Bytes from the read's start to the log end: the rest of this segment and
                // every later one.
                lag_bytes = segment.size_bytes().saturating_sub(position)
                    + self
                        .segments
                        .range(base + 1..)
                        .map(|(_, s)| s.size_bytes())
                        .sum::<u64>();
            }
            let budget = max_bytes.saturating_sub(planned_bytes);
            let min_one = min_one_batch && regions.is_empty();
            let (region, at_segment_end) =
                segment.region_from(position, &header, budget, max_offset_exclusive, min_one)?;
            if let Some(region) = region {
                planned_bytes += region.len_bytes();
                regions.push(region);
            }
            if !at_segment_end {
                break;
            }
        }
        if regions.is_empty() {
            lag_bytes = 0;
        }
        Ok(ReadPlan { regions, lag_bytes })
    }

    /// First offset whose record timestamp is `>= timestamp_ms`, with that timestamp
    /// (ListOffsets by timestamp). Finds the batch through the time index and a header scan,
    /// then decodes only that batch's records. For `LogAppendTime` batches every record carries
    /// the batch's `maxTimestamp`. `None` if no record qualifies.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        let first_base = self.segment_base_for(self.log_start_offset);
        for segment in self.segments.range(first_base..).map(|(_, s)| s) {
            if segment.max_timestamp_ms() < timestamp_ms {
                continue;
            }
            let start = segment.timestamp_search_start(timestamp_ms)?;
            for item in segment.headers_from(start) {
                let (position, header) = item?;
                if header.max_timestamp < timestamp_ms
                    || header.last_offset() < self.log_start_offset
                {
                    continue;
                }
                if let Some(found) = self.search_batch(segment, position, &header, timestamp_ms)? {
                    return Ok(Some(found));
                }
            }
        }
        Ok(None)
    }

    fn search_batch(
        &self,
        segment: &Segment,
        position: u64,
        header: &BatchHeader,
        timestamp_ms: i64,
    ) -> Result<Option<(i64, i64)>> {
        if header.is_log_append_time() {
            return Ok(Some((
                header.base_offset.max(self.log_start_offset),
                header.max_timestamp,
            )));
        }
        let mut bytes = Bytes::from(segment.read_bytes(position, header.size_bytes())?);
        let records = RecordBatchDecoder::decode(&mut bytes).map_err(|e| {
            StorageError::Corrupt(format!(
                "decoding batch at offset {}: {e}",
                header.base_offset
            ))
        })?;
        Ok(records
            .records
            .iter()
            .find(|r| r.timestamp >= timestamp_ms && r.offset >= self.log_start_offset)
            .map(|r| (r.offset, r.timestamp)))
    }

    /// The largest batch timestamp in the log and the last offset of the batch holding it
    /// (ListOffsets `MAX_TIMESTAMP`, with Kafka's batch-level precision). `None` if no batch
    /// carries a timestamp.
    pub fn max_timestamp_and_offset(&self) -> Option<(i64, i64)> {
        let mut best: Option<&Segment> = None;
        for segment in self.segments.values() {
            let best_ms = best.map_or(NO_TIMESTAMP, Segment::max_timestamp_ms);
            if segment.max_timestamp_ms() > best_ms {
                best = Some(segment);
            }
        }
        let segment = best?;
        let batch_base = segment.max_timestamp_batch_base_offset();
        let last_offset = match segment.find_batch(batch_base) {
            Ok(Some((_, header))) => header.last_offset(),
            _ => batch_base,
        };
        Some((segment.max_timestamp_ms(), last_offset))
    }

    /// DeleteRecords: moves the log start offset up to `offset` (which must not exceed the high
    /// watermark) and retires the segments entirely below it, as retention does: their files
    /// are renamed to `*.deleted` here and unlinked by whoever calls
    /// [`PartitionLog::take_retired_files`] after releasing the log's lock. Returns the new log
    /// start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        if offset > self.high_watermark {
            return Err(StorageError::InvalidOffset(format!(
                "cannot delete records before {offset}: above the high watermark {}",
                self.high_watermark
            )));
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        if offset == self.log_end_offset() && !self.active().is_empty() {
            self.roll()?;
        }
        self.log_start_offset = offset;
        let doomed: Vec<i64> = self
            .closed_segments()
            .take_while(|s| s.next_offset() <= offset)
            .map(Segment::base_offset)
            .collect();
        self.retire_segments(&doomed)?;
        self.after_log_start_moved()?;
        Ok(self.log_start_offset)
    }

    /// Retention: rolls the active segment if `segment_ms` has passed, then deletes the oldest
    /// closed segments (never the active one, never one reaching past the high watermark) while
    /// their largest timestamp is older than `retention_ms` or the log exceeds
    /// `retention_bytes`, moving the log start offset. Segments without timestamps are never
    /// deleted by time. Returns how many segments were deleted. Without the `delete` cleanup
    /// policy (`cleanup.policy=compact`) it only rolls.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.roll_if_due(now_ms)?;
        if !self.compaction.cleanup_policy_delete {
            return Ok(0);
        }
        // As Kafka does: when even the active segment's newest record is past retention.ms,
        // roll it so the whole log can go (the log becomes empty at its log end offset).
        let active = self.active();
        let active_expired = self.config.retention_ms >= 0
            && !active.is_empty()
            && active.max_timestamp_ms() != NO_TIMESTAMP
            && now_ms.saturating_sub(active.max_timestamp_ms()) > self.config.retention_ms
            && active.next_offset() <= self.high_watermark;
        if active_expired {
            self.roll()?;
        }
        let mut remaining_bytes = self.size_bytes() as i64;
        let mut doomed = Vec::new();
        for segment in self.closed_segments() {
            if segment.next_offset() > self.high_watermark {
                break;
            }
            let max_timestamp_ms = segment.max_timestamp_ms();
            let expired = self.config.retention_ms >= 0
                && max_timestamp_ms != NO_TIMESTAMP
                && now_ms.saturating_sub(max_timestamp_ms) > self.config.retention_ms;
            let size_bytes = segment.size_bytes() as i64;
            let oversized = self.config.retention_bytes >= 0
                && remaining_bytes - size_bytes >= self.config.retention_bytes;
            if !expired && !oversized {
                break;
            }
            remaining_bytes -= size_bytes;
            doomed.push(segment.base_offset());
        }
        if doomed.is_empty() {
            return Ok(0);
        }
        self.retire_segments(&doomed)?;
        let first_base = self
            .segments
            .keys()
            .next()
            .copied()
            .unwrap_or(self.log_start_offset);
        self.log_start_offset = self.log_start_offset.max(first_base);
        self.after_log_start_moved()?;
        tracing::info!(dir = %self.dir.display(), segments = doomed.len(), log_start_offset = self.log_start_offset, "retention deleted segments");
        Ok(doomed.len())
    }

    /// Rolls the active segment if it is non-empty and `segment_ms` old. Returns whether it
    /// rolled.
    pub fn roll_if_due(&mut self, now_ms: i64) -> Result<bool> {
        if self.active().is_empty() || !self.roll_due_by_time(now_ms) {
            return Ok(false);
        }
        self.roll()?;
        Ok(true)
    }

    /// Leader epoch cache lookup for OffsetForLeaderEpoch: `(largest known epoch <= epoch, the
    /// offset where the next epoch starts)`, `(epoch, log_end)` for the latest epoch, or
    /// `None` (Kafka's UNDEFINED_EPOCH, -1) when unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, i64)> {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    /// The newest leader epoch written to the log.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// Removes every batch at and after `offset`, which must be a batch boundary in
    /// `[log_start, log_end]` (replica truncation). Lowers the high watermark if needed. The
    /// producer state is reloaded from the newest snapshot at or below `offset`.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        let log_end = self.log_end_offset();
        if offset == log_end {
            return Ok(());
        }
        if offset < self.log_start_offset || offset > log_end {
            return Err(StorageError::InvalidOffset(format!(
                "cannot truncate to {offset} outside [{}, {log_end}]",
                self.log_start_offset
            )));
        }
        let base = self.segment_base_for(offset);
        let boundary = match self.segments.get(&base) {
            Some(segment) => segment.find_batch(offset)?,
            None => None,
        };
        let aligned = boundary.is_some_and(|(_, header)| header.base_offset == offset);
        if !aligned {
            return Err(StorageError::InvalidOffset(format!(
                "{offset} is not a batch boundary"
            )));
        }
        let later: Vec<i64> = self.segments.range(base + 1..).map(|(b, _)| *b).collect();
        self.delete_segments(&later)?;
        self.active_mut().truncate_to(offset)?;
        debug_assert_eq!(self.log_end_offset(), offset);
        self.high_watermark = self.high_watermark.min(offset);
        self.recovery_point = self.recovery_point.min(offset);
        if self.epochs.truncate_from_end(offset) {
            self.epochs.persist()?;
        }
        self.write_checkpoint(false)?;
        self.producers.delete_snapshots_above(offset)?;
        self.reload_producer_state(None)?;
        if self.cleaner.first_dirty_offset > offset {
            self.cleaner.first_dirty_offset = offset;
            self.cleaner.write(&self.dir)?;
        }
        self.check_invariants();
        Ok(())
    }

    /// fsyncs the active segment and its indexes (and closed segments not fsynced since they
    /// rolled), then checkpoints recovery point = log end, log start offset and high watermark.
    pub fn flush(&mut self) -> Result<()> {
        self.flush_marking(false)
    }

    /// Writes the active segment's index files if its indexes hold entries and the files were
    /// never written (indexes without entries have none; see `Segment::persist_indexes`);
    /// returns whether it did. For a background pass such as the broker's flusher: otherwise
    /// the files are created at the next roll, flush or close, and a clean shutdown of
    /// thousands of busy partitions created since the last start would create two files for
    /// each.
    pub fn write_new_index_files(&mut self) -> Result<bool> {
        if !self.active().has_unwritten_index_files() {
            return Ok(false);
        }
        self.active_mut().persist_indexes(false)?;
        Ok(true)
    }

    /// Closed segments that rolled without an fsync (above the recovery point), as work for a
    /// background flusher: run [`PendingFlush::sync`] without the log's lock, then
    /// [`PartitionLog::complete_flush`]. `None` when every closed segment is durable.
    pub fn pending_flush(&self) -> Result<Option<PendingFlush>> {
        let up_to = self.active().base_offset();
        if self.recovery_point >= up_to {
            return Ok(None);
        }
        let mut logs = Vec::new();
        let mut indexes = Vec::new();
        for segment in self.segments.values() {
            if segment.base_offset() >= up_to || segment.next_offset() <= self.recovery_point {
                continue;
            }
            logs.push(segment.log_handle()?);
            let [_, index, time_index] = segment.paths();
            indexes.push(index);
            indexes.push(time_index);
        }
        Ok(Some(PendingFlush {
            dir: self.dir.clone(),
            logs,
            indexes,
            up_to,
        }))
    }

    /// After [`PendingFlush::sync`] returned: the closed segments below `up_to` are durable, so
    /// the recovery point moves up to it (unless the log was truncated below it meanwhile).
    pub fn complete_flush(&mut self, up_to: i64) -> Result<()> {
        if up_to <= self.recovery_point
            || up_to > self.active().base_offset()
            || !self.segments.contains_key(&up_to)
        {
            return Ok(());
        }
        self.epochs.sync_if_needed()?;
        self.recovery_point = up_to;
        self.write_checkpoint(false)
    }

    /// fsyncs, under the lock, the closed segments a roll left unsynced (the synchronous path:
    /// explicit flushes, flush policies, shutdown).
    fn sync_closed_segments(&mut self) -> Result<()> {
        if let Some(pending) = self.pending_flush()? {
            pending.sync()?;
            self.complete_flush(pending.up_to)?;
        }
        Ok(())
    }

    /// Flushes, writes a producer state snapshot (unless one at the log end exists: the state
    /// there is what replaying the same log gives) and marks the shutdown clean. An idle log
    /// whose files are all up to date writes nothing.
    pub fn close(self) -> Result<()> {
        self.close_with(true)
    }

    /// [`PartitionLog::close`] without a single fsync, for closing thousands of logs at once:
    /// the caller syncs the whole file system afterwards ([`crate::checkpoint::mark_clean_shutdown`]
    /// does, before it writes the marker). Safe without that sync too: the checkpoint it writes
    /// makes recovery trust only closed segments, which were fsynced when they rolled.
    pub fn close_unsynced(self) -> Result<()> {
        self.close_with(false)
    }

    fn close_with(mut self, durable: bool) -> Result<()> {
        self.take_retired_files().delete()?;
        let log_end = self.log_end_offset();
        // A log without a single batch and without producers has no state to snapshot
        // (replaying it gives nothing): idle partitions create no file at shutdown.
        let stateless = self.producers.is_empty() && self.segments.values().all(Segment::is_empty);
        if !stateless && !snapshot_path(&self.dir, log_end).exists() {
            self.producers.take_snapshot_with(log_end, durable)?;
        }
        if durable {
            return self.flush_marking(true);
        }
        self.active_mut().persist_indexes(false)?;
        self.recovery_point = log_end;
        self.unflushed_messages = 0;
        self.write_checkpoint_with(true, false)
    }

    /// fsyncs what was appended since the last flush and writes the checkpoint. A log with
    /// nothing new (recovery point at the log end) needs no fsync at all: recovery trusts only
    /// what an earlier durable checkpoint covered, so thousands of idle partitions close fast.
    fn flush_marking(&mut self, clean_shutdown: bool) -> Result<()> {
        let log_end = self.log_end_offset();
        let dirty = self.recovery_point < log_end || self.unflushed_messages > 0;
        if dirty {
            self.sync_closed_segments()?;
            self.active_mut().sync()?;
            self.epochs.sync_if_needed()?;
            self.recovery_point = log_end;
            self.unflushed_messages = 0;
        } else if clean_shutdown {
            // The next open trusts the active segment's indexes: write what they lack. Not
            // fsynced (an fsync per idle partition made shutdowns take minutes): an index
            // file that lost its tail to a power cut only makes that open check more of the
            // segment, and a damaged one is rebuilt.
            self.active_mut().persist_indexes(false)?;
        }
        self.write_checkpoint_with(clean_shutdown, dirty)
    }

    /// Removes the whole partition directory (topic deletion).
    pub fn delete(self) -> Result<()> {
        let dir = self.dir.clone();
        drop(self);
        std::fs::remove_dir_all(&dir)
            .map_err(|e| StorageError::io(format!("removing {}", dir.display()), e))
    }

    pub(crate) fn active(&self) -> &Segment {
        match self.segments.values().next_back() {
            Some(segment) => segment,
            None => unreachable!("a partition log always has an active segment"),
        }
    }

    fn active_mut(&mut self) -> &mut Segment {
        match self.segments.values_mut().next_back() {
            Some(segment) => segment,
            None => unreachable!("a partition log always has an active segment"),
        }
    }

    pub(crate) fn closed_segments(&self) -> impl Iterator<Item = &Segment> {
        let count = self.segments.len() - 1;
        self.segments.values().take(count)
    }

    /// Base offset of the segment that holds `offset` (the first segment if none does).
    pub(crate) fn segment_base_for(&self, offset: i64) -> i64 {
        self.segments
            .range(..=offset)
            .next_back()
            .or_else(|| self.segments.iter().next())
            .map_or(offset, |(base, _)| *base)
    }

    /// `segment_ms`, or `max_compaction_lag_ms` if smaller on a compacted log (as Kafka, so
    /// that no record waits in the active segment longer than the maximum compaction lag).
    fn roll_due_by_time(&self, now_ms: i64) -> bool {
        let mut segment_ms = self.config.segment_ms;
        if self.compaction.cleanup_policy_compact {
            segment_ms = segment_ms.min(self.compaction.max_compaction_lag_ms);
        }
        self.active()
            .rolling_base_ms()
            .is_some_and(|base_ms| now_ms.saturating_sub(base_ms) >= segment_ms)
    }

    fn should_roll(&self, size_bytes: u64, last_offset: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        active.size_bytes() + size_bytes > self.config.segment_size_bytes_effective()
            || self.roll_due_by_time(now_ms)
            || active.indexes_full()
            || !active.can_hold(size_bytes, last_offset)
    }

    /// Closes the active segment and starts a new one at the log end offset. Without
    /// `flush.messages`/`flush.ms` (the default) nothing is fsynced here, as in Kafka: a
    /// gigabyte-sized fsync under the partition's lock would stall every producer of the
    /// partition; the closed segment waits for [`PartitionLog::pending_flush`] and the
    /// recovery point stays where it is until then (a crash before it rescans the segment).
    /// With a flush policy the roll is durable at once and the recovery point moves.
    fn roll(&mut self) -> Result<()> {
        if !self.config.flushes() {
            let base_offset = self.log_end_offset();
            self.active_mut().seal_unsynced()?;
            let segment = Segment::create(&self.dir, base_offset, &self.config, &self.files)?;
            self.segments.insert(base_offset, segment);
            self.producers.take_snapshot_with(base_offset, false)?;
            tracing::debug!(dir = %self.dir.display(), base_offset, "rolled segment");
            return Ok(());
        }
        self.sync_closed_segments()?;
        let base_offset = self.log_end_offset();
        self.active_mut().seal()?;
        self.epochs.sync_if_needed()?;
        let segment = Segment::create(&self.dir, base_offset, &self.config, &self.files)?;
        self.segments.insert(base_offset, segment);
        sync_dir(&self.dir)?;
        self.recovery_point = base_offset;
        self.write_checkpoint(false)?;
        self.producers.take_snapshot(base_offset)?;
        tracing::debug!(dir = %self.dir.display(), base_offset, "rolled segment");
        Ok(())
    }

    /// Takes segments out of the log and renames their files to `*.deleted` (a rename, cheap
    /// under the lock), leaving the unlink to [`RetiredFiles::delete`]: unlinking a gigabyte
    /// file can take a few hundred ms (file systems mounted with `discard` trim its blocks
    /// inside the call), which under the lock would stall every producer of the partition.
    /// Kafka also renames segments to `.deleted` and deletes them later.
    fn retire_segments(&mut self, bases: &[i64]) -> Result<()> {
        for base in bases {
            debug_assert!(self.segments.len() > 1 || !self.segments.contains_key(base));
            if let Some(segment) = self.segments.remove(base) {
                self.retired_files.extend(segment.retire()?);
            }
        }
        Ok(())
    }

    /// Files of segments retention or DeleteRecords removed since the last call, to unlink with
    /// [`RetiredFiles::delete`] after the log's lock is released. Files never taken are
    /// removed by [`PartitionLog::close`] or by the next open.
    pub fn take_retired_files(&mut self) -> RetiredFiles {
        RetiredFiles {
            paths: std::mem::take(&mut self.retired_files),
        }
    }

    pub(crate) fn delete_segments(&mut self, bases: &[i64]) -> Result<()> {
        for base in bases {
            debug_assert!(self.segments.len() > 1 || !self.segments.contains_key(base));
            if let Some(segment) = self.segments.remove(base) {
                segment.delete()?;
            }
        }
        Ok(())
    }

    fn after_log_start_moved(&mut self) -> Result<()> {
        if self.epochs.truncate_from_start(self.log_start_offset) {
            self.epochs.persist()?;
        }
        self.write_checkpoint(false)?;
        self.check_invariants();
        Ok(())
    }

    fn write_checkpoint(&mut self, clean_shutdown: bool) -> Result<()> {
        self.write_checkpoint_with(clean_shutdown, true)
    }

    /// Writes the checkpoint, unless it says exactly what the last one written said (a durable
    /// write is never skipped after a non-durable one of the same contents).
    fn write_checkpoint_with(&mut self, clean_shutdown: bool, durable: bool) -> Result<()> {
        let checkpoint = Checkpoint {
            recovery_point: self.recovery_point,
            log_start_offset: self.log_start_offset,
            high_watermark: self.high_watermark,
            clean_shutdown,
        };
        if !durable && self.written_checkpoint == Some(checkpoint) {
            return Ok(());
        }
        checkpoint.write_with(&self.dir, durable)?;
        self.written_checkpoint = Some(checkpoint);
        Ok(())
    }

    pub(crate) fn check_invariants(&self) {
        let log_end = self.log_end_offset();
        debug_assert!(
            self.log_start_offset <= self.high_watermark && self.high_watermark <= log_end,
            "log start {} <= hw {} <= log end {log_end}",
            self.log_start_offset,
            self.high_watermark
        );
        debug_assert!(self.recovery_point <= log_end);
        debug_assert!(self
            .segments
            .values()
            .zip(self.segments.values().skip(1))
            .all(|(a, b)| a.next_offset() == b.base_offset()));
    }
}

/// Closed segments to fsync outside the log's lock (see [`PartitionLog::pending_flush`]).
#[derive(Debug)]
pub struct PendingFlush {
    dir: PathBuf,
    logs: Vec<Arc<std::fs::File>>,
    indexes: Vec<PathBuf>,
    up_to: i64,
}

impl PendingFlush {
    /// The offset the recovery point may move to once [`PendingFlush::sync`] returned.
    pub fn up_to(&self) -> i64 {
        self.up_to
    }

    /// fsyncs the segments' log and index files and the partition directory. A log file is
    /// written back a few MiB at a time before its fsync (see [`sync_data_in_steps`]), so a
    /// rolled gigabyte does not stall the disk for every writer. An index file deleted
    /// meanwhile (retention, a truncation) is skipped: its segment is gone too.
    pub fn sync(&self) -> Result<()> {
        for log in &self.logs {
            sync_data_in_steps(log, WRITE_BACK_STEP_BYTES).map_err(|e| {
                StorageError::io(format!("fsync a segment of {}", self.dir.display()), e)
            })?;
        }
        for path in &self.indexes {
            match std::fs::File::open(path) {
                Ok(file) => file
                    .sync_all()
                    .map_err(|e| StorageError::io(format!("fsync {}", path.display()), e))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(StorageError::io(format!("opening {}", path.display()), e)),
            }
        }
        sync_dir(&self.dir)
    }
}

/// Suffix of a retired segment's files (see [`PartitionLog::take_retired_files`]).
pub(crate) const RETIRED_SUFFIX: &str = ".deleted";

/// Files of segments retention removed, renamed to `*.deleted`; see
/// [`PartitionLog::take_retired_files`].
#[derive(Debug, Default)]
#[must_use = "retired files stay on disk until deleted"]
pub struct RetiredFiles {
    paths: Vec<PathBuf>,
}

impl RetiredFiles {
    /// No files.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }

    /// Unlinks the files (one already gone is not an error).
    pub fn delete(self) -> Result<()> {
        for path in &self.paths {
            remove_file(path)?;
        }
        Ok(())
    }
}

/// Leader epochs seen in scanned batches: (epoch, first offset), in log order.
type SeenEpochs = Vec<(i32, i64)>;

/// What [`Recovery::recover_segments`] needs to know about the log being opened.
struct Recovery<'a> {
    dir: &'a Path,
    config: &'a LogConfig,
    files: &'a Arc<FileCache>,
    recovery_point: i64,
    /// The log was closed cleanly: the active segment is trusted like a closed one.
    clean: bool,
    now_ms: i64,
}

impl Recovery<'_> {
    /// Opens the segments in base offset order, scanning those that reach past the recovery
    /// point and any whose indexes are damaged (and the active one, unless the log was closed
    /// cleanly). Stops at the first truncation or offset gap and deletes every later segment.
    /// Returns the segments and the leader epochs seen in scanned batches.
    fn recover_segments(&self, bases: &[i64]) -> Result<(BTreeMap<i64, Segment>, SeenEpochs)> {
        let (dir, config, files) = (self.dir, self.config, self.files);
        let mut segments: BTreeMap<i64, Segment> = BTreeMap::new();
        let mut seen_epochs = Vec::new();
        for (i, &base) in bases.iter().enumerate() {
            let next_base = bases.get(i + 1).copied();
            let expected_base = segments.values().next_back().map(Segment::next_offset);
            if expected_base.is_some_and(|expected| expected != base) {
                tracing::warn!(dir = %dir.display(), base, ?expected_base, "offset gap between segments; deleting this segment and all later ones");
                delete_segment_files(dir, &bases[i..])?;
                break;
            }
            let trusted = match next_base {
                Some(next) if next <= self.recovery_point => {
                    Segment::open_trusted(dir, base, next, config, files)?
                }
                None if self.clean && base <= self.recovery_point => {
                    Segment::open_clean_active(dir, base, config, files, self.now_ms)?
                        .filter(|s| s.next_offset() >= self.recovery_point)
                }
                _ => None,
            };
            let (segment, truncated) = match trusted {
                Some(segment) => (segment, false),
                None => {
                    let (mut segment, outcome) =
                        Segment::open_and_scan(dir, base, next_base, config, files, self.now_ms)?;
                    seen_epochs.extend(outcome.epochs);
                    if next_base.is_some() {
                        // A closed segment is never written again: sealed as a roll would
                        // (its largest timestamp in the time index, which `open_trusted`
                        // reads it from), its rebuilt indexes go to disk now so the next open
                        // can trust them.
                        segment.seal_unsynced()?;
                    }
                    (segment, outcome.truncated_because.is_some())
                }
            };
            let empty_and_closed = segment.is_empty() && next_base.is_some();
            segments.insert(base, segment);
            if truncated || empty_and_closed {
                if next_base.is_some() {
                    tracing::warn!(dir = %dir.display(), base, "segment truncated; deleting all later segments");
                }
                delete_segment_files(dir, &bases[i + 1..])?;
                break;
            }
        }
        Ok((segments, seen_epochs))
    }
}

fn delete_segment_files(dir: &Path, bases: &[i64]) -> Result<()> {
    for &base in bases {
        for extension in ["log", "index", "timeindex"] {
            remove_file(&dir.join(segment_file_name(base, extension)))?;
        }
    }
    Ok(())
}

/// What [`list_dir`] found in a partition directory.
struct DirListing {
    /// Base offsets of the `.log` files, sorted.
    segment_bases: Vec<i64>,
    /// Offsets of the producer state snapshots, sorted.
    snapshot_offsets: Vec<i64>,
    /// A `.cleaned` or `.swap` file: a log clean was interrupted.
    clean_unfinished: bool,
}

/// Lists a partition directory once. Removes leftover `.tmp` files and index files without a
/// log.
fn list_dir(dir: &Path) -> Result<DirListing> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    let mut bases = Vec::new();
    let mut snapshot_offsets = Vec::new();
    let mut clean_unfinished = false;
    let mut index_files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.ends_with(".cleaned") || name.ends_with(".swap") {
            clean_unfinished = true;
            continue;
        }
        // A write interrupted before its rename, or a retired segment not unlinked before a
        // crash (see `retire_segments`).
        if name.ends_with(".tmp") || name.ends_with(RETIRED_SUFFIX) {
            remove_file(&entry.path())?;
            continue;
        }
        let Some((stem, extension)) = name.split_once('.') else {
            continue;
        };
        match (extension, parse_base_offset(stem)) {
            ("log", Some(base)) => bases.push(base),
            ("snapshot", Some(offset)) => snapshot_offsets.push(offset),
            ("index" | "timeindex", Some(base)) => index_files.push((base, entry.path())),
            _ => {}
        }
    }
    bases.sort_unstable();
    snapshot_offsets.sort_unstable();
    for (base, path) in index_files {
        if bases.binary_search(&base).is_err() {
            tracing::warn!(path = %path.display(), "index file without a segment; removing it");
            remove_file(&path)?;
        }
    }
    Ok(DirListing {
        segment_bases: bases,
        snapshot_offsets,
        clean_unfinished,
    })
}

pub(crate) fn parse_base_offset(stem: &str) -> Option<i64> {
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

//! Log compaction (`cleanup.policy=compact`): the log cleaner of one partition.
//!
//! A run ([`PartitionLog::clean`]) works on the closed segments only, never the active one:
//!
//! 1. **Cleanable range.** From the log start to the first *uncleanable* segment: the active
//!    segment, a segment reaching past the high watermark, or a dirty segment whose newest batch
//!    is younger than `min_compaction_lag_ms`. The *dirty* part starts at the first dirty offset
//!    (persisted in `cleaner-offset-checkpoint`; everything below it was cleaned before).
//! 2. **Offset map.** Key -> offset of its latest record, over the dirty part, whole segments at
//!    a time, until [`CLEANER_OFFSET_MAP_BYTES_MAX`] of keys (the rest waits for the next run).
//! 3. **Rewrite.** The segments below the end of the map are grouped (consecutive segments
//!    whose sizes add up to at most `segment_size_bytes`) and each group is rewritten into one
//!    segment named after its first base offset. A record is kept when no later record has its
//!    key. Offsets never change: a rewritten batch keeps its base offset, `lastOffsetDelta`,
//!    producer id, epoch and base sequence, leader epoch, codec and `maxTimestamp`; retained
//!    records are copied byte for byte (re-compressed with the batch's codec) with only their
//!    timestamp delta recomputed when the base timestamp changes. Control batches are kept as
//!    they are (transactions will define their removal).
//!
//! Rules:
//! - **Tombstones** (null value) follow Kafka's delete horizon (KIP-534): the first clean that
//!   keeps a tombstone rewrites its batch with attributes bit 6 set and `baseTimestamp =
//!   now + delete_retention_ms` (record timestamps stay right: they are deltas from it). A later
//!   clean at or after that horizon drops the tombstone if it is still the latest record of its
//!   key. Runs are also due (see [`PartitionLog::needs_cleaning`]) when the earliest pending
//!   horizon has passed, even without new dirty data.
//! - **Keyless records** are dropped: Kafka rejects them at produce time on compacted topics
//!   (`INVALID_RECORD`); the broker must do the same, this only keeps old or replicated ones
//!   from surviving forever.
//! - **Empty batches.** A batch whose records are all removed disappears, except (a) the last
//!   batch of a producer (its `last_offset` is the producer's latest batch), as in Kafka, so that
//!   rebuilding the producer state from the log still knows the producer's last sequence, and
//!   (b) the last batch of each group, so that a cleaned segment ends exactly where the old
//!   group ended. Such batches are kept as an empty header: same offsets, producer fields and
//!   base sequence, zero records, `baseTimestamp = maxTimestamp`, no compression (Kafka's
//!   `writeEmptyHeader`). Kafka clients skip empty batches and move past their last offset.
//! - **Reads across gaps.** Segments stay contiguous (thanks to (b)); inside a segment, batches
//!   may have offset gaps, and a read from an offset that was cleaned away starts at the next
//!   batch.
//! - **Records below the log start offset** are cleaned like the others; they are invisible.
//!
//! **Crash safety** (Kafka's swap protocol). A group is written to `<base>.log.cleaned` and
//! fsynced; renaming it to `<base>.log.swap` (and fsyncing the directory) commits the clean.
//! The old segments' files are then deleted and the swap is renamed to `<base>.log`; indexes are
//! rebuilt by scanning it (which checks every CRC again). On open,
//! [`finish_interrupted_clean`] deletes any `.cleaned` file (the originals are intact) and
//! completes any `.swap`: the swap's own batches give its offset range, every old segment whose
//! base falls inside it is deleted, and the swap is installed. A SIGKILL at any instant
//! therefore leaves either the old segments or the cleaned one, never both, never neither.
//!
//! Not done: a cleaner thread pool (the broker polls [`PartitionLog::needs_cleaning`] and calls
//! [`PartitionLog::clean`] under the partition's lock), throttling, aborted-transaction removal.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use strom_protocol::record_batch::{
    CONTROL_BIT, DELETE_HORIZON_BIT, TIMESTAMP_TYPE_BIT, TRANSACTIONAL_BIT,
};

use crate::batch::BatchHeader;
use crate::config::CLEANER_OFFSET_MAP_BYTES_MAX;
use crate::error::{Result, StorageError};
use crate::io::{remove_file, sync_dir, write_atomically, FileCache, LogFile};
use crate::log::{parse_base_offset, PartitionLog};
use crate::records::{build_batch, decompressed_records, records, write_record, RecordView};
use crate::segment::{segment_file_name, Segment, NO_TIMESTAMP};

/// Name of the file holding the first dirty offset and the next delete horizon.
pub const CLEANER_CHECKPOINT_FILE_NAME: &str = "cleaner-offset-checkpoint";

const CHECKPOINT_HEADER: &str = "strom-cleaner-checkpoint 1";
/// Bytes counted per offset map entry on top of the key (hash table slot, `Bytes`, offset).
const MAP_ENTRY_OVERHEAD_BYTES: usize = 64;
/// Attribute bits kept on an empty batch header: timestamp type, transactional, control.
const EMPTY_BATCH_ATTRIBUTES_MASK: i16 = TIMESTAMP_TYPE_BIT | TRANSACTIONAL_BIT | CONTROL_BIT;

/// What one cleaner run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// Segments read and rewritten (or found already clean).
    pub segments_read: usize,
    /// Segments written (one per group that changed).
    pub segments_written: usize,
    /// Bytes of the segments read.
    pub bytes_read: u64,
    /// Bytes of the segments written.
    pub bytes_written: u64,
    /// Records looked at in the rewritten range.
    pub records_read: u64,
    /// Records removed because a later record has the same key.
    pub records_superseded: u64,
    /// Tombstones removed because their delete horizon passed.
    pub tombstones_removed: u64,
    /// Records removed because they have no key.
    pub keyless_records_removed: u64,
    /// Batches kept as empty headers (last batch of a producer or of a group).
    pub empty_batches_kept: u64,
    /// Distinct keys in the offset map.
    pub keys_mapped: usize,
    /// The first dirty offset after the run (everything below it is clean).
    pub cleaned_up_to_offset: i64,
}

/// Where [`PartitionLog::clean_until`] stops early, to simulate a crash in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CleanStep {
    /// After the first `.cleaned` file is written and fsynced.
    CleanedWritten,
    /// After it is renamed to `.swap`.
    SwapRenamed,
    /// After the old segments other than the first are deleted.
    OldSegmentsDeleted,
}

/// The persisted cleaner state of one partition: the first dirty offset and the earliest
/// delete horizon of a retained tombstone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CleanerCheckpoint {
    pub(crate) first_dirty_offset: i64,
    pub(crate) delete_horizon_ms: Option<i64>,
}

impl CleanerCheckpoint {
    /// Reads the checkpoint; missing or damaged gives the default (everything dirty).
    pub(crate) fn read(dir: &Path) -> CleanerCheckpoint {
        let path = dir.join(CLEANER_CHECKPOINT_FILE_NAME);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return CleanerCheckpoint::default();
        };
        let parsed = (|| {
            let mut lines = text.lines();
            if lines.next()? != CHECKPOINT_HEADER {
                return None;
            }
            let mut value = |key: &str| -> Option<i64> {
                let (found, number) = lines.next()?.split_once(' ')?;
                (found == key).then(|| number.parse().ok()).flatten()
            };
            let first_dirty_offset = value("first_dirty_offset")?;
            let horizon = value("delete_horizon_ms")?;
            Some(CleanerCheckpoint {
                first_dirty_offset,
                delete_horizon_ms: (horizon >= 0).then_some(horizon),
            })
        })();
        parsed.unwrap_or_else(|| {
            tracing::warn!(path = %path.display(), "damaged cleaner checkpoint; the whole log is dirty");
            CleanerCheckpoint::default()
        })
    }

    /// Writes the checkpoint atomically.
    pub(crate) fn write(&self, dir: &Path) -> Result<()> {
        let text = format!(
            "{CHECKPOINT_HEADER}\nfirst_dirty_offset {}\ndelete_horizon_ms {}\n",
            self.first_dirty_offset,
            self.delete_horizon_ms.unwrap_or(-1)
        );
        write_atomically(&dir.join(CLEANER_CHECKPOINT_FILE_NAME), text.as_bytes())
    }
}

/// Key -> offset of its latest record in the dirty part.
type OffsetMap = HashMap<Bytes, i64>;

/// Why a record is removed, or `None` to keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Removal {
    Superseded,
    Tombstone,
    Keyless,
}

/// What happens to one batch.
enum Fate {
    /// Unchanged: its bytes are copied.
    Keep,
    /// Rewritten with fewer records or a new delete horizon.
    Rewrite(Vec<u8>),
    /// Every record is removed.
    Empty,
}

/// Inputs of a cleaning run shared by every batch.
struct Cleaning<'a> {
    map: &'a OffsetMap,
    now_ms: i64,
    delete_retention_ms: i64,
}

impl Cleaning<'_> {
    fn removal(&self, header: &BatchHeader, record: &RecordView<'_>) -> Option<Removal> {
        let Some(key) = record.key else {
            return Some(Removal::Keyless);
        };
        let offset = header
            .base_offset
            .saturating_add(i64::from(record.offset_delta));
        if self.map.get(key).is_some_and(|&latest| latest > offset) {
            return Some(Removal::Superseded);
        }
        let horizon_passed = header
            .delete_horizon_ms()
            .is_some_and(|horizon| self.now_ms >= horizon);
        if !record.has_value && horizon_passed {
            return Some(Removal::Tombstone);
        }
        None
    }

    /// Decides the fate of one batch (`batch` is its whole bytes) and counts what is removed.
    /// `next_horizon` collects the earliest delete horizon of a batch keeping a tombstone.
    fn filter(
        &self,
        header: &BatchHeader,
        batch: Bytes,
        stats: &mut CleanStats,
        next_horizon: &mut Option<i64>,
    ) -> Result<Fate> {
        if header.is_control() {
            return Ok(Fate::Keep);
        }
        if header.records_count == 0 {
            return Ok(Fate::Empty);
        }
        let corrupt = |e: String| StorageError::Corrupt(format!("cleaning: {e}"));
        let data = decompressed_records(header, batch).map_err(corrupt)?;
        let (mut kept, mut kept_tombstones, mut removed) = (0i32, 0u64, 0u64);
        for record in records(&data, header.records_count) {
            let record = record.map_err(corrupt)?;
            stats.records_read += 1;
            match self.removal(header, &record) {
                None => {
                    kept += 1;
                    kept_tombstones += u64::from(!record.has_value);
                }
                Some(reason) => {
                    removed += 1;
                    match reason {
                        Removal::Superseded => stats.records_superseded += 1,
                        Removal::Tombstone => stats.tombstones_removed += 1,
                        Removal::Keyless => stats.keyless_records_removed += 1,
                    }
                }
            }
        }
        if kept == 0 {
            return Ok(Fate::Empty);
        }
        let set_horizon = header.delete_horizon_ms().is_none() && kept_tombstones > 0;
        let (attributes, base_timestamp) = if set_horizon {
            let horizon = self.now_ms.saturating_add(self.delete_retention_ms);
            (header.attributes | DELETE_HORIZON_BIT, horizon)
        } else {
            (header.attributes, header.base_timestamp)
        };
        if kept_tombstones > 0 {
            let horizon = header.delete_horizon_ms().unwrap_or(base_timestamp);
            *next_horizon = Some(next_horizon.map_or(horizon, |h| h.min(horizon)));
        }
        if removed == 0 && !set_horizon {
            return Ok(Fate::Keep);
        }
        let mut raw = Vec::with_capacity(data.len());
        for record in records(&data, header.records_count) {
            let record = record.map_err(corrupt)?;
            if self.removal(header, &record).is_some() {
                continue;
            }
            let timestamp_ms = header.base_timestamp.saturating_add(record.timestamp_delta);
            let delta = timestamp_ms.saturating_sub(base_timestamp);
            write_record(
                &mut raw,
                record.attributes,
                delta,
                record.offset_delta,
                record.body,
            );
        }
        let rebuilt =
            build_batch(header, attributes, base_timestamp, kept, &raw).map_err(corrupt)?;
        Ok(Fate::Rewrite(rebuilt))
    }
}

/// Kafka's empty batch header for a batch whose records were all removed.
fn empty_batch(header: &BatchHeader) -> Result<Vec<u8>> {
    let attributes = header.attributes & EMPTY_BATCH_ATTRIBUTES_MASK;
    build_batch(header, attributes, header.max_timestamp, 0, &[])
        .map_err(|e| StorageError::Corrupt(format!("cleaning: {e}")))
}

impl PartitionLog {
    /// The first offset not yet cleaned.
    fn first_dirty_offset(&self) -> i64 {
        self.cleaner
            .first_dirty_offset
            .clamp(self.log_start_offset, self.log_end_offset())
    }

    /// Base offset of the first segment the cleaner may not touch: the active segment, a
    /// segment reaching past the high watermark, or a dirty segment whose newest batch is
    /// younger than `min_compaction_lag_ms`.
    fn cleanable_end_offset(&self, now_ms: i64) -> i64 {
        let first_dirty = self.first_dirty_offset();
        let lag_ms = self.compaction.min_compaction_lag_ms;
        for segment in self.closed_segments() {
            let max_timestamp_ms = segment.max_timestamp_ms();
            let too_new = lag_ms > 0
                && max_timestamp_ms != NO_TIMESTAMP
                && now_ms.saturating_sub(max_timestamp_ms) < lag_ms;
            let dirty = segment.next_offset() > first_dirty;
            if segment.next_offset() > self.high_watermark || (dirty && too_new) {
                return segment.base_offset();
            }
        }
        self.active().base_offset()
    }

    /// Bytes of the cleanable closed segments that are clean and dirty.
    fn clean_and_dirty_bytes(&self, now_ms: i64) -> (u64, u64) {
        let end = self.cleanable_end_offset(now_ms);
        let first_dirty = self.first_dirty_offset();
        let (mut clean, mut dirty) = (0u64, 0u64);
        for segment in self.closed_segments() {
            if segment.next_offset() > end {
                break;
            }
            if segment.next_offset() <= first_dirty {
                clean += segment.size_bytes();
            } else {
                dirty += segment.size_bytes();
            }
        }
        (clean, dirty)
    }

    /// Kafka's cleanable dirty ratio: bytes of the cleanable segments not yet cleaned over
    /// bytes of all cleanable segments (0 when there are none). Cheap: segment sizes only.
    pub fn cleanable_dirty_ratio(&self, now_ms: i64) -> f64 {
        let (clean, dirty) = self.clean_and_dirty_bytes(now_ms);
        if clean + dirty == 0 {
            return 0.0;
        }
        dirty as f64 / (clean + dirty) as f64
    }

    /// Whether a cleaner run is due: the log is compacted and either the dirty ratio reached
    /// `min_cleanable_dirty_ratio`, or the first dirty batch is older than
    /// `max_compaction_lag_ms`, or a retained tombstone's delete horizon has passed. Cheap
    /// enough to poll (at most one batch header read).
    pub fn needs_cleaning(&self, now_ms: i64) -> bool {
        if !self.compaction.cleanup_policy_compact {
            return false;
        }
        let (clean, dirty) = self.clean_and_dirty_bytes(now_ms);
        let horizon_due = self
            .cleaner
            .delete_horizon_ms
            .is_some_and(|horizon| horizon <= now_ms);
        if horizon_due && clean + dirty > 0 {
            return true;
        }
        if dirty == 0 {
            return false;
        }
        let ratio = dirty as f64 / (clean + dirty) as f64;
        ratio >= self.compaction.min_cleanable_dirty_ratio || self.max_compaction_lag_passed(now_ms)
    }

    fn max_compaction_lag_passed(&self, now_ms: i64) -> bool {
        let lag_ms = self.compaction.max_compaction_lag_ms;
        if lag_ms == i64::MAX {
            return false;
        }
        let first_dirty = self.first_dirty_offset();
        let Some(segment) = self
            .closed_segments()
            .find(|s| s.next_offset() > first_dirty)
        else {
            return false;
        };
        match segment.find_batch(first_dirty.max(segment.base_offset())) {
            Ok(Some((_, header))) => {
                header.base_timestamp != NO_TIMESTAMP
                    && now_ms.saturating_sub(header.base_timestamp) > lag_ms
            }
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "reading the first dirty batch");
                true
            }
        }
    }

    /// Runs the log cleaner once (see the [`crate::cleaner`] module for the rules) if the log
    /// is compacted; a no-op otherwise or when nothing is cleanable. Never touches the active
    /// segment; offsets, the log start offset and the log end offset do not change. On error
    /// (a corrupt batch, I/O), the log is left as it was or with some groups cleaned, and is
    /// consistent either way.
    pub fn clean(&mut self, now_ms: i64) -> Result<CleanStats> {
        self.clean_until(now_ms, None)
    }

    /// [`PartitionLog::clean`], stopping after `stop` in the first group that changes (crash
    /// simulation: the caller then drops the log without closing it).
    pub(crate) fn clean_until(
        &mut self,
        now_ms: i64,
        stop: Option<CleanStep>,
    ) -> Result<CleanStats> {
        let first_dirty = self.first_dirty_offset();
        let mut stats = CleanStats {
            cleaned_up_to_offset: first_dirty,
            ..CleanStats::default()
        };
        if !self.compaction.cleanup_policy_compact {
            return Ok(stats);
        }
        let end = self.cleanable_end_offset(now_ms);
        let horizon_due = self
            .cleaner
            .delete_horizon_ms
            .is_some_and(|horizon| horizon <= now_ms);
        if end <= first_dirty && !horizon_due {
            return Ok(stats);
        }
        let (map, map_end) = self.build_offset_map(first_dirty, end)?;
        stats.keys_mapped = map.len();
        let clean_end = map_end.max(first_dirty.min(end));
        let cleaning = Cleaning {
            map: &map,
            now_ms,
            delete_retention_ms: self.compaction.delete_retention_ms,
        };
        let mut next_horizon = None;
        for group in self.group_segments(clean_end) {
            let finished =
                self.clean_group(&group, &cleaning, &mut stats, &mut next_horizon, stop)?;
            if !finished {
                return Ok(stats);
            }
        }
        self.cleaner = CleanerCheckpoint {
            first_dirty_offset: clean_end.max(first_dirty),
            delete_horizon_ms: next_horizon,
        };
        self.cleaner.write(&self.dir)?;
        stats.cleaned_up_to_offset = self.cleaner.first_dirty_offset;
        self.check_invariants();
        tracing::info!(dir = %self.dir.display(), ?stats, "cleaned log");
        Ok(stats)
    }

    /// Builds the offset map over the closed segments from `first_dirty` up to `end`, whole
    /// segments at a time, stopping after the segment where the map outgrows its budget.
    /// Returns the map and the offset up to which it covers the log.
    fn build_offset_map(&self, first_dirty: i64, end: i64) -> Result<(OffsetMap, i64)> {
        let mut map = OffsetMap::new();
        let mut map_bytes = 0usize;
        let mut map_end = first_dirty.min(end);
        let corrupt = |e: String| StorageError::Corrupt(format!("building the offset map: {e}"));
        for segment in self.closed_segments() {
            if segment.next_offset() <= first_dirty {
                continue;
            }
            if segment.next_offset() > end {
                break;
            }
            let start = segment.find_batch(first_dirty.max(segment.base_offset()))?;
            for item in segment.headers_from(start.map_or(u64::MAX, |(position, _)| position)) {
                let (position, header) = item?;
                if header.is_control() || header.records_count == 0 {
                    continue;
                }
                let batch = Bytes::from(segment.read_bytes(position, header.size_bytes())?);
                let data = decompressed_records(&header, batch).map_err(corrupt)?;
                for record in records(&data, header.records_count) {
                    let record = record.map_err(corrupt)?;
                    let offset = header
                        .base_offset
                        .saturating_add(i64::from(record.offset_delta));
                    let Some(key) = record.key else { continue };
                    if offset < first_dirty {
                        continue;
                    }
                    match map.get_mut(key) {
                        Some(latest) => *latest = offset,
                        None => {
                            map_bytes += key.len() + MAP_ENTRY_OVERHEAD_BYTES;
                            map.insert(Bytes::copy_from_slice(key), offset);
                        }
                    }
                }
            }
            map_end = segment.next_offset();
            if map_bytes >= CLEANER_OFFSET_MAP_BYTES_MAX {
                tracing::info!(dir = %self.dir.display(), map_end, "cleaner offset map full; the rest waits for the next run");
                break;
            }
        }
        Ok((map, map_end))
    }

    /// Groups the closed segments ending at or below `clean_end` into runs of consecutive
    /// segments whose sizes add up to at most `segment_size_bytes` (and whose offsets fit the
    /// 32-bit relative offsets of one segment).
    fn group_segments(&self, clean_end: i64) -> Vec<Vec<i64>> {
        let limit_bytes = self.config.segment_size_bytes_effective();
        let mut groups: Vec<Vec<i64>> = Vec::new();
        let mut current: Vec<i64> = Vec::new();
        let (mut current_bytes, mut current_base) = (0u64, 0i64);
        for segment in self.closed_segments() {
            if segment.next_offset() > clean_end {
                break;
            }
            let fits = current_bytes + segment.size_bytes() <= limit_bytes
                && segment.next_offset() - current_base <= i64::from(u32::MAX);
            if !current.is_empty() && !fits {
                groups.push(std::mem::take(&mut current));
            }
            if current.is_empty() {
                current_base = segment.base_offset();
                current_bytes = 0;
            }
            current.push(segment.base_offset());
            current_bytes += segment.size_bytes();
        }
        if !current.is_empty() {
            groups.push(current);
        }
        groups
    }

    /// Cleans one group into `<base>.log.cleaned` and swaps it in if anything changed.
    /// Returns `false` when stopped early by `stop`.
    fn clean_group(
        &mut self,
        group: &[i64],
        cleaning: &Cleaning<'_>,
        stats: &mut CleanStats,
        next_horizon: &mut Option<i64>,
        stop: Option<CleanStep>,
    ) -> Result<bool> {
        let (Some(&first_base), Some(last_base)) = (group.first(), group.last()) else {
            return Ok(true);
        };
        let Some(group_end) = self.segments.get(last_base).map(Segment::next_offset) else {
            return Ok(true);
        };
        let cleaned_path = self.dir.join(segment_file_name(first_base, "log.cleaned"));
        let mut out = LogFile::create(&cleaned_path, &self.files)?;
        let written = self.write_cleaned(group, group_end, cleaning, &mut out, stats, next_horizon);
        let (changed, written_end) = match written {
            Ok(outcome) => outcome,
            Err(error) => {
                remove_file(&cleaned_path)?;
                return Err(error);
            }
        };
        stats.segments_read += group.len();
        stats.bytes_read += group
            .iter()
            .filter_map(|b| self.segments.get(b))
            .map(Segment::size_bytes)
            .sum::<u64>();
        if !changed || written_end != group_end {
            if written_end != group_end {
                tracing::warn!(dir = %self.dir.display(), first_base, group_end, written_end, "cleaned group does not end where the group did; left as it was");
            }
            remove_file(&cleaned_path)?;
            return Ok(true);
        }
        out.sync()?;
        stats.bytes_written += out.len_bytes();
        stats.segments_written += 1;
        drop(out);
        if stop == Some(CleanStep::CleanedWritten) {
            return Ok(false);
        }
        let swap_path = self.dir.join(segment_file_name(first_base, "log.swap"));
        std::fs::rename(&cleaned_path, &swap_path).map_err(|e| {
            StorageError::io(format!("renaming {} to .swap", cleaned_path.display()), e)
        })?;
        sync_dir(&self.dir)?;
        if stop == Some(CleanStep::SwapRenamed) {
            return Ok(false);
        }
        self.install_swap(group, group_end, cleaning.now_ms, stop)
    }

    /// Writes the retained batches of `group` to `out`. Returns whether anything changed and
    /// the next offset after the last batch written.
    fn write_cleaned(
        &self,
        group: &[i64],
        group_end: i64,
        cleaning: &Cleaning<'_>,
        out: &mut LogFile,
        stats: &mut CleanStats,
        next_horizon: &mut Option<i64>,
    ) -> Result<(bool, i64)> {
        let mut changed = group.len() > 1;
        let mut written_end = group.first().copied().unwrap_or(group_end);
        for segment in group.iter().filter_map(|b| self.segments.get(b)) {
            for item in segment.headers_from(0) {
                let (position, header) = item?;
                let batch = Bytes::from(segment.read_bytes(position, header.size_bytes())?);
                let bytes = match cleaning.filter(&header, batch.clone(), stats, next_horizon)? {
                    Fate::Keep => Some(batch),
                    Fate::Rewrite(bytes) => {
                        changed = true;
                        Some(Bytes::from(bytes))
                    }
                    Fate::Empty if self.keeps_empty(&header, group_end) => {
                        stats.empty_batches_kept += 1;
                        if header.records_count == 0 {
                            Some(batch)
                        } else {
                            changed = true;
                            Some(Bytes::from(empty_batch(&header)?))
                        }
                    }
                    Fate::Empty => {
                        changed = true;
                        None
                    }
                };
                if let Some(bytes) = bytes {
                    out.append(&bytes)?;
                    written_end = header.next_offset();
                }
            }
        }
        Ok((changed, written_end))
    }

    /// Whether a batch whose records are all gone is kept as an empty header: the last batch of
    /// its group, or the latest batch of its producer.
    fn keeps_empty(&self, header: &BatchHeader, group_end: i64) -> bool {
        let producer_last = header.producer_id >= 0
            && self
                .producers
                .entry(header.producer_id)
                .and_then(|entry| entry.last_batch())
                .is_some_and(|batch| batch.last_offset == header.last_offset());
        header.next_offset() == group_end || producer_last
    }

    /// Replaces the segments of `group` by the committed `<base>.log.swap`.
    fn install_swap(
        &mut self,
        group: &[i64],
        group_end: i64,
        now_ms: i64,
        stop: Option<CleanStep>,
    ) -> Result<bool> {
        let Some(&first_base) = group.first() else {
            return Ok(true);
        };
        for &base in &group[1..] {
            remove_segment_files(&self.dir, base)?;
        }
        if stop == Some(CleanStep::OldSegmentsDeleted) {
            return Ok(false);
        }
        install_swap_file(&self.dir, first_base)?;
        let (mut segment, outcome) = Segment::open_and_scan(
            &self.dir,
            first_base,
            Some(group_end),
            &self.config,
            &self.files,
            now_ms,
        )?;
        if outcome.truncated_because.is_some() || segment.next_offset() != group_end {
            return Err(StorageError::Corrupt(format!(
                "cleaned segment {first_base} ends at {} instead of {group_end}: {:?}",
                segment.next_offset(),
                outcome.truncated_because
            )));
        }
        // A closed segment: sealed now, as a roll would have (its largest timestamp in the
        // time index, which the next open reads it from; indexes written and fsynced).
        segment.seal()?;
        for base in group {
            self.segments.remove(base);
        }
        self.segments.insert(first_base, segment);
        Ok(true)
    }
}

fn remove_segment_files(dir: &Path, base: i64) -> Result<()> {
    for extension in ["log", "index", "timeindex"] {
        remove_file(&dir.join(segment_file_name(base, extension)))?;
    }
    Ok(())
}

/// Renames `<base>.log.swap` over `<base>.log` after removing the old indexes of `base`.
fn install_swap_file(dir: &Path, base: i64) -> Result<()> {
    for extension in ["index", "timeindex"] {
        remove_file(&dir.join(segment_file_name(base, extension)))?;
    }
    let swap_path = dir.join(segment_file_name(base, "log.swap"));
    let log_path = dir.join(segment_file_name(base, "log"));
    std::fs::rename(&swap_path, &log_path)
        .map_err(|e| StorageError::io(format!("renaming {}", swap_path.display()), e))?;
    sync_dir(dir)
}

/// Finishes or rolls back a clean interrupted by a crash (called by
/// [`PartitionLog::open`] before it lists segments): deletes every `.cleaned` file and
/// completes every `.swap` (deleting the old segments its offsets cover, then installing it).
pub fn finish_interrupted_clean(dir: &Path, files: &Arc<FileCache>) -> Result<()> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    let mut swaps = Vec::new();
    let mut logs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".cleaned") {
            tracing::info!(path = %path.display(), "removing an unfinished cleaned segment");
            remove_file(&path)?;
        } else if let Some(base) = name.strip_suffix(".log.swap").and_then(parse_base_offset) {
            swaps.push(base);
        } else if let Some(base) = name.strip_suffix(".log").and_then(parse_base_offset) {
            logs.push(base);
        }
    }
    swaps.sort_unstable();
    for base in swaps {
        let swap_path = dir.join(segment_file_name(base, "log.swap"));
        let Some(end) = swap_end_offset(&swap_path, files)? else {
            tracing::error!(path = %swap_path.display(), "swap file holds no valid batch; removing it");
            remove_file(&swap_path)?;
            continue;
        };
        tracing::info!(path = %swap_path.display(), end, "completing an interrupted log clean");
        for &old in logs.iter().filter(|&&old| old > base && old < end) {
            remove_segment_files(dir, old)?;
        }
        install_swap_file(dir, base)?;
    }
    Ok(())
}

/// The offset after the last well-framed batch of a swap file (headers only; the CRCs are
/// checked when the installed segment is scanned), or `None` if it has none.
fn swap_end_offset(path: &Path, files: &Arc<FileCache>) -> Result<Option<i64>> {
    let file = LogFile::open(path, files)?;
    let mut position = 0u64;
    let mut end = None;
    let mut buf = [0u8; crate::batch::BATCH_HEADER_SIZE_BYTES];
    while position < file.len_bytes() {
        let read = file.read_at(&mut buf, position)?;
        let Ok(header) = BatchHeader::parse(&buf[..read]) else {
            break;
        };
        let size = header.size_bytes() as u64;
        let framed = header.magic == crate::batch::MAGIC_V2
            && header.batch_length >= crate::batch::BATCH_LENGTH_MIN
            && position + size <= file.len_bytes()
            && header.last_offset_delta >= 0
            && end.is_none_or(|e| header.base_offset >= e);
        if !framed {
            break;
        }
        end = Some(header.next_offset());
        position += size;
    }
    Ok(end)
}

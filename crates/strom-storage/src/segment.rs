//! One segment: a `.log` file of whole batches starting at `base_offset`, with its sparse
//! `.index` and `.timeindex`. Only the active (last) segment is ever appended to or truncated;
//! closed segments are immutable.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strom_protocol::record_batch::ATTRIBUTES_AT;

use crate::batch::{self, BatchHeader, BATCH_HEADER_SIZE_BYTES, BATCH_LENGTH_MIN, MAGIC_V2};
use crate::config::LogConfig;
use crate::error::{Result, StorageError};
use crate::index::{OffsetEntry, OffsetIndex};
use crate::io::{remove_file, FileCache, FileRegion, LogFile};
use crate::time_index::{TimeEntry, TimeIndex};

/// Marks "no timestamp", as Kafka's `RecordBatch.NO_TIMESTAMP`.
pub(crate) const NO_TIMESTAMP: i64 = -1;

/// Bytes read at once while scanning a segment during recovery.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// File name of a segment file: the base offset as 20 digits (Kafka naming).
pub(crate) fn segment_file_name(base_offset: i64, extension: &str) -> String {
    format!("{base_offset:020}.{extension}")
}

/// A segment of a partition log.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    next_offset: i64,
    log: LogFile,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    max_timestamp_ms: i64,
    max_timestamp_batch_base_offset: i64,
    bytes_since_index_entry: u64,
    index_interval_bytes: u64,
    rolling_base_ms: Option<i64>,
}

/// What a recovery scan found.
#[derive(Debug)]
pub(crate) struct ScanOutcome {
    /// Why the scan stopped before the end of the file, if it did (the file was truncated).
    pub(crate) truncated_because: Option<String>,
    /// Leader epochs seen, as (epoch, base offset of the first batch with it), in log order.
    pub(crate) epochs: Vec<(i32, i64)>,
}

impl Segment {
    /// Creates a new empty segment (truncating a stale log file of the same name). Its index
    /// files are not created: indexes without entries have none (see
    /// [`Segment::persist_indexes`]), so a new partition costs two inodes fewer, which is most
    /// of the work of creating thousands at once. Stale index files of the same name are
    /// rewritten or removed by the first persist (at the latest the clean close) and never
    /// trusted before it (after a kill the active segment is scanned, not trusted).
    pub(crate) fn create(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        files: &Arc<FileCache>,
    ) -> Result<Segment> {
        let log = LogFile::create(&dir.join(segment_file_name(base_offset, "log")), files)?;
        Ok(Segment::with_empty_indexes(dir, base_offset, log, config))
    }

    /// Opens a closed segment below the recovery point whose end offset is known
    /// (`next_offset`, the next segment's base) without scanning it, trusting its indexes when
    /// they pass the consistency checks. Returns `None` when an index is missing or damaged:
    /// the caller then recovers the segment with [`Segment::open_and_scan`].
    /// The log file is not opened (only its length is read); its handle comes from `files` on
    /// first use.
    pub(crate) fn open_trusted(
        dir: &Path,
        base_offset: i64,
        next_offset: i64,
        config: &LogConfig,
        files: &Arc<FileCache>,
    ) -> Result<Option<Segment>> {
        let log = LogFile::open_lazily(&dir.join(segment_file_name(base_offset, "log")), files)?;
        let log_len_bytes = log.len_bytes();
        let span = next_offset - base_offset;
        if log_len_bytes == 0 || span <= 0 || span > i64::from(u32::MAX) {
            return Ok(None);
        }
        let capacity = config.segment_index_size_bytes;
        let offset_index = OffsetIndex::load(
            &dir.join(segment_file_name(base_offset, "index")),
            capacity,
            |e: &OffsetEntry| {
                i64::from(e.relative_offset) < span && u64::from(e.position) < log_len_bytes
            },
        )?;
        let time_index = TimeIndex::load(
            &dir.join(segment_file_name(base_offset, "timeindex")),
            capacity,
            |e: &TimeEntry| i64::from(e.relative_offset) < span && e.timestamp_ms >= 0,
        )?;
        let (Some(offset_index), Some(time_index)) = (offset_index, time_index) else {
            return Ok(None);
        };
        let (max_timestamp_ms, max_timestamp_batch_base_offset) =
            time_index.last().map_or((NO_TIMESTAMP, base_offset), |e| {
                (e.timestamp_ms, base_offset + i64::from(e.relative_offset))
            });
        Ok(Some(Segment {
            base_offset,
            next_offset,
            log,
            offset_index,
            time_index,
            max_timestamp_ms,
            max_timestamp_batch_base_offset,
            bytes_since_index_entry: 0,
            index_interval_bytes: u64::from(config.index_interval_bytes),
            rolling_base_ms: None,
        }))
    }

    /// Opens the active segment of a log that was shut down cleanly without scanning it: its
    /// indexes (written at close) are trusted when they pass the consistency checks, and only
    /// the batches from the last offset index entry to the end of the file (at most about
    /// `index.interval.bytes`) are read and checked (framing, offsets, CRC) to find the end
    /// offset and the largest timestamp. Returns `None` when an index is missing or damaged or
    /// the tail does not end exactly at the end of the file: the caller then scans it with
    /// [`Segment::open_and_scan`].
    pub(crate) fn open_clean_active(
        dir: &Path,
        base_offset: i64,
        config: &LogConfig,
        files: &Arc<FileCache>,
        now_ms: i64,
    ) -> Result<Option<Segment>> {
        let log = LogFile::open_lazily(&dir.join(segment_file_name(base_offset, "log")), files)?;
        let log_len_bytes = log.len_bytes();
        let index_path = dir.join(segment_file_name(base_offset, "index"));
        let time_index_path = dir.join(segment_file_name(base_offset, "timeindex"));
        let capacity = config.segment_index_size_bytes;
        let (offset_index, time_index) = if !index_path.exists() && !time_index_path.exists() {
            // Indexes without entries have no files (see `persist_indexes`): both empty, so
            // the whole segment is checked below, as an empty pair of files would have it.
            (
                OffsetIndex::rebuilt(&index_path, capacity),
                TimeIndex::rebuilt(&time_index_path, capacity),
            )
        } else {
            let offset_index = OffsetIndex::load(&index_path, capacity, |e: &OffsetEntry| {
                u64::from(e.position) < log_len_bytes
            })?;
            let time_index = TimeIndex::load(&time_index_path, capacity, |e: &TimeEntry| {
                e.timestamp_ms >= 0
            })?;
            let (Some(offset_index), Some(time_index)) = (offset_index, time_index) else {
                return Ok(None);
            };
            (offset_index, time_index)
        };
        let mut segment = Segment {
            base_offset,
            next_offset: base_offset,
            log,
            offset_index,
            time_index,
            max_timestamp_ms: NO_TIMESTAMP,
            max_timestamp_batch_base_offset: base_offset,
            bytes_since_index_entry: 0,
            index_interval_bytes: u64::from(config.index_interval_bytes),
            rolling_base_ms: None,
        };
        if let Some(last) = segment.time_index.last() {
            segment.max_timestamp_ms = last.timestamp_ms;
            segment.max_timestamp_batch_base_offset = base_offset + i64::from(last.relative_offset);
        }
        let relative_limit = base_offset.saturating_add(i64::from(u32::MAX));
        let mut reader = ChunkReader::default();
        let mut position = 0u64;
        if let Some(last) = segment.offset_index.last().copied() {
            // The indexed batch itself: it is in the index already, so it is not indexed again.
            let expected = base_offset + i64::from(last.relative_offset);
            position = u64::from(last.position);
            let header = match check_batch_at(
                &mut reader,
                &segment.log,
                position,
                expected,
                relative_limit,
            )? {
                Ok(header) if header.base_offset == expected => header,
                _ => return Ok(None),
            };
            if header.max_timestamp > segment.max_timestamp_ms {
                segment.max_timestamp_ms = header.max_timestamp;
                segment.max_timestamp_batch_base_offset = header.base_offset;
            }
            segment.next_offset = header.next_offset();
            segment.bytes_since_index_entry = header.size_bytes() as u64;
            position += header.size_bytes() as u64;
        }
        while position < log_len_bytes {
            let header = match check_batch_at(
                &mut reader,
                &segment.log,
                position,
                segment.next_offset,
                relative_limit,
            )? {
                Ok(header) => header,
                Err(_) => return Ok(None),
            };
            segment.index_batch(position, &header)?;
            position += header.size_bytes() as u64;
        }
        if segment
            .time_index
            .last()
            .is_some_and(|e| base_offset + i64::from(e.relative_offset) >= segment.next_offset)
        {
            return Ok(None);
        }
        if log_len_bytes > 0 {
            segment.rolling_base_ms = Some(now_ms);
        }
        Ok(Some(segment))
    }

    /// Opens a segment and recovers it: scans every batch (framing, magic, offsets increasing
    /// from `base_offset` and below `offset_limit` (the next segment's base, if known), CRC),
    /// truncates the file at the first bad one, and rebuilds both indexes from the scan (in
    /// memory: the index files are rewritten by the next [`Segment::persist_indexes`], roll or
    /// flush).
    pub(crate) fn open_and_scan(
        dir: &Path,
        base_offset: i64,
        offset_limit: Option<i64>,
        config: &LogConfig,
        files: &Arc<FileCache>,
        now_ms: i64,
    ) -> Result<(Segment, ScanOutcome)> {
        let log = LogFile::open(&dir.join(segment_file_name(base_offset, "log")), files)?;
        let mut segment = Segment::with_empty_indexes(dir, base_offset, log, config);
        let outcome = segment.scan_and_index(offset_limit)?;
        if segment.log.len_bytes() > 0 {
            segment.rolling_base_ms = Some(now_ms);
        }
        Ok((segment, outcome))
    }

    /// A segment over `log` with empty indexes whose files are rewritten at the next persist.
    fn with_empty_indexes(
        dir: &Path,
        base_offset: i64,
        log: LogFile,
        config: &LogConfig,
    ) -> Segment {
        let offset_index = OffsetIndex::rebuilt(
            &dir.join(segment_file_name(base_offset, "index")),
            config.segment_index_size_bytes,
        );
        let time_index = TimeIndex::rebuilt(
            &dir.join(segment_file_name(base_offset, "timeindex")),
            config.segment_index_size_bytes,
        );
        Segment {
            base_offset,
            next_offset: base_offset,
            log,
            offset_index,
            time_index,
            max_timestamp_ms: NO_TIMESTAMP,
            max_timestamp_batch_base_offset: base_offset,
            bytes_since_index_entry: 0,
            index_interval_bytes: u64::from(config.index_interval_bytes),
            rolling_base_ms: None,
        }
    }

    /// Walks the whole file from position 0, indexing each valid batch; truncates at the first
    /// invalid one.
    fn scan_and_index(&mut self, offset_limit: Option<i64>) -> Result<ScanOutcome> {
        // Only the last segment has no limit from a next one, and only it is ever appended to.
        let is_active = offset_limit.is_none();
        let relative_limit = self.base_offset.saturating_add(i64::from(u32::MAX));
        let offset_limit = offset_limit.map_or(relative_limit, |l| l.min(relative_limit));
        let mut reader = ChunkReader::default();
        let file_len_bytes = self.log.len_bytes();
        let mut position = 0u64;
        let mut outcome = ScanOutcome {
            truncated_because: None,
            epochs: Vec::new(),
        };
        while position < file_len_bytes {
            let checked = check_batch_at(
                &mut reader,
                &self.log,
                position,
                self.next_offset,
                offset_limit,
            )?;
            let header = match checked {
                Ok(header) => header,
                Err(reason) => {
                    outcome.truncated_because = Some(reason);
                    break;
                }
            };
            let newer_epoch = match outcome.epochs.last() {
                None => true,
                Some((epoch, _)) => *epoch < header.partition_leader_epoch,
            };
            if newer_epoch {
                outcome
                    .epochs
                    .push((header.partition_leader_epoch, header.base_offset));
            }
            self.index_batch(position, &header)?;
            position += header.size_bytes() as u64;
        }
        // Zeros after the last batch of the active segment are what a crash can leave there
        // (a file system that had extended the file but not yet written the data, as ext4 can
        // after a power cut), not damage; in a closed segment they count as damage.
        if outcome.truncated_because.is_some()
            && is_active
            && is_zeros(&mut reader, &self.log, position)?
        {
            outcome.truncated_because = None;
            tracing::info!(
                path = %self.log.path().display(),
                position,
                zero_tail_bytes = file_len_bytes - position,
                "cutting the zeros after the last batch of the active segment"
            );
            self.log.truncate(position)?;
        }
        if let Some(reason) = &outcome.truncated_because {
            tracing::warn!(
                path = %self.log.path().display(),
                position,
                file_len_bytes,
                reason = %reason,
                "truncating segment at the first invalid batch"
            );
            self.log.truncate(position)?;
        }
        debug_assert_eq!(position, self.log.len_bytes());
        Ok(outcome)
    }

    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch of the segment.
    pub(crate) fn next_offset(&self) -> i64 {
        self.next_offset
    }

    pub(crate) fn size_bytes(&self) -> u64 {
        self.log.len_bytes()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.log.len_bytes() == 0
    }

    /// Largest batch `maxTimestamp` in the segment ([`NO_TIMESTAMP`] if none).
    pub(crate) fn max_timestamp_ms(&self) -> i64 {
        self.max_timestamp_ms
    }

    /// Base offset of the batch holding the largest timestamp.
    pub(crate) fn max_timestamp_batch_base_offset(&self) -> i64 {
        self.max_timestamp_batch_base_offset
    }

    pub(crate) fn rolling_base_ms(&self) -> Option<i64> {
        self.rolling_base_ms
    }

    /// Whether an index is full (the segment must roll).
    pub(crate) fn indexes_full(&self) -> bool {
        self.offset_index.is_full() || self.time_index.is_full()
    }

    pub(crate) fn set_config(&mut self, config: &LogConfig) {
        self.index_interval_bytes = u64::from(config.index_interval_bytes);
        self.offset_index
            .set_capacity(config.segment_index_size_bytes);
        self.time_index
            .set_capacity(config.segment_index_size_bytes);
    }

    fn relative(&self, offset: i64) -> u32 {
        debug_assert!(
            offset >= self.base_offset && offset - self.base_offset <= i64::from(u32::MAX)
        );
        (offset - self.base_offset) as u32
    }

    /// Records one batch written at `position`: indexes and timestamps.
    fn index_batch(&mut self, position: u64, header: &BatchHeader) -> Result<()> {
        debug_assert!(
            header.base_offset >= self.next_offset,
            "offsets must increase (compaction may leave gaps)"
        );
        if header.max_timestamp > self.max_timestamp_ms {
            self.max_timestamp_ms = header.max_timestamp;
            self.max_timestamp_batch_base_offset = header.base_offset;
        }
        if self.bytes_since_index_entry >= self.index_interval_bytes {
            self.offset_index.append(OffsetEntry {
                relative_offset: self.relative(header.base_offset),
                position: position as u32,
            })?;
            self.append_time_entry_if_grown()?;
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += header.size_bytes() as u64;
        self.next_offset = header.next_offset();
        Ok(())
    }

    fn append_time_entry_if_grown(&mut self) -> Result<()> {
        let grown = match self.time_index.max_timestamp_ms() {
            None => true,
            Some(last) => self.max_timestamp_ms > last,
        };
        if grown && self.max_timestamp_ms >= 0 {
            self.time_index.append(TimeEntry {
                timestamp_ms: self.max_timestamp_ms,
                relative_offset: self.relative(self.max_timestamp_batch_base_offset),
            })?;
        }
        Ok(())
    }

    /// Whether `size_bytes` more bytes ending at `last_offset` still fit the 32-bit relative
    /// offsets and positions of the indexes.
    pub(crate) fn can_hold(&self, size_bytes: u64, last_offset: i64) -> bool {
        self.log.len_bytes() + size_bytes <= u64::from(u32::MAX)
            && last_offset - self.base_offset <= i64::from(u32::MAX)
    }

    /// Appends a blob of batches whose offsets were already assigned (starting at this
    /// segment's next offset) and indexes it.
    pub(crate) fn append(&mut self, blob: &[u8], now_ms: i64) -> Result<()> {
        let mut position = self.log.len_bytes();
        self.log.append(blob)?;
        if self.rolling_base_ms.is_none() {
            self.rolling_base_ms = Some(now_ms);
        }
        for item in batch::batches(blob) {
            let (header, bytes) = item?;
            self.index_batch(position, &header)?;
            position += bytes.len() as u64;
        }
        Ok(())
    }

    /// Seals the segment before it becomes a closed one: a final time index entry with the
    /// largest timestamp, then fsync.
    pub(crate) fn seal(&mut self) -> Result<()> {
        self.append_time_entry_if_grown()?;
        self.sync()
    }

    /// Closes the segment for appends without an fsync: the last time index entry and every
    /// index entry go to the index files (page cache); [`crate::PendingFlush`] fsyncs them later.
    pub(crate) fn seal_unsynced(&mut self) -> Result<()> {
        self.append_time_entry_if_grown()?;
        self.persist_indexes(false)
    }

    /// The open handle of the log file (for an fsync outside the log's lock).
    pub(crate) fn log_handle(&self) -> Result<Arc<std::fs::File>> {
        Ok(self.log.region(0, 0)?.file().clone())
    }

    /// fsyncs the log file and writes and fsyncs both indexes.
    pub(crate) fn sync(&mut self) -> Result<()> {
        self.log.sync()?;
        self.persist_indexes(true)
    }

    /// Writes index entries the index files lack (no fsync unless `durable`; a no-op when
    /// the files are up to date, and durable already if `durable`). Indexes without a single
    /// entry have no files (an open reads a missing pair as empty): a stale pair of unknown
    /// contents is removed instead. So a new partition, or one that holds less than
    /// `index.interval.bytes` since its last roll, costs two inodes fewer; a sealed segment
    /// with data always has a time index entry, so closed segments keep both files.
    pub(crate) fn persist_indexes(&mut self, durable: bool) -> Result<()> {
        if !self.has_index_entries() {
            self.offset_index.persist_absent()?;
            return self.time_index.persist_absent();
        }
        self.offset_index.persist(durable)?;
        self.time_index.persist(durable)
    }

    fn has_index_entries(&self) -> bool {
        !self.offset_index.entries().is_empty() || !self.time_index.entries().is_empty()
    }

    /// Whether the indexes hold entries but an index file was never written (or its contents
    /// are unknown): the next [`Segment::persist_indexes`] would create or rewrite it. The
    /// broker's flusher does that early, so that a clean shutdown does not create the index
    /// files of thousands of partitions at once.
    pub(crate) fn has_unwritten_index_files(&self) -> bool {
        self.has_index_entries()
            && !(self.offset_index.is_written() && self.time_index.is_written())
    }

    /// Reads the header of the batch at `position`.
    fn header_at(&self, position: u64) -> Result<BatchHeader> {
        let mut buf = [0u8; BATCH_HEADER_SIZE_BYTES];
        let read = self.log.read_at(&mut buf, position)?;
        let header = BatchHeader::parse(&buf[..read]).map_err(|e| {
            StorageError::Corrupt(format!("{} at {position}: {e}", self.log.path().display()))
        })?;
        if header.batch_length < BATCH_LENGTH_MIN
            || position + header.size_bytes() as u64 > self.log.len_bytes()
        {
            return Err(StorageError::Corrupt(format!(
                "{}: bad batch length {} at {position}",
                self.log.path().display(),
                header.batch_length
            )));
        }
        Ok(header)
    }

    /// Finds the batch containing `offset`: its position and header, or `None` if the offset
    /// is at or past the end of the segment.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if offset >= self.next_offset {
            return Ok(None);
        }
        let relative = self.relative(offset.max(self.base_offset));
        let mut position = u64::from(self.offset_index.lookup(relative));
        while position < self.log.len_bytes() {
            let header = self.header_at(position)?;
            if header.last_offset() >= offset {
                return Ok(Some((position, header)));
            }
            position += header.size_bytes() as u64;
        }
        Ok(None)
    }

    /// Position where a search for the first batch with `maxTimestamp >= timestamp_ms` starts
    /// (from the time index; 0 when no entry is below the timestamp).
    pub(crate) fn timestamp_search_start(&self, timestamp_ms: i64) -> Result<u64> {
        let Some(relative) = self.time_index.lookup(timestamp_ms) else {
            return Ok(0);
        };
        let offset = self.base_offset + i64::from(relative);
        Ok(self.find_batch(offset)?.map_or(0, |(position, _)| position))
    }

    /// Iterates batch headers from `position` to the end of the segment.
    pub(crate) fn headers_from(&self, position: u64) -> HeaderWalk<'_> {
        HeaderWalk {
            segment: self,
            position,
        }
    }

    /// Reads `len` bytes at `position` (exactly, or a `Corrupt` error).
    pub(crate) fn read_bytes(&self, position: u64, len: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        let read = self.log.read_at(&mut buf, position)?;
        if read != len {
            return Err(StorageError::Corrupt(format!(
                "{}: short read of {read} of {len} bytes at {position}",
                self.log.path().display()
            )));
        }
        Ok(buf)
    }

    /// Reads whole batches starting at `position` (a batch boundary): at most `max_bytes`
    /// (except that with `min_one_batch` the first batch is always whole), only batches whose
    /// last offset is below `max_offset_exclusive`. Returns the bytes and whether the read
    /// stopped only because it reached the end of the segment.
    pub(crate) fn read_from(
        &self,
        position: u64,
        first: &BatchHeader,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<(Vec<u8>, bool)> {
        if first.last_offset() >= max_offset_exclusive
            || (first.size_bytes() > max_bytes && !min_one_batch)
        {
            return Ok((Vec::new(), false));
        }
        let remaining_bytes = (self.log.len_bytes() - position) as usize;
        let want = max_bytes.max(first.size_bytes()).min(remaining_bytes);
        let mut buf = self.read_bytes(position, want)?;
        let mut end = 0usize;
        let mut reached_limit = false;
        for item in batch::batches(&buf) {
            let Ok((header, bytes)) = item else {
                reached_limit = true; // a partial batch at the end of the chunk
                break;
            };
            let fits = end == 0 || end + bytes.len() <= max_bytes;
            if header.last_offset() >= max_offset_exclusive || !fits {
                reached_limit = true;
                break;
            }
            end += bytes.len();
        }
        buf.truncate(end);
        let at_segment_end = !reached_limit && position + end as u64 == self.log.len_bytes();
        Ok((buf, at_segment_end))
    }

    /// Plans a read from `position` (a batch boundary, `first` the batch there) without reading
    /// the bytes: the region ends before the batch holding `max_offset_exclusive` (or at the
    /// end of the file) and spans at most `max_bytes`, except that with `min_one_batch` the
    /// first batch is always whole. Like Kafka, the region may end inside a batch when
    /// `max_bytes` cuts it; clients drop a partial batch at the end of a fetch. Returns the
    /// region (`None` when nothing qualifies) and whether it reaches the end of the segment.
    pub(crate) fn region_from(
        &self,
        position: u64,
        first: &BatchHeader,
        max_bytes: usize,
        max_offset_exclusive: i64,
        min_one_batch: bool,
    ) -> Result<(Option<FileRegion>, bool)> {
        if first.last_offset() >= max_offset_exclusive
            || (first.size_bytes() > max_bytes && !min_one_batch)
        {
            return Ok((None, false));
        }
        let file_end = self.log.len_bytes();
        let end = match self.find_batch(max_offset_exclusive)? {
            Some((stop, _)) => stop,
            None => file_end,
        };
        let budget = if min_one_batch {
            max_bytes.max(first.size_bytes())
        } else {
            max_bytes
        };
        let len_bytes = (end.saturating_sub(position) as usize).min(budget);
        if len_bytes == 0 {
            return Ok((None, false));
        }
        let at_segment_end = end == file_end && position + len_bytes as u64 == file_end;
        Ok((Some(self.log.region(position, len_bytes)?), at_segment_end))
    }

    /// Cuts the segment so that it ends right before `offset`, which must be the base offset
    /// of one of its batches or its next offset; indexes are rebuilt.
    pub(crate) fn truncate_to(&mut self, offset: i64) -> Result<()> {
        if offset == self.next_offset {
            return Ok(());
        }
        let Some((position, header)) = self.find_batch(offset)? else {
            return Err(StorageError::InvalidOffset(format!(
                "{offset} is not in segment {}",
                self.base_offset
            )));
        };
        if header.base_offset != offset {
            return Err(StorageError::InvalidOffset(format!(
                "{offset} is not a batch boundary (batch starts at {})",
                header.base_offset
            )));
        }
        self.log.truncate(position)?;
        self.rebuild_indexes()
    }

    /// Rebuilds both indexes by scanning the log.
    fn rebuild_indexes(&mut self) -> Result<()> {
        self.offset_index.truncate_from(0)?;
        self.time_index.truncate_from(0)?;
        self.next_offset = self.base_offset;
        self.max_timestamp_ms = NO_TIMESTAMP;
        self.max_timestamp_batch_base_offset = self.base_offset;
        self.bytes_since_index_entry = 0;
        let outcome = self.scan_and_index(None)?;
        if outcome.truncated_because.is_some() {
            tracing::warn!(path = %self.log.path().display(), "segment damaged while rebuilding indexes");
        }
        Ok(())
    }

    /// The segment's log file.
    pub(crate) fn log_path(&self) -> &Path {
        self.log.path()
    }

    /// Files of this segment.
    pub(crate) fn paths(&self) -> [PathBuf; 3] {
        [
            self.log.path().to_path_buf(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ]
    }

    /// Renames the segment's files to `<name>.deleted` (skipping any that do not exist) and
    /// returns the new paths, to be unlinked later without the log's lock.
    pub(crate) fn retire(self) -> Result<Vec<PathBuf>> {
        let mut retired = Vec::new();
        for path in self.paths() {
            let mut name = path.clone().into_os_string();
            name.push(crate::log::RETIRED_SUFFIX);
            let target = PathBuf::from(name);
            match std::fs::rename(&path, &target) {
                Ok(()) => retired.push(target),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(crate::StorageError::io(
                        format!("renaming {} for deletion", path.display()),
                        e,
                    ))
                }
            }
        }
        Ok(retired)
    }

    /// Removes the segment's files.
    pub(crate) fn delete(self) -> Result<()> {
        for path in self.paths() {
            remove_file(&path)?;
        }
        Ok(())
    }
}

/// Walks batch headers of a segment; see [`Segment::headers_from`].
pub(crate) struct HeaderWalk<'a> {
    segment: &'a Segment,
    position: u64,
}

impl Iterator for HeaderWalk<'_> {
    type Item = Result<(u64, BatchHeader)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.position >= self.segment.log.len_bytes() {
            return None;
        }
        let position = self.position;
        match self.segment.header_at(position) {
            Ok(header) => {
                self.position += header.size_bytes() as u64;
                Some(Ok((position, header)))
            }
            Err(e) => {
                self.position = u64::MAX;
                Some(Err(e))
            }
        }
    }
}

/// Checks the batch at `position` during recovery. The outer `Result` is an I/O failure; the
/// inner `Err` is the reason the batch is invalid (the log is cut there).
fn check_batch_at(
    reader: &mut ChunkReader,
    file: &LogFile,
    position: u64,
    expected_base_offset: i64,
    offset_limit: i64,
) -> Result<Result<BatchHeader, String>> {
    let file_len_bytes = file.len_bytes();
    let available = file_len_bytes - position;
    if available < BATCH_HEADER_SIZE_BYTES as u64 {
        return Ok(Err(format!("partial batch header of {available} bytes")));
    }
    let header = match BatchHeader::parse(reader.bytes(file, position, BATCH_HEADER_SIZE_BYTES)?) {
        Ok(header) => header,
        Err(e) => return Ok(Err(e.to_string())),
    };
    if header.magic != MAGIC_V2 {
        return Ok(Err(format!("magic {}", header.magic)));
    }
    if header.batch_length < BATCH_LENGTH_MIN || header.size_bytes() as u64 > available {
        return Ok(Err(format!(
            "batch length {} with {available} bytes left",
            header.batch_length
        )));
    }
    // Compacted segments have gaps between batches, so offsets must only increase.
    if header.base_offset < expected_base_offset || header.last_offset_delta < 0 {
        return Ok(Err(format!(
            "batch offsets {}+{} where at least {expected_base_offset} was expected",
            header.base_offset, header.last_offset_delta
        )));
    }
    if header.last_offset() >= offset_limit {
        return Ok(Err(format!(
            "batch offsets {}+{} reach the limit {offset_limit}",
            header.base_offset, header.last_offset_delta
        )));
    }
    let crc = reader.crc_of(file, position, header.size_bytes())?;
    if crc != header.crc {
        return Ok(Err(format!(
            "CRC mismatch at offset {}",
            header.base_offset
        )));
    }
    Ok(Ok(header))
}

/// Whether the file holds only zero bytes from `position` to its end (at most
/// `ZERO_TAIL_CHECK_BYTES_MAX` of them: a longer run is not what a crash leaves).
fn is_zeros(reader: &mut ChunkReader, file: &LogFile, position: u64) -> Result<bool> {
    let end = file.len_bytes();
    if end.saturating_sub(position) > ZERO_TAIL_CHECK_BYTES_MAX {
        return Ok(false);
    }
    let mut at = position;
    while at < end {
        let len = ((end - at) as usize).min(SCAN_CHUNK_BYTES);
        let bytes = reader.bytes(file, at, len)?;
        if bytes.len() < len || bytes.iter().any(|b| *b != 0) {
            return Ok(false);
        }
        at += len as u64;
    }
    Ok(true)
}

/// Longest tail of zeros recovery cuts quietly as a crash's leftover (see [`is_zeros`]): data
/// a file system extended the file for but had not written yet, which is at most what was
/// appended since the last writeback. A longer one is cut too, but reported as damage.
const ZERO_TAIL_CHECK_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Sequential reader over a segment file in large chunks, for recovery scans.
#[derive(Default)]
struct ChunkReader {
    buf: Vec<u8>,
    start: u64,
    len: usize,
}

impl ChunkReader {
    /// `len` bytes at `position` (`len <= SCAN_CHUNK_BYTES`; may be short at end of file).
    fn bytes(&mut self, file: &LogFile, position: u64, len: usize) -> Result<&[u8]> {
        debug_assert!(len <= SCAN_CHUNK_BYTES);
        let end = position + len as u64;
        let buffered = position >= self.start && end <= self.start + self.len as u64;
        if !buffered {
            // No bigger than what is left of the file: thousands of small segments are
            // scanned at start-up, and zeroing 1 MiB for each dominated it.
            let left = file.len_bytes().saturating_sub(position) as usize;
            let want = SCAN_CHUNK_BYTES.min(left).max(len);
            if self.buf.len() < want {
                self.buf.resize(want, 0);
            }
            self.len = file.read_at(&mut self.buf, position)?;
            self.start = position;
        }
        let from = (position - self.start) as usize;
        let to = (from + len).min(self.len);
        Ok(&self.buf[from..to])
    }

    /// CRC-32C over `attributes..end` of the batch of `size_bytes` at `position`.
    fn crc_of(&mut self, file: &LogFile, position: u64, size_bytes: usize) -> Result<u32> {
        let mut crc = 0u32;
        let mut at = position + ATTRIBUTES_AT as u64;
        let end = position + size_bytes as u64;
        while at < end {
            let len = ((end - at) as usize).min(SCAN_CHUNK_BYTES);
            let bytes = self.bytes(file, at, len)?;
            if bytes.is_empty() {
                break;
            }
            crc = crc32c::crc32c_append(crc, bytes);
            at += bytes.len() as u64;
        }
        Ok(crc)
    }
}

//! Per-partition producer state for idempotent producers (Kafka's `ProducerStateManager`).
//!
//! For each producer id the partition keeps the producer epoch, the metadata of the last
//! [`PRODUCER_BATCHES_MAX`] appended batches (first/last sequence, first/last offset, max
//! timestamp) and the time of its last append. A produced batch is checked against it before it
//! is appended ([`ProducerStateManager::check`]): a batch matching one of the retained batches
//! (same epoch, same sequence range) is a duplicate and is answered with its original offsets;
//! a sequence gap, an older epoch or an unknown producer continuing mid-sequence is rejected.
//! Appended batches update the state ([`ProducerStateManager::record`]).
//!
//! The state is kept in snapshot files next to the segments, `<offset>.snapshot` (20 digits, the
//! log end offset the snapshot reflects), written when a segment rolls and on close; the newest
//! two are kept. On open the newest readable snapshot at or below the log end offset is loaded
//! and the batches after it are replayed (batch headers only), so start-up never rescans a whole
//! log. A damaged snapshot is deleted and an older one (or an empty state) is used instead.
//!
//! Transactions will add to [`ProducerEntry::current_txn_first_offset`] (set today when a
//! transactional batch opens a transaction; control batches will clear it) and a coordinator
//! epoch, without changing how sequences are checked.
//!
//! Snapshot format (big endian): `b"STROMPS1"`, CRC-32C (u32) of everything after it, the
//! snapshot offset (i64), the producer count (u32), then per producer: id (i64), epoch (i16),
//! last timestamp (i64), first offset of the open transaction (i64, -1 if none), batch count
//! (u8, at most 5), and per batch: first sequence (i32), last sequence (i32), first offset
//! (i64), last offset (i64), max timestamp (i64).

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};

use crate::batch::{increment_sequence, BatchHeader};
use crate::error::{Result, StorageError};
use crate::io::{remove_file, write_atomically_with};

/// Batches remembered per producer for duplicate detection (Kafka's
/// `NUM_BATCHES_TO_RETAIN`; clients keep at most 5 requests in flight).
pub const PRODUCER_BATCHES_MAX: usize = 5;
/// Snapshot files kept in a partition directory.
pub const PRODUCER_SNAPSHOTS_KEPT: usize = 2;
/// File extension of producer state snapshots.
pub const SNAPSHOT_EXTENSION: &str = "snapshot";

const SNAPSHOT_MAGIC: &[u8; 8] = b"STROMPS1";
const SNAPSHOT_ENTRY_BYTES_MIN: usize = 8 + 2 + 8 + 8 + 1;
const SNAPSHOT_BATCH_BYTES: usize = 4 + 4 + 8 + 8 + 8;

/// What is remembered of one appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetadata {
    /// Sequence of the first record.
    pub first_sequence: i32,
    /// Sequence of the last record.
    pub last_sequence: i32,
    /// Offset of the first record.
    pub first_offset: i64,
    /// Offset of the last record.
    pub last_offset: i64,
    /// The batch's `maxTimestamp`.
    pub max_timestamp_ms: i64,
}

/// The state of one producer id in one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    /// The producer id.
    pub producer_id: i64,
    /// The current producer epoch.
    pub producer_epoch: i16,
    /// The last appended batches of the current epoch, oldest first, at most
    /// [`PRODUCER_BATCHES_MAX`].
    pub batches: VecDeque<BatchMetadata>,
    /// `maxTimestamp` of the last appended batch; expiry is measured from it (as in Kafka).
    pub last_timestamp_ms: i64,
    /// First offset of the producer's open transaction, if any (for the last stable offset,
    /// once transactions exist).
    pub current_txn_first_offset: Option<i64>,
}

impl ProducerEntry {
    fn new(producer_id: i64, producer_epoch: i16) -> ProducerEntry {
        ProducerEntry {
            producer_id,
            producer_epoch,
            batches: VecDeque::with_capacity(PRODUCER_BATCHES_MAX),
            last_timestamp_ms: -1,
            current_txn_first_offset: None,
        }
    }

    /// The last appended batch.
    pub fn last_batch(&self) -> Option<&BatchMetadata> {
        self.batches.back()
    }

    fn duplicate_of(&self, header: &BatchHeader) -> Option<&BatchMetadata> {
        if header.producer_epoch != self.producer_epoch {
            return None;
        }
        let last_sequence = header.last_sequence();
        self.batches
            .iter()
            .find(|b| b.first_sequence == header.base_sequence && b.last_sequence == last_sequence)
    }

    /// Applies an appended batch (whatever the checks would say: replication and recovery
    /// replay use this too). A new epoch forgets the batches of the old one.
    fn apply(&mut self, header: &BatchHeader) {
        if header.producer_epoch != self.producer_epoch {
            self.producer_epoch = header.producer_epoch;
            self.batches.clear();
        }
        if self.batches.len() >= PRODUCER_BATCHES_MAX {
            self.batches.pop_front();
        }
        self.batches.push_back(BatchMetadata {
            first_sequence: header.base_sequence,
            last_sequence: header.last_sequence(),
            first_offset: header.base_offset,
            last_offset: header.last_offset(),
            max_timestamp_ms: header.max_timestamp,
        });
        self.last_timestamp_ms = header.max_timestamp;
        if header.is_transactional() && self.current_txn_first_offset.is_none() {
            self.current_txn_first_offset = Some(header.base_offset);
        }
    }
}

/// The outcome of checking a batch against the producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The batch is new and in sequence: append it.
    Append,
    /// The batch was appended before: answer with its original offsets, append nothing.
    Duplicate {
        /// Offset of its first record.
        base_offset: i64,
        /// Offset of its last record.
        last_offset: i64,
        /// Its `maxTimestamp` (the append time with `LogAppendTime`).
        max_timestamp_ms: i64,
    },
}

/// Why an idempotent batch was rejected. Each maps to one Kafka error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProducerStateError {
    /// A gap (or overlap that is not an exact duplicate) in the sequence, or a new epoch not
    /// starting at sequence 0 (Kafka `OUT_OF_ORDER_SEQUENCE_NUMBER`).
    #[error("out of order sequence for producer {producer_id} epoch {producer_epoch}: expected {expected_sequence}, received {received_sequence}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        producer_epoch: i16,
        /// The sequence the partition expected next.
        expected_sequence: i32,
        /// The batch's base sequence.
        received_sequence: i32,
    },
    /// The batch's epoch is older than the producer's current epoch (Kafka
    /// `INVALID_PRODUCER_EPOCH`).
    #[error("producer {producer_id} epoch {received_epoch} is older than the current epoch {current_epoch}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// The producer's current epoch in this partition.
        current_epoch: i16,
        /// The batch's epoch.
        received_epoch: i16,
    },
    /// The partition has no state for the producer (never seen, or expired) and the batch does
    /// not start at sequence 0 (Kafka `UNKNOWN_PRODUCER_ID`).
    #[error("unknown producer {producer_id} with sequence {received_sequence}")]
    UnknownProducerId {
        /// The producer id.
        producer_id: i64,
        /// The batch's base sequence.
        received_sequence: i32,
    },
    /// A batch with a producer id but a negative epoch or sequence (Kafka `INVALID_RECORD`).
    #[error("invalid idempotent batch from producer {producer_id}: epoch {producer_epoch}, base sequence {base_sequence}")]
    InvalidBatch {
        /// The producer id.
        producer_id: i64,
        /// The batch's epoch.
        producer_epoch: i16,
        /// The batch's base sequence.
        base_sequence: i32,
    },
}

/// Kafka's `inSequence`: `next` follows `last` (wrapping from `i32::MAX` to 0).
fn in_sequence(last: i32, next: i32) -> bool {
    next == increment_sequence(last, 1)
}

/// Checks `header` (an idempotent batch: `producer_id >= 0`) against `entry`, with Kafka's rules
/// for client appends: duplicates first (same epoch and exact sequence range as one of the
/// retained batches), then the epoch (older: rejected; newer: must start at sequence 0), then
/// the sequence (must follow the last batch; an unknown producer must start at 0).
pub fn check_batch(
    entry: Option<&ProducerEntry>,
    header: &BatchHeader,
) -> Result<Verdict, ProducerStateError> {
    if header.producer_epoch < 0 || header.base_sequence < 0 {
        return Err(ProducerStateError::InvalidBatch {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            base_sequence: header.base_sequence,
        });
    }
    let Some(entry) = entry else {
        if header.base_sequence != 0 {
            return Err(ProducerStateError::UnknownProducerId {
                producer_id: header.producer_id,
                received_sequence: header.base_sequence,
            });
        }
        return Ok(Verdict::Append);
    };
    if let Some(duplicate) = entry.duplicate_of(header) {
        return Ok(Verdict::Duplicate {
            base_offset: duplicate.first_offset,
            last_offset: duplicate.last_offset,
            max_timestamp_ms: duplicate.max_timestamp_ms,
        });
    }
    if header.producer_epoch < entry.producer_epoch {
        return Err(ProducerStateError::InvalidProducerEpoch {
            producer_id: header.producer_id,
            current_epoch: entry.producer_epoch,
            received_epoch: header.producer_epoch,
        });
    }
    let last_sequence = if header.producer_epoch > entry.producer_epoch {
        -1
    } else {
        entry.last_batch().map_or(-1, |b| b.last_sequence)
    };
    if !in_sequence(last_sequence, header.base_sequence) {
        return Err(ProducerStateError::OutOfOrderSequence {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            expected_sequence: increment_sequence(last_sequence, 1),
            received_sequence: header.base_sequence,
        });
    }
    Ok(Verdict::Append)
}

/// The producer states of one partition and their snapshot files.
#[derive(Debug)]
pub struct ProducerStateManager {
    dir: PathBuf,
    producers: HashMap<i64, ProducerEntry>,
}

impl ProducerStateManager {
    /// An empty state for the partition in `dir` (snapshots are read and written there).
    pub fn new(dir: &Path) -> ProducerStateManager {
        ProducerStateManager {
            dir: dir.to_path_buf(),
            producers: HashMap::new(),
        }
    }

    /// The state of `producer_id`, if known.
    pub fn entry(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every known producer, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &ProducerEntry> {
        self.producers.values()
    }

    /// Number of known producers.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// Whether no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// Checks an idempotent batch without changing anything; see [`check_batch`].
    pub fn check(&self, header: &BatchHeader) -> Result<Verdict, ProducerStateError> {
        check_batch(self.producers.get(&header.producer_id), header)
    }

    /// Checks an idempotent batch whose offsets are assigned and, when the verdict is
    /// [`Verdict::Append`], records it.
    pub fn check_and_record(
        &mut self,
        header: &BatchHeader,
    ) -> Result<Verdict, ProducerStateError> {
        let verdict = self.check(header)?;
        if verdict == Verdict::Append {
            self.record(header);
        }
        Ok(verdict)
    }

    /// Records an appended batch without checks (replication, recovery replay). Batches without
    /// a producer id are ignored.
    pub fn record(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 {
            return;
        }
        self.producers
            .entry(header.producer_id)
            .or_insert_with(|| ProducerEntry::new(header.producer_id, header.producer_epoch))
            .apply(header);
    }

    /// Starts checking the batches of one append: each batch is checked against the state as
    /// updated by the earlier batches of the same append, and nothing changes in `self`.
    pub fn begin_append(&self) -> ProducerAppend<'_> {
        ProducerAppend {
            state: self,
            updated: HashMap::new(),
        }
    }

    /// Drops producers whose last append (batch `maxTimestamp`) is at least `expiration_ms`
    /// old and that have no open transaction (Kafka's `producer.id.expiration.ms`). Returns
    /// how many were dropped.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(entry.last_timestamp_ms) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Forgets every producer.
    pub fn clear(&mut self) {
        self.producers.clear();
    }

    /// Writes `<offset>.snapshot` atomically (the state as of log end offset `offset`) and
    /// deletes all but the newest [`PRODUCER_SNAPSHOTS_KEPT`] snapshots.
    pub fn take_snapshot(&self, offset: i64) -> Result<()> {
        self.take_snapshot_with(offset, true)
    }

    /// [`ProducerStateManager::take_snapshot`], fsynced only when `durable` (a snapshot lost
    /// to a power cut is replaced by an older one and a longer replay).
    pub fn take_snapshot_with(&self, offset: i64, durable: bool) -> Result<()> {
        let bytes = encode_snapshot(offset, &self.producers);
        write_atomically_with(&snapshot_path(&self.dir, offset), &bytes, durable)?;
        let offsets = snapshot_offsets(&self.dir)?;
        let excess = offsets.len().saturating_sub(PRODUCER_SNAPSHOTS_KEPT);
        for old in &offsets[..excess] {
            remove_file(&snapshot_path(&self.dir, *old))?;
        }
        Ok(())
    }

    /// Deletes snapshots taken above `offset` (after truncation they describe batches that
    /// are gone).
    pub fn delete_snapshots_above(&self, offset: i64) -> Result<()> {
        for found in snapshot_offsets(&self.dir)? {
            if found > offset {
                remove_file(&snapshot_path(&self.dir, found))?;
            }
        }
        Ok(())
    }

    /// Replaces the state with the newest readable snapshot at or below `max_offset` and
    /// returns its offset (`None`, with an empty state, if there is none). Snapshots above
    /// `max_offset` and damaged ones are deleted.
    pub fn load_latest_snapshot(&mut self, max_offset: i64) -> Result<Option<i64>> {
        let offsets = snapshot_offsets(&self.dir)?;
        self.load_latest_snapshot_among(max_offset, offsets)
    }

    /// [`ProducerStateManager::load_latest_snapshot`] given the snapshot offsets in the
    /// directory (ascending), when the caller just listed it.
    pub fn load_latest_snapshot_among(
        &mut self,
        max_offset: i64,
        offsets: Vec<i64>,
    ) -> Result<Option<i64>> {
        self.producers.clear();
        for offset in offsets.into_iter().rev() {
            let path = snapshot_path(&self.dir, offset);
            if offset > max_offset {
                tracing::info!(path = %path.display(), max_offset, "deleting producer snapshot above the log end");
                remove_file(&path)?;
                continue;
            }
            let bytes = match std::fs::read(&path) {
                Ok(bytes) => bytes,
                Err(e) => return Err(StorageError::io(format!("reading {}", path.display()), e)),
            };
            match decode_snapshot(&bytes) {
                Some((stored_offset, producers)) if stored_offset == offset => {
                    self.producers = producers;
                    return Ok(Some(offset));
                }
                _ => {
                    tracing::warn!(path = %path.display(), "damaged producer state snapshot; deleting it");
                    remove_file(&path)?;
                }
            }
        }
        Ok(None)
    }
}

/// The producer state changes of one append in progress; see
/// [`ProducerStateManager::begin_append`].
#[derive(Debug)]
pub struct ProducerAppend<'a> {
    state: &'a ProducerStateManager,
    updated: HashMap<i64, ProducerEntry>,
}

impl ProducerAppend<'_> {
    /// Checks an idempotent batch (offsets assigned) against the state including the earlier
    /// batches of this append, and stages it when the verdict is [`Verdict::Append`].
    pub fn check_and_record(
        &mut self,
        header: &BatchHeader,
    ) -> Result<Verdict, ProducerStateError> {
        let pid = header.producer_id;
        let current = self.updated.get(&pid).or_else(|| self.state.entry(pid));
        let verdict = check_batch(current, header)?;
        if verdict == Verdict::Append {
            let entry = match self.updated.remove(&pid) {
                Some(entry) => entry,
                None => self
                    .state
                    .entry(pid)
                    .cloned()
                    .unwrap_or_else(|| ProducerEntry::new(pid, header.producer_epoch)),
            };
            let mut entry = entry;
            entry.apply(header);
            self.updated.insert(pid, entry);
        }
        Ok(verdict)
    }
}

/// Path of the snapshot for `offset`.
pub fn snapshot_path(dir: &Path, offset: i64) -> PathBuf {
    dir.join(format!("{offset:020}.{SNAPSHOT_EXTENSION}"))
}

/// Offsets of the snapshot files in `dir`, ascending.
pub fn snapshot_offsets(dir: &Path) -> Result<Vec<i64>> {
    let entries = std::fs::read_dir(dir)
        .map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
    let mut offsets = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(stem) = name.strip_suffix(".snapshot") else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(offset) = stem.parse() {
                offsets.push(offset);
            }
        }
    }
    offsets.sort_unstable();
    Ok(offsets)
}

fn encode_snapshot(offset: i64, producers: &HashMap<i64, ProducerEntry>) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&offset.to_be_bytes());
    body.extend_from_slice(&(producers.len() as u32).to_be_bytes());
    let mut ids: Vec<&i64> = producers.keys().collect();
    ids.sort_unstable();
    for entry in ids.into_iter().filter_map(|id| producers.get(id)) {
        body.extend_from_slice(&entry.producer_id.to_be_bytes());
        body.extend_from_slice(&entry.producer_epoch.to_be_bytes());
        body.extend_from_slice(&entry.last_timestamp_ms.to_be_bytes());
        body.extend_from_slice(&entry.current_txn_first_offset.unwrap_or(-1).to_be_bytes());
        body.push(entry.batches.len() as u8);
        for batch in &entry.batches {
            body.extend_from_slice(&batch.first_sequence.to_be_bytes());
            body.extend_from_slice(&batch.last_sequence.to_be_bytes());
            body.extend_from_slice(&batch.first_offset.to_be_bytes());
            body.extend_from_slice(&batch.last_offset.to_be_bytes());
            body.extend_from_slice(&batch.max_timestamp_ms.to_be_bytes());
        }
    }
    let mut out = Vec::with_capacity(SNAPSHOT_MAGIC.len() + 4 + body.len());
    out.extend_from_slice(SNAPSHOT_MAGIC);
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// A bounds-checked reader over snapshot bytes.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.bytes.split_first_chunk::<N>()?;
        self.bytes = rest;
        Some(*head)
    }

    fn i64(&mut self) -> Option<i64> {
        self.take::<8>().map(i64::from_be_bytes)
    }

    fn i32(&mut self) -> Option<i32> {
        self.take::<4>().map(i32::from_be_bytes)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take::<2>().map(i16::from_be_bytes)
    }
}

fn decode_snapshot(bytes: &[u8]) -> Option<(i64, HashMap<i64, ProducerEntry>)> {
    let rest = bytes.strip_prefix(SNAPSHOT_MAGIC)?;
    let (crc, body) = rest.split_first_chunk::<4>()?;
    if u32::from_be_bytes(*crc) != crc32c::crc32c(body) {
        return None;
    }
    let mut cursor = Cursor { bytes: body };
    let offset = cursor.i64()?;
    let count = cursor.i32()? as u32 as usize;
    if count > cursor.bytes.len() / SNAPSHOT_ENTRY_BYTES_MIN {
        return None;
    }
    let mut producers = HashMap::with_capacity(count);
    for _ in 0..count {
        let producer_id = cursor.i64()?;
        let producer_epoch = cursor.i16()?;
        let mut entry = ProducerEntry::new(producer_id, producer_epoch);
        entry.last_timestamp_ms = cursor.i64()?;
        let txn_first_offset = cursor.i64()?;
        entry.current_txn_first_offset = (txn_first_offset >= 0).then_some(txn_first_offset);
        let batch_count = usize::from(cursor.take::<1>()?[0]);
        if batch_count > PRODUCER_BATCHES_MAX
            || batch_count * SNAPSHOT_BATCH_BYTES > cursor.bytes.len()
        {
            return None;
        }
        for _ in 0..batch_count {
            entry.batches.push_back(BatchMetadata {
                first_sequence: cursor.i32()?,
                last_sequence: cursor.i32()?,
                first_offset: cursor.i64()?,
                last_offset: cursor.i64()?,
                max_timestamp_ms: cursor.i64()?,
            });
        }
        producers.insert(producer_id, entry);
    }
    cursor.bytes.is_empty().then_some((offset, producers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::producer_batch;

    fn header(
        pid: i64,
        epoch: i16,
        base_sequence: i32,
        count: usize,
        base_offset: i64,
    ) -> BatchHeader {
        let mut header =
            BatchHeader::parse(&producer_batch(pid, epoch, base_sequence, count, 1000)).unwrap();
        header.base_offset = base_offset;
        header
    }

    #[test]
    fn sequences_epochs_and_duplicates_follow_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        // Unknown producer: must start at 0.
        assert_eq!(
            state.check(&header(7, 0, 3, 1, 0)),
            Err(ProducerStateError::UnknownProducerId {
                producer_id: 7,
                received_sequence: 3
            })
        );
        assert_eq!(
            state.check_and_record(&header(7, 0, 0, 2, 0)),
            Ok(Verdict::Append)
        );
        assert_eq!(
            state.check_and_record(&header(7, 0, 2, 3, 2)),
            Ok(Verdict::Append)
        );
        // Exact replays are duplicates with the original offsets.
        assert_eq!(
            state.check_and_record(&header(7, 0, 0, 2, 99)),
            Ok(Verdict::Duplicate {
                base_offset: 0,
                last_offset: 1,
                max_timestamp_ms: 1000
            })
        );
        assert_eq!(
            state.check(&header(7, 0, 2, 3, 99)),
            Ok(Verdict::Duplicate {
                base_offset: 2,
                last_offset: 4,
                max_timestamp_ms: 1000
            })
        );
        // A gap, an overlap that is not exact, and the next one.
        assert!(matches!(
            state.check(&header(7, 0, 6, 1, 5)),
            Err(ProducerStateError::OutOfOrderSequence {
                expected_sequence: 5,
                received_sequence: 6,
                ..
            })
        ));
        assert!(matches!(
            state.check(&header(7, 0, 3, 2, 5)),
            Err(ProducerStateError::OutOfOrderSequence { .. })
        ));
        assert_eq!(state.check(&header(7, 0, 5, 1, 5)), Ok(Verdict::Append));
        // A new epoch must start at 0 and fences the old one.
        assert!(matches!(
            state.check(&header(7, 1, 5, 1, 5)),
            Err(ProducerStateError::OutOfOrderSequence { .. })
        ));
        assert_eq!(
            state.check_and_record(&header(7, 1, 0, 1, 5)),
            Ok(Verdict::Append)
        );
        assert_eq!(state.entry(7).unwrap().batches.len(), 1);
        assert_eq!(
            state.check(&header(7, 0, 5, 1, 6)),
            Err(ProducerStateError::InvalidProducerEpoch {
                producer_id: 7,
                current_epoch: 1,
                received_epoch: 0
            })
        );
        // Old-epoch replays are not duplicates any more: they are fenced.
        assert!(matches!(
            state.check(&header(7, 0, 0, 2, 6)),
            Err(ProducerStateError::InvalidProducerEpoch { .. })
        ));
        // Negative sequence with a producer id is invalid.
        assert!(matches!(
            state.check(&header(8, 0, -1, 1, 6)),
            Err(ProducerStateError::InvalidBatch { .. })
        ));
    }

    #[test]
    fn only_the_last_five_batches_are_remembered_and_sequences_wrap() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        for i in 0..7 {
            assert_eq!(
                state.check_and_record(&header(1, 0, i, 1, i64::from(i))),
                Ok(Verdict::Append)
            );
        }
        assert_eq!(state.entry(1).unwrap().batches.len(), PRODUCER_BATCHES_MAX);
        assert!(matches!(
            state.check(&header(1, 0, 2, 1, 7)),
            Ok(Verdict::Duplicate { base_offset: 2, .. })
        ));
        assert!(matches!(
            state.check(&header(1, 0, 1, 1, 7)),
            Err(ProducerStateError::OutOfOrderSequence { .. })
        ));
        // Wrap-around past i32::MAX.
        state.record(&header(2, 0, i32::MAX - 1, 3, 100));
        assert_eq!(
            state.entry(2).unwrap().last_batch().unwrap().last_sequence,
            0
        );
        assert_eq!(state.check(&header(2, 0, 1, 1, 103)), Ok(Verdict::Append));
    }

    #[test]
    fn staged_appends_see_their_own_batches_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        state.record(&header(1, 0, 0, 1, 0));
        let mut append = state.begin_append();
        assert_eq!(
            append.check_and_record(&header(1, 0, 1, 1, 1)),
            Ok(Verdict::Append)
        );
        assert_eq!(
            append.check_and_record(&header(1, 0, 2, 1, 2)),
            Ok(Verdict::Append)
        );
        assert!(append
            .check_and_record(&header(1, 0, 2, 1, 3))
            .is_ok_and(|v| v != Verdict::Append));
        assert!(append.check_and_record(&header(1, 0, 9, 1, 3)).is_err());
        assert_eq!(state.entry(1).unwrap().batches.len(), 1);
    }

    #[test]
    fn expiry_drops_idle_producers() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        state.record(&header(1, 0, 0, 1, 0));
        assert_eq!(state.remove_expired(1000 + 99, 100), 0);
        assert_eq!(state.remove_expired(1000 + 100, 100), 1);
        assert!(state.is_empty());
    }

    #[test]
    fn snapshots_round_trip_keep_two_and_skip_damage() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        for (i, pid) in [3i64, 1, 2].into_iter().enumerate() {
            state.record(&header(pid, 2, 0, 3, i as i64 * 10));
        }
        let mut transactional = header(4, 0, 0, 1, 50);
        transactional.attributes |= strom_protocol::record_batch::TRANSACTIONAL_BIT;
        state.record(&transactional);
        state.take_snapshot(10).unwrap();
        state.take_snapshot(20).unwrap();
        state.take_snapshot(30).unwrap();
        assert_eq!(snapshot_offsets(dir.path()).unwrap(), [20, 30]);
        let mut loaded = ProducerStateManager::new(dir.path());
        assert_eq!(loaded.load_latest_snapshot(i64::MAX).unwrap(), Some(30));
        assert_eq!(loaded.producers, state.producers);
        assert_eq!(loaded.entry(4).unwrap().current_txn_first_offset, Some(50));
        // Damage the newest: the older one is used and the damaged one deleted.
        let path = snapshot_path(dir.path(), 30);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(loaded.load_latest_snapshot(i64::MAX).unwrap(), Some(20));
        assert!(!path.exists());
        // Above the limit: deleted.
        assert_eq!(loaded.load_latest_snapshot(19).unwrap(), None);
        assert!(loaded.is_empty());
        assert!(snapshot_offsets(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn decoding_never_panics_on_cut_or_flipped_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = ProducerStateManager::new(dir.path());
        state.record(&header(1, 0, 0, 2, 0));
        state.record(&header(2, 0, 0, 2, 2));
        let bytes = encode_snapshot(4, &state.producers);
        assert!(decode_snapshot(&bytes).is_some());
        for cut in 0..bytes.len() {
            assert!(decode_snapshot(&bytes[..cut]).is_none());
        }
        for at in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[at] ^= 0x40;
            assert!(decode_snapshot(&flipped).is_none(), "flip at {at}");
        }
    }
}

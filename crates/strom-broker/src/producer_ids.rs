//! Producer id allocation for idempotent producers: ids are handed out from blocks whose end
//! is made durable before any id in the block is used, so an id is never reused across
//! restarts (a crash skips the rest of a block). In a cluster the blocks will come from the
//! metadata quorum (KRaft's AllocateProducerIds); only this type changes.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;

/// Ids reserved per durable write.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

const FILE_NAME: &str = "producer-id-block";

/// Most producer ids whose current epoch is remembered; past it the oldest half is forgotten
/// (a forgotten id can still bump, as after a restart).
pub const PRODUCER_EPOCHS_REMEMBERED_MAX: usize = 1_000_000;

/// Why an epoch bump was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BumpError {
    /// The presented epoch is not the producer's current one (another client holds the id).
    #[error("producer {producer_id} is at epoch {current_epoch}, not {presented_epoch}")]
    StaleEpoch {
        /// Producer id.
        producer_id: i64,
        /// Epoch the client presented.
        presented_epoch: i16,
        /// Epoch the broker handed out last.
        current_epoch: i16,
    },
}

/// Hands out producer ids that are unique for the life of the data directory, and bumps the
/// epoch of ids it handed out.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    /// (next id to hand out, end of the durable block).
    block: Mutex<(i64, i64)>,
    /// Current epoch of producer ids handed out or bumped since start.
    epochs: Mutex<std::collections::HashMap<i64, i16>>,
}

impl ProducerIdAllocator {
    /// Opens the allocator in `data_dir`; the first id handed out follows every block ever
    /// reserved there.
    pub fn open(data_dir: &Path) -> std::io::Result<ProducerIdAllocator> {
        let path = data_dir.join(FILE_NAME);
        let reserved_end = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<i64>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold a number", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(ProducerIdAllocator {
            path,
            block: Mutex::new((reserved_end, reserved_end)),
            epochs: Mutex::new(std::collections::HashMap::new()),
        })
    }

    /// A new producer id.
    pub fn allocate(&self) -> std::io::Result<i64> {
        let mut block = self.block.lock();
        if block.0 >= block.1 {
            let end = block.1 + PRODUCER_ID_BLOCK_SIZE;
            self.persist(end)?;
            block.1 = end;
        }
        let id = block.0;
        block.0 += 1;
        self.remember(id, 0);
        Ok(id)
    }

    /// Whether `producer_id` was ever handed out from this data directory.
    pub fn was_issued(&self, producer_id: i64) -> bool {
        producer_id >= 0 && producer_id < self.block.lock().0
    }

    /// KIP-360: the next epoch of an id this broker handed out, when the client presents the
    /// current one. `Ok(None)` when the id is not ours (the caller hands out a new id) or its
    /// epoch is exhausted.
    pub fn bump(&self, producer_id: i64, presented_epoch: i16) -> Result<Option<i16>, BumpError> {
        if !self.was_issued(producer_id) || presented_epoch >= i16::MAX - 1 {
            return Ok(None);
        }
        let mut epochs = self.epochs.lock();
        if let Some(current) = epochs.get(&producer_id) {
            if *current != presented_epoch {
                return Err(BumpError::StaleEpoch {
                    producer_id,
                    presented_epoch,
                    current_epoch: *current,
                });
            }
        }
        let next = presented_epoch + 1;
        epochs.insert(producer_id, next);
        Ok(Some(next))
    }

    fn remember(&self, producer_id: i64, epoch: i16) {
        let mut epochs = self.epochs.lock();
        if epochs.len() >= PRODUCER_EPOCHS_REMEMBERED_MAX {
            let cutoff = producer_id - (PRODUCER_EPOCHS_REMEMBERED_MAX / 2) as i64;
            epochs.retain(|id, _| *id >= cutoff);
        }
        epochs.insert(producer_id, epoch);
    }

    fn persist(&self, end: i64) -> std::io::Result<()> {
        let tmp = self.path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(format!("{end}\n").as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_never_reused_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = ProducerIdAllocator::open(dir.path()).unwrap();
        let a: Vec<i64> = (0..3).map(|_| first.allocate().unwrap()).collect();
        assert_eq!(a, vec![0, 1, 2]);
        drop(first); // as after a crash: the rest of the block is skipped
        let second = ProducerIdAllocator::open(dir.path()).unwrap();
        let b = second.allocate().unwrap();
        assert_eq!(b, PRODUCER_ID_BLOCK_SIZE);
        for _ in 0..PRODUCER_ID_BLOCK_SIZE {
            second.allocate().unwrap();
        }
        let third = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(third.allocate().unwrap(), 3 * PRODUCER_ID_BLOCK_SIZE);
    }

    #[test]
    fn bumps_only_ids_it_issued_at_their_current_epoch() {
        let dir = tempfile::tempdir().unwrap();
        let ids = ProducerIdAllocator::open(dir.path()).unwrap();
        let id = ids.allocate().unwrap();
        assert_eq!(
            ids.bump(id + 1, 0),
            Ok(None),
            "never issued: a new id instead"
        );
        assert_eq!(ids.bump(id, 0), Ok(Some(1)));
        assert!(ids.bump(id, 0).is_err(), "epoch 0 is no longer current");
        assert_eq!(ids.bump(id, 1), Ok(Some(2)));
        assert_eq!(
            ids.bump(id, i16::MAX - 1),
            Ok(None),
            "epoch exhausted: a new id"
        );
        let reopened = ProducerIdAllocator::open(dir.path()).unwrap();
        assert_eq!(
            reopened.bump(id, 2),
            Ok(Some(3)),
            "after a restart the id still bumps"
        );
    }

    #[test]
    fn a_corrupt_block_file_is_an_error_not_a_reuse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "garbage").unwrap();
        assert!(ProducerIdAllocator::open(dir.path()).is_err());
    }
}

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

/// Hands out producer ids that are unique for the life of the data directory.
#[derive(Debug)]
pub struct ProducerIdAllocator {
    path: PathBuf,
    /// (next id to hand out, end of the durable block).
    block: Mutex<(i64, i64)>,
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
        Ok(id)
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
    fn a_corrupt_block_file_is_an_error_not_a_reuse() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "garbage").unwrap();
        assert!(ProducerIdAllocator::open(dir.path()).is_err());
    }
}

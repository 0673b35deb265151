//! The partition checkpoint file (`partition.checkpoint`): recovery point, log start offset,
//! high watermark and whether the last shutdown was clean, written atomically (tmp, fsync,
//! rename). Text, one `key value` per line, so an operator can read it.
//!
//! Also the log directory's clean-shutdown marker ([`CLEAN_SHUTDOWN_FILE_NAME`], Kafka's
//! `.kafka_cleanshutdown`): written once every log of the directory was closed cleanly, and
//! removed once they are all open again, before anything is appended. While it exists, a log
//! whose checkpoint also says `clean_shutdown 1` is opened without scanning its active segment
//! (see [`crate::LogOpenOptions`]). One file per directory instead of a checkpoint rewrite per
//! partition at every start.

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::io::{remove_file, sync_dir, write_atomically_with};

/// Name of the checkpoint file inside the partition directory.
pub const CHECKPOINT_FILE_NAME: &str = "partition.checkpoint";

const HEADER: &str = "strom-partition-checkpoint 1";

/// Name of the clean-shutdown marker in the log directory (the broker's data directory).
pub const CLEAN_SHUTDOWN_FILE_NAME: &str = ".strom-clean-shutdown";

/// Whether the log directory `dir` holds the clean-shutdown marker.
pub fn clean_shutdown_marked(dir: &Path) -> bool {
    dir.join(CLEAN_SHUTDOWN_FILE_NAME).exists()
}

/// Syncs the file system holding `dir` (one `syncfs` for every log closed with
/// [`crate::PartitionLog::close_unsynced`]) and then writes the clean-shutdown marker into
/// `dir`, durably. Call it only after every log of the directory was closed without an error.
pub fn mark_clean_shutdown(dir: &Path) -> Result<()> {
    crate::io::sync_file_system(dir)?;
    crate::io::write_atomically(&dir.join(CLEAN_SHUTDOWN_FILE_NAME), b"clean\n")
}

/// Removes the clean-shutdown marker from `dir`, durably. Call it once every log is open and
/// before anything is appended: a crash after that must find no marker.
pub fn unmark_clean_shutdown(dir: &Path) -> Result<()> {
    let path = dir.join(CLEAN_SHUTDOWN_FILE_NAME);
    if path.exists() {
        remove_file(&path)?;
        sync_dir(dir)?;
    }
    Ok(())
}

/// The persisted offsets of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checkpoint {
    /// Every offset below this was fsynced; recovery scans only segments reaching past it.
    pub recovery_point: i64,
    /// The log start offset.
    pub log_start_offset: i64,
    /// The high watermark.
    pub high_watermark: i64,
    /// Whether the log was closed cleanly.
    pub clean_shutdown: bool,
}

impl Checkpoint {
    /// Reads the checkpoint in `dir`; `None` (with a warning if it was damaged) when missing or
    /// unreadable, in which case recovery scans everything.
    pub fn read(dir: &Path) -> Result<Option<Checkpoint>> {
        let path = dir.join(CHECKPOINT_FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => String::new(),
            Err(e) => return Err(StorageError::io(format!("reading {}", path.display()), e)),
        };
        let parsed = Checkpoint::parse(&text);
        if parsed.is_none() {
            tracing::warn!(path = %path.display(), "damaged checkpoint file; recovering the whole log");
        }
        Ok(parsed)
    }

    fn parse(text: &str) -> Option<Checkpoint> {
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut value = |key: &str| -> Option<i64> {
            let line = lines.next()?;
            let (found, number) = line.split_once(' ')?;
            if found != key {
                return None;
            }
            number.parse().ok()
        };
        Some(Checkpoint {
            recovery_point: value("recovery_point")?,
            log_start_offset: value("log_start_offset")?,
            high_watermark: value("high_watermark")?,
            clean_shutdown: value("clean_shutdown")? == 1,
        })
    }

    /// Writes the checkpoint into `dir` atomically and durably.
    pub fn write(&self, dir: &Path) -> Result<()> {
        self.write_with(dir, true)
    }

    /// Writes the checkpoint into `dir` atomically; fsynced only when `durable`. Recovery never
    /// depends on a checkpoint that was not fsynced: it trusts only segments below the recovery
    /// point, which a durable checkpoint wrote after fsyncing them.
    pub fn write_with(&self, dir: &Path, durable: bool) -> Result<()> {
        let text = format!(
            "{HEADER}\nrecovery_point {}\nlog_start_offset {}\nhigh_watermark {}\nclean_shutdown {}\n",
            self.recovery_point,
            self.log_start_offset,
            self.high_watermark,
            i64::from(self.clean_shutdown)
        );
        write_atomically_with(&dir.join(CHECKPOINT_FILE_NAME), text.as_bytes(), durable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
        let checkpoint = Checkpoint {
            recovery_point: 10,
            log_start_offset: 3,
            high_watermark: 9,
            clean_shutdown: true,
        };
        checkpoint.write(dir.path()).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), Some(checkpoint));
        let path = dir.path().join(CHECKPOINT_FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() - 5]).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
        std::fs::write(&path, [0xff, 0xfe, 0x00]).unwrap();
        assert_eq!(Checkpoint::read(dir.path()).unwrap(), None);
    }
}

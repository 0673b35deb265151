//! The leader epoch cache (Kafka's `leader-epoch-checkpoint`): for each leader epoch, the first
//! offset written in it. Answers OffsetForLeaderEpoch. Persisted atomically whenever it changes
//! (rare: once per leadership change), in Kafka's format: version line, count line, then
//! `epoch start_offset` lines.
//!
//! An append that starts an epoch writes the file without fsync (the first append to each of
//! 10,000 partitions paid two fsyncs for it, as Kafka did before KAFKA-15046); the log fsyncs it
//! with [`LeaderEpochCache::sync_if_needed`] when it rolls or flushes, before the recovery point
//! moves past the offsets it describes. Recovery re-learns the epochs of the segments it scans.

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::io::{sync_in_place, write_atomically_with};

/// Name of the leader epoch checkpoint file inside the partition directory.
pub const LEADER_EPOCH_FILE_NAME: &str = "leader-epoch-checkpoint";

/// One epoch and the first offset appended in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    /// The leader epoch.
    pub epoch: i32,
    /// First offset written in that epoch.
    pub start_offset: i64,
}

/// The leader epoch cache of one partition; entries strictly increase in both fields.
#[derive(Debug)]
pub struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<EpochEntry>,
    /// What the file holds (as of the last write, durable or not).
    written: Vec<EpochEntry>,
    /// The file's contents are durable.
    synced: bool,
}

impl LeaderEpochCache {
    /// Loads the cache from `dir`; a missing or damaged file gives an empty cache (recovery
    /// re-learns epochs from the batches it scans).
    pub fn load(dir: &Path) -> LeaderEpochCache {
        let path = dir.join(LEADER_EPOCH_FILE_NAME);
        let entries = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "damaged leader epoch checkpoint; starting empty");
                Vec::new()
            }),
            Err(_) => Vec::new(),
        };
        LeaderEpochCache {
            path,
            written: entries.clone(),
            entries,
            synced: true,
        }
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    /// The newest epoch.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|e| e.epoch)
    }

    /// Records that `epoch` starts at `start_offset` if it is newer than the latest epoch.
    /// Returns whether the cache changed (the caller persists it).
    pub fn assign(&mut self, epoch: i32, start_offset: i64) -> bool {
        match self.entries.last() {
            Some(last) if epoch <= last.epoch => {
                if epoch < last.epoch {
                    tracing::warn!(
                        epoch,
                        latest = last.epoch,
                        "append with an epoch older than the latest; not recorded"
                    );
                }
                false
            }
            Some(last) if start_offset < last.start_offset => {
                tracing::warn!(
                    epoch,
                    start_offset,
                    "epoch start offset goes backwards; not recorded"
                );
                false
            }
            _ => {
                self.entries.push(EpochEntry {
                    epoch,
                    start_offset,
                });
                true
            }
        }
    }

    /// Kafka's `endOffsetFor`: for the latest epoch, `(epoch, log_end_offset)`; otherwise the
    /// largest known epoch `<= epoch` (or `epoch` itself if it predates every entry) with the
    /// start offset of the next epoch. `None` (Kafka's UNDEFINED_EPOCH/-1) when the cache is
    /// empty or `epoch` is newer than the latest.
    pub fn end_offset_for(&self, epoch: i32, log_end_offset: i64) -> Option<(i32, i64)> {
        let latest = self.entries.last()?;
        if epoch == latest.epoch {
            return Some((epoch, log_end_offset));
        }
        let higher = self.entries.partition_point(|e| e.epoch <= epoch);
        let next = self.entries.get(higher)?;
        let floor_epoch = higher
            .checked_sub(1)
            .map_or(epoch, |i| self.entries[i].epoch);
        Some((floor_epoch, next.start_offset))
    }

    /// Drops entries starting at or after `offset` (log truncation).
    pub fn truncate_from_end(&mut self, offset: i64) -> bool {
        let keep = self.entries.partition_point(|e| e.start_offset < offset);
        let changed = keep != self.entries.len();
        self.entries.truncate(keep);
        changed
    }

    /// Drops entries wholly below the new log start offset, moving the last one that covers it
    /// up to `offset`.
    pub fn truncate_from_start(&mut self, offset: i64) -> bool {
        let covering = self.entries.partition_point(|e| e.start_offset <= offset);
        if covering == 0 {
            return false;
        }
        let first_kept = covering - 1;
        let changed = first_kept > 0 || self.entries[first_kept].start_offset != offset;
        self.entries.drain(..first_kept);
        self.entries[0].start_offset = offset;
        changed
    }

    /// Writes the cache atomically and durably.
    pub fn persist(&mut self) -> Result<()> {
        self.persist_with(true)
    }

    /// Writes the cache atomically; fsynced only when `durable`.
    pub fn persist_with(&mut self, durable: bool) -> Result<()> {
        let mut text = format!("0\n{}\n", self.entries.len());
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        write_atomically_with(&self.path, text.as_bytes(), durable)?;
        self.written.clone_from(&self.entries);
        self.synced = durable;
        Ok(())
    }

    /// Makes the cache durable if the last write was not: fsyncs the file in place when it
    /// holds the entries (no new file per partition per flush), else writes it durably.
    pub fn sync_if_needed(&mut self) -> Result<()> {
        if self.synced {
            return Ok(());
        }
        if self.written != self.entries {
            return self.persist_with(true);
        }
        sync_in_place(&self.path)?;
        self.synced = true;
        Ok(())
    }
}

fn parse(text: &str) -> Option<Vec<EpochEntry>> {
    let mut lines = text.lines();
    if lines.next()?.trim() != "0" {
        return None;
    }
    let count: usize = lines.next()?.trim().parse().ok()?;
    let mut entries: Vec<EpochEntry> = Vec::new();
    for _ in 0..count {
        let (epoch, start_offset) = lines.next()?.trim().split_once(' ')?;
        let entry = EpochEntry {
            epoch: epoch.parse().ok()?,
            start_offset: start_offset.trim().parse().ok()?,
        };
        if let Some(last) = entries.last() {
            if entry.epoch <= last.epoch || entry.start_offset < last.start_offset {
                return None;
            }
        }
        entries.push(entry);
    }
    Some(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_offsets_follow_kafka() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path());
        assert_eq!(cache.end_offset_for(0, 10), None);
        assert!(cache.assign(1, 0));
        assert!(!cache.assign(1, 5));
        assert!(cache.assign(3, 10));
        assert!(!cache.assign(2, 20));
        assert_eq!(cache.end_offset_for(3, 25), Some((3, 25)));
        assert_eq!(cache.end_offset_for(2, 25), Some((1, 10)));
        assert_eq!(cache.end_offset_for(1, 25), Some((1, 10)));
        assert_eq!(cache.end_offset_for(0, 25), Some((0, 0)));
        assert_eq!(cache.end_offset_for(4, 25), None);
        cache.persist().unwrap();
        let loaded = LeaderEpochCache::load(dir.path());
        assert_eq!(loaded.entries(), cache.entries());
    }

    #[test]
    fn truncation_both_ends() {
        let dir = tempfile::tempdir().unwrap();
        let mut cache = LeaderEpochCache::load(dir.path());
        cache.assign(1, 0);
        cache.assign(2, 10);
        cache.assign(3, 20);
        assert!(cache.truncate_from_start(15));
        assert_eq!(
            cache.entries(),
            &[
                EpochEntry {
                    epoch: 2,
                    start_offset: 15
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 20
                }
            ]
        );
        assert!(cache.truncate_from_end(20));
        assert_eq!(cache.latest_epoch(), Some(2));
        assert!(!cache.truncate_from_end(20));
    }

    #[test]
    fn damaged_file_gives_empty_cache() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(LEADER_EPOCH_FILE_NAME),
            "0\n2\n5 10\n4 20\n",
        )
        .unwrap();
        assert!(LeaderEpochCache::load(dir.path()).entries().is_empty());
    }
}

//! The time index (`.timeindex`): 12-byte big-endian entries of (largest timestamp so far, i64;
//! relative offset of the batch holding it, u32). An entry is added next to each offset index
//! entry when the segment's largest timestamp has grown, and once more when the segment is
//! closed, so the last entry of a closed segment always holds its largest timestamp.

use crate::index::{IndexEntry, IndexFile};

/// One `.timeindex` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimeEntry {
    pub(crate) timestamp_ms: i64,
    pub(crate) relative_offset: u32,
}

impl IndexEntry for TimeEntry {
    const SIZE_BYTES: usize = 12;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> TimeEntry {
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[0..8]);
        TimeEntry {
            timestamp_ms: i64::from_be_bytes(timestamp),
            relative_offset: u32::from_be_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }

    fn follows(&self, previous: &TimeEntry) -> bool {
        self.timestamp_ms > previous.timestamp_ms
            && self.relative_offset >= previous.relative_offset
    }
}

/// The time index of one segment.
pub(crate) type TimeIndex = IndexFile<TimeEntry>;

impl TimeIndex {
    /// Relative offset of the batch of the last entry whose timestamp is strictly below
    /// `timestamp_ms`: no batch before that one holds a timestamp `>= timestamp_ms`, so a scan
    /// for it starts there. `None` means scan from the segment start.
    pub(crate) fn lookup(&self, timestamp_ms: i64) -> Option<u32> {
        let entries = self.entries();
        let after = entries.partition_point(|e| e.timestamp_ms < timestamp_ms);
        after.checked_sub(1).map(|i| entries[i].relative_offset)
    }

    /// The largest timestamp recorded, if any.
    pub(crate) fn max_timestamp_ms(&self) -> Option<i64> {
        self.last().map(|e| e.timestamp_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_strictly_below() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.timeindex");
        let mut index = TimeIndex::create(&path, 4096).unwrap();
        assert_eq!(index.lookup(100), None);
        index
            .append(TimeEntry {
                timestamp_ms: 100,
                relative_offset: 0,
            })
            .unwrap();
        index
            .append(TimeEntry {
                timestamp_ms: 200,
                relative_offset: 5,
            })
            .unwrap();
        assert_eq!(index.lookup(100), None);
        assert_eq!(index.lookup(101), Some(0));
        assert_eq!(index.lookup(200), Some(0));
        assert_eq!(index.lookup(201), Some(5));
        assert_eq!(index.max_timestamp_ms(), Some(200));
        index.persist(false).unwrap();
        drop(index);
        let loaded = TimeIndex::load(&path, 4096, |_| true).unwrap().unwrap();
        assert_eq!(loaded.entries().len(), 2);
        std::fs::write(&path, [1u8; 13]).unwrap();
        assert!(TimeIndex::load(&path, 4096, |_| true).unwrap().is_none());
    }
}

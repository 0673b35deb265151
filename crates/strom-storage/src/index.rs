//! The sparse offset index (`.index`): relative offset (u32) -> file position (u32), 8-byte
//! big-endian entries, one every `index.interval.bytes` of appended data. Also the generic
//! append-only index file both indexes are built on.
//!
//! Entries are kept in memory; the file holds no descriptor between calls. Entries are written
//! out by [`IndexFile::persist`] (on roll, flush, close and after a recovery scan of a closed
//! segment), so the file of the active segment may lag its memory: recovery after a crash
//! never trusts it (the active segment is scanned), and after a clean shutdown it was written
//! at close. On open the file is checked (size a multiple of the entry size, strictly
//! increasing, inside the segment) and the caller rebuilds it from the log when the check fails.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Result, StorageError};
use crate::io::remove_file;

/// A fixed-size index entry.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    /// Encoded size in bytes.
    const SIZE_BYTES: usize;
    /// Appends the big-endian encoding to `out`.
    fn encode(&self, out: &mut Vec<u8>);
    /// Decodes one entry from exactly `SIZE_BYTES` bytes.
    fn decode(bytes: &[u8]) -> Self;
    /// Relative offset the entry points at.
    fn relative_offset(&self) -> u32;
    /// Whether `self` may follow `previous` (strictly increasing keys).
    fn follows(&self, previous: &Self) -> bool;
}

/// An append-only index: entries in memory, mirrored to a file by [`IndexFile::persist`].
#[derive(Debug)]
pub(crate) struct IndexFile<E: IndexEntry> {
    path: PathBuf,
    entries: Vec<E>,
    entries_max: usize,
    /// `Some(n)`: the file holds exactly the first `n` entries; `None`: its contents are
    /// unknown and the next persist rewrites it whole.
    on_disk: Option<usize>,
    /// The file's contents (as far as `on_disk` says) were fsynced.
    synced: bool,
}

impl<E: IndexEntry> IndexFile<E> {
    /// Creates an empty index at `path` (truncating any file there).
    #[cfg(test)]
    pub(crate) fn create(path: &Path, capacity_bytes: u32) -> Result<IndexFile<E>> {
        let mut index = IndexFile::rebuilt(path, capacity_bytes);
        index.persist(false)?;
        Ok(index)
    }

    /// An empty index for `path` whose file is left as it is until the next persist rewrites
    /// it (a recovery scan fills the entries first).
    pub(crate) fn rebuilt(path: &Path, capacity_bytes: u32) -> IndexFile<E> {
        IndexFile {
            path: path.to_path_buf(),
            entries: Vec::new(),
            entries_max: entries_max::<E>(capacity_bytes),
            on_disk: None,
            synced: false,
        }
    }

    /// Loads an existing index; `None` (after a warning) when it is missing or fails `valid`
    /// or the structural checks, so the caller rebuilds it.
    pub(crate) fn load(
        path: &Path,
        capacity_bytes: u32,
        valid: impl Fn(&E) -> bool,
    ) -> Result<Option<IndexFile<E>>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(path = %path.display(), "index file missing; rebuilding");
                return Ok(None);
            }
            Err(e) => return Err(StorageError::io(format!("reading {}", path.display()), e)),
        };
        let len_bytes = bytes.len();
        if !len_bytes.is_multiple_of(E::SIZE_BYTES) {
            tracing::warn!(path = %path.display(), len_bytes, "index file has a partial entry; rebuilding");
            return Ok(None);
        }
        let entries: Vec<E> = bytes.chunks_exact(E::SIZE_BYTES).map(E::decode).collect();
        let ordered = entries.windows(2).all(|pair| pair[1].follows(&pair[0]));
        if !ordered || !entries.iter().all(valid) {
            tracing::warn!(path = %path.display(), "index file is inconsistent with its segment; rebuilding");
            return Ok(None);
        }
        let on_disk = Some(entries.len());
        Ok(Some(IndexFile {
            path: path.to_path_buf(),
            entries,
            entries_max: entries_max::<E>(capacity_bytes),
            on_disk,
            synced: true,
        }))
    }

    pub(crate) fn entries(&self) -> &[E] {
        &self.entries
    }

    pub(crate) fn last(&self) -> Option<&E> {
        self.entries.last()
    }

    pub(crate) fn is_full(&self) -> bool {
        self.entries.len() >= self.entries_max
    }

    pub(crate) fn set_capacity(&mut self, capacity_bytes: u32) {
        self.entries_max = entries_max::<E>(capacity_bytes);
    }

    /// Appends one entry (which must follow the last), in memory until the next persist.
    pub(crate) fn append(&mut self, entry: E) -> Result<()> {
        if let Some(last) = self.entries.last() {
            debug_assert!(entry.follows(last), "index entry {entry:?} after {last:?}");
        }
        self.entries.push(entry);
        Ok(())
    }

    /// Drops every entry pointing at `relative_offset` or later.
    pub(crate) fn truncate_from(&mut self, relative_offset: u32) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|e| e.relative_offset() < relative_offset);
        self.entries.truncate(keep);
        if self.on_disk.is_some_and(|n| n > keep) {
            self.on_disk = None;
        }
        Ok(())
    }

    /// Writes the entries the file lacks (the whole file when its contents are unknown), and
    /// fsyncs it when `durable`. Opens and closes the file within the call.
    pub(crate) fn persist(&mut self, durable: bool) -> Result<()> {
        let from = match self.on_disk {
            Some(n) if n == self.entries.len() && (!durable || self.synced) => return Ok(()),
            Some(n) => n,
            None => 0,
        };
        let context = |what: &str| format!("{what} {}", self.path.display());
        let rewrite = self.on_disk.is_none();
        let file = OpenOptions::new()
            .create(true)
            .truncate(rewrite)
            .write(true)
            .open(&self.path)
            .map_err(|e| StorageError::io(context("opening"), e))?;
        let mut bytes = Vec::with_capacity((self.entries.len() - from) * E::SIZE_BYTES);
        for entry in &self.entries[from..] {
            entry.encode(&mut bytes);
        }
        file.write_all_at(&bytes, (from * E::SIZE_BYTES) as u64)
            .map_err(|e| StorageError::io(context("writing"), e))?;
        if durable {
            file.sync_data()
                .map_err(|e| StorageError::io(context("fsync"), e))?;
        }
        self.synced = durable;
        self.on_disk = Some(self.entries.len());
        Ok(())
    }

    /// For an index without entries, which needs no file: removes a file of unknown contents
    /// (a stale one) once; a no-op when the file is known to be absent or empty.
    pub(crate) fn persist_absent(&mut self) -> Result<()> {
        debug_assert!(
            self.entries.is_empty(),
            "an index with entries needs its file"
        );
        if self.on_disk == Some(0) {
            return Ok(());
        }
        remove_file(&self.path)?;
        self.on_disk = Some(0);
        self.synced = true;
        Ok(())
    }

    /// Whether the file holds a known prefix of the entries (written or loaded), rather than
    /// contents that are unknown or not created yet.
    pub(crate) fn is_written(&self) -> bool {
        self.on_disk.is_some()
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

fn entries_max<E: IndexEntry>(capacity_bytes: u32) -> usize {
    (capacity_bytes as usize / E::SIZE_BYTES).max(1)
}

/// One `.index` entry: the batch starting at `base + relative_offset` is at `position`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetEntry {
    pub(crate) relative_offset: u32,
    pub(crate) position: u32,
}

impl IndexEntry for OffsetEntry {
    const SIZE_BYTES: usize = 8;

    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.relative_offset.to_be_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
    }

    fn decode(bytes: &[u8]) -> OffsetEntry {
        OffsetEntry {
            relative_offset: u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            position: u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }

    fn relative_offset(&self) -> u32 {
        self.relative_offset
    }

    fn follows(&self, previous: &OffsetEntry) -> bool {
        self.relative_offset > previous.relative_offset && self.position > previous.position
    }
}

/// The sparse offset index of one segment.
pub(crate) type OffsetIndex = IndexFile<OffsetEntry>;

impl OffsetIndex {
    /// Position of the last indexed batch starting at or before `relative_offset` (0 if none):
    /// where a scan for `relative_offset` starts.
    pub(crate) fn lookup(&self, relative_offset: u32) -> u32 {
        let after = self
            .entries
            .partition_point(|e| e.relative_offset <= relative_offset);
        after.checked_sub(1).map_or(0, |i| self.entries[i].position)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(relative_offset: u32, position: u32) -> OffsetEntry {
        OffsetEntry {
            relative_offset,
            position,
        }
    }

    #[test]
    fn lookup_finds_floor_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 4096).unwrap();
        assert_eq!(index.lookup(5), 0);
        index.append(entry(10, 100)).unwrap();
        index.append(entry(20, 200)).unwrap();
        assert_eq!(index.lookup(9), 0);
        assert_eq!(index.lookup(10), 100);
        assert_eq!(index.lookup(19), 100);
        assert_eq!(index.lookup(25), 200);
    }

    #[test]
    fn load_round_trips_and_rejects_damage() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 4096).unwrap();
        index.append(entry(10, 100)).unwrap();
        index.append(entry(20, 200)).unwrap();
        index.persist(false).unwrap();
        drop(index);
        let loaded = OffsetIndex::load(&path, 4096, |_| true).unwrap().unwrap();
        assert_eq!(loaded.entries(), &[entry(10, 100), entry(20, 200)]);
        // A position beyond the segment is rejected by the caller's check.
        assert!(OffsetIndex::load(&path, 4096, |e| e.position < 150)
            .unwrap()
            .is_none());
        // A partial entry is rejected.
        std::fs::write(&path, [0u8; 9]).unwrap();
        assert!(OffsetIndex::load(&path, 4096, |_| true).unwrap().is_none());
        // Out-of-order entries are rejected.
        let mut bytes = Vec::new();
        entry(20, 200).encode(&mut bytes);
        entry(10, 100).encode(&mut bytes);
        std::fs::write(&path, bytes).unwrap();
        assert!(OffsetIndex::load(&path, 4096, |_| true).unwrap().is_none());
        // A missing file is rejected.
        std::fs::remove_file(&path).unwrap();
        assert!(OffsetIndex::load(&path, 4096, |_| true).unwrap().is_none());
    }

    #[test]
    fn truncate_and_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.index");
        let mut index = OffsetIndex::create(&path, 16).unwrap();
        index.append(entry(1, 10)).unwrap();
        assert!(!index.is_full());
        index.append(entry(2, 20)).unwrap();
        assert!(index.is_full());
        index.persist(false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 16);
        index.truncate_from(2).unwrap();
        assert_eq!(index.entries(), &[entry(1, 10)]);
        index.persist(false).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 8);
    }
}

//! The file I/O seam: every byte the log reads or writes goes through [`LogFile`], so another
//! backend (io_uring, direct I/O) can replace it in one place.
//!
//! Open file descriptors are a budget, not a consequence of the partition count: segment
//! files are opened through a [`FileCache`], a bounded LRU of open handles shared by every log
//! of a broker (Kafka keeps every segment open and asks operators for huge `ulimit -n`; with
//! 10,000 partitions of 3 files each that is beyond the usual hard limit of 20,000). A
//! [`LogFile`] remembers its path and length; its handle is opened on first use, closed when
//! the cache evicts it, and reopened (by path, never creating) on the next use. Index files
//! hold no descriptor at all: their entries live in memory and are written out on roll, flush
//! and close (see `index.rs`).

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use crate::error::{Result, StorageError};

/// Smallest budget of a [`FileCache`]: below this, appends to a few partitions would thrash.
pub const OPEN_FILES_MIN: usize = 16;

/// A bounded set of open segment file handles, least recently used evicted first.
///
/// The bound holds for handles the cache keeps; a handle evicted while a read or append is
/// using it stays open until that operation ends, so at most `capacity` + (threads doing log
/// I/O at that instant) segment files are open. Directory handles for fsync, index and
/// checkpoint writes are opened and closed within one call.
#[derive(Debug)]
pub struct FileCache {
    capacity: usize,
    next_id: AtomicU64,
    inner: Mutex<CacheInner>,
}

#[derive(Debug, Default)]
struct CacheInner {
    /// id -> (handle, tick of its last use)
    open: HashMap<u64, (Arc<File>, u64)>,
    /// tick of last use -> id; the first entry is the least recently used.
    by_use: BTreeMap<u64, u64>,
    tick: u64,
    opened: u64,
    evicted: u64,
}

/// Counters of a [`FileCache`], for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileCacheStats {
    /// Handles held now.
    pub open: usize,
    /// The budget.
    pub capacity: usize,
    /// Handles opened since the cache was made.
    pub opened: u64,
    /// Handles closed to stay within the budget.
    pub evicted: u64,
}

impl FileCache {
    /// A cache keeping at most `capacity` (at least [`OPEN_FILES_MIN`]) handles open.
    pub fn new(capacity: usize) -> Arc<FileCache> {
        Arc::new(FileCache {
            capacity: capacity.max(OPEN_FILES_MIN),
            next_id: AtomicU64::new(1),
            inner: Mutex::new(CacheInner::default()),
        })
    }

    /// The cache [`crate::PartitionLog::open`] uses when given none: one per process, sized by
    /// [`default_open_files_max`].
    pub fn shared() -> Arc<FileCache> {
        static SHARED: OnceLock<Arc<FileCache>> = OnceLock::new();
        SHARED
            .get_or_init(|| FileCache::new(default_open_files_max()))
            .clone()
    }

    /// The budget.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Current counters.
    pub fn stats(&self) -> FileCacheStats {
        let inner = self.lock();
        FileCacheStats {
            open: inner.open.len(),
            capacity: self.capacity,
            opened: inner.opened,
            evicted: inner.evicted,
        }
    }

    fn lock(&self) -> MutexGuard<'_, CacheInner> {
        // A panic while holding the lock leaves the maps consistent (no partial updates).
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn get(&self, id: u64) -> Option<Arc<File>> {
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        let (file, last_use) = inner.open.get_mut(&id)?;
        let file = file.clone();
        let previous = std::mem::replace(last_use, tick);
        inner.by_use.remove(&previous);
        inner.by_use.insert(tick, id);
        Some(file)
    }

    fn insert(&self, id: u64, file: Arc<File>) -> Arc<File> {
        let mut evicted = Vec::new();
        let mut inner = self.lock();
        inner.tick += 1;
        let tick = inner.tick;
        inner.opened += 1;
        if let Some((_, previous)) = inner.open.insert(id, (file.clone(), tick)) {
            inner.by_use.remove(&previous);
        }
        inner.by_use.insert(tick, id);
        while inner.open.len() > self.capacity {
            let Some((_, victim)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((handle, _)) = inner.open.remove(&victim) {
                evicted.push(handle);
                inner.evicted += 1;
            }
        }
        drop(inner);
        drop(evicted); // closed outside the lock
        file
    }

    /// Closes about half of the handles (after the process ran out of descriptors).
    fn shed(&self) {
        let mut evicted = Vec::new();
        let mut inner = self.lock();
        let keep = inner.open.len() / 2;
        while inner.open.len() > keep {
            let Some((_, victim)) = inner.by_use.pop_first() else {
                break;
            };
            if let Some((handle, _)) = inner.open.remove(&victim) {
                evicted.push(handle);
                inner.evicted += 1;
            }
        }
        drop(inner);
        drop(evicted);
    }

    fn forget(&self, id: u64) {
        let mut inner = self.lock();
        if let Some((handle, last_use)) = inner.open.remove(&id) {
            inner.by_use.remove(&last_use);
            drop(inner);
            drop(handle);
        }
    }
}

/// Default budget of open segment files: half of the process's open files limit (the soft
/// limit, which `strom server` raises to the hard limit first), leaving the other half for
/// client connections and everything else; 4096 when the limit is unknown.
pub fn default_open_files_max() -> usize {
    open_files_limit()
        .map_or(4096, |limit| (limit / 2) as usize)
        .max(OPEN_FILES_MIN)
}

/// The soft `RLIMIT_NOFILE`, if known.
pub fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    if rc != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return None;
    }
    Some(limit.rlim_cur)
}

fn is_out_of_descriptors(error: &std::io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// An append-only file with positional reads, opened through a [`FileCache`].
///
/// Appends are positional writes at `len_bytes`, where the data ends (the file is not opened
/// `O_APPEND`), so the log's sizes are always the data's.
#[derive(Debug)]
pub(crate) struct LogFile {
    cache: Arc<FileCache>,
    id: u64,
    path: PathBuf,
    len_bytes: u64,
}

impl LogFile {
    /// Opens `path` for reading and appending, creating it if missing.
    pub(crate) fn open(path: &Path, cache: &Arc<FileCache>) -> Result<LogFile> {
        let mut log = LogFile {
            cache: cache.clone(),
            id: cache.new_id(),
            path: path.to_path_buf(),
            len_bytes: 0,
        };
        let file = log.open_handle(true)?;
        log.len_bytes = file
            .metadata()
            .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(log)
    }

    /// An existing file whose handle is opened on first use (only its length is read now, with
    /// no descriptor): how closed segments are loaded.
    pub(crate) fn open_lazily(path: &Path, cache: &Arc<FileCache>) -> Result<LogFile> {
        let len_bytes = std::fs::metadata(path)
            .map_err(|e| StorageError::io(format!("stat {}", path.display()), e))?
            .len();
        Ok(LogFile {
            cache: cache.clone(),
            id: cache.new_id(),
            path: path.to_path_buf(),
            len_bytes,
        })
    }

    /// Creates `path` empty (truncating anything there) and opens it.
    pub(crate) fn create(path: &Path, cache: &Arc<FileCache>) -> Result<LogFile> {
        let mut file = LogFile::open(path, cache)?;
        file.truncate(0)?;
        Ok(file)
    }

    /// The open handle (from the cache, or opened now: created only on the first open, so a
    /// file deleted behind the log's back is an error, not a silently empty segment).
    fn handle(&self) -> Result<Arc<File>> {
        match self.cache.get(self.id) {
            Some(file) => Ok(file),
            None => self.open_handle(false),
        }
    }

    fn open_handle(&self, create: bool) -> Result<Arc<File>> {
        let open = || {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(create)
                .open(&self.path)
        };
        let file = match open() {
            Ok(file) => file,
            Err(e) if is_out_of_descriptors(&e) => {
                tracing::warn!(path = %self.path.display(), open = self.cache.stats().open, "out of file descriptors; closing cached segment files");
                self.cache.shed();
                open()
                    .map_err(|e| StorageError::io(format!("opening {}", self.path.display()), e))?
            }
            Err(e) => {
                return Err(StorageError::io(
                    format!("opening {}", self.path.display()),
                    e,
                ))
            }
        };
        Ok(self.cache.insert(self.id, Arc::new(file)))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// Appends all of `bytes` at the end of the data (a positional write at `len_bytes`). On
    /// failure the file is cut back to the end of the data so that it never ends in a partial
    /// write the log does not know about.
    pub(crate) fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let file = self.handle()?;
        if let Err(error) = file.write_all_at(bytes, self.len_bytes) {
            if let Err(trim) = file.set_len(self.len_bytes) {
                tracing::warn!(path = %self.path.display(), %trim, "could not trim failed append")
            }
            return Err(StorageError::io(
                format!("appending to {}", self.path.display()),
                error,
            ));
        }
        self.len_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Reads up to `buf.len()` bytes at `position`; returns how many were read (short only at
    /// end of file).
    pub(crate) fn read_at(&self, buf: &mut [u8], position: u64) -> Result<usize> {
        let file = self.handle()?;
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], position + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(StorageError::io(
                        format!("reading {} at {position}", self.path.display()),
                        e,
                    ))
                }
            }
        }
        Ok(done)
    }

    /// Cuts the file to `len_bytes`.
    pub(crate) fn truncate(&mut self, len_bytes: u64) -> Result<()> {
        self.handle()?
            .set_len(len_bytes)
            .map_err(|e| StorageError::io(format!("truncating {}", self.path.display()), e))?;
        self.len_bytes = len_bytes;
        Ok(())
    }

    /// fsyncs the file's data (through any handle: fsync covers the whole inode).
    pub(crate) fn sync(&self) -> Result<()> {
        self.handle()?
            .sync_data()
            .map_err(|e| StorageError::io(format!("fsync {}", self.path.display()), e))
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.cache.forget(self.id);
    }
}

/// fsyncs a directory so that file creations, renames and deletions in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StorageError::io(format!("fsync directory {}", dir.display()), e))
}

/// Bytes written back per step of [`sync_data_in_steps`]. Measured on this project's 2-core VM
/// (BENCHMARKS.md, sixth session): steps of 2-8 MiB kept the first roll of an e2e run at
/// 3.5M msgs/s within the noise; 32 MiB steps, like one fsync of the whole 1 GiB segment,
/// put 12-135 ms on the producers' p99 during the write-back.
pub(crate) const WRITE_BACK_STEP_BYTES: u64 = 4 * 1024 * 1024;

/// fsyncs `file`'s data, first writing its dirty pages back `step_bytes` at a time and
/// waiting for each step before starting the next (`sync_file_range`, Linux).
///
/// One fsync of a freshly rolled 1 GiB segment queues the whole gigabyte to the disk at
/// once; on a shared or virtual disk that burst stalls every other writer of the machine,
/// the broker's own appends included, for as long as it lasts. Bounding the I/O in flight
/// to one step keeps the device (and the host behind it) responsive; the final fsync then
/// has little left to write and still makes the whole file durable.
pub(crate) fn sync_data_in_steps(file: &File, step_bytes: u64) -> std::io::Result<()> {
    let len_bytes = file.metadata()?.len();
    let step_bytes = step_bytes.max(1);
    let mut offset: u64 = 0;
    while offset < len_bytes {
        let step = step_bytes.min(len_bytes - offset);
        write_back_range(file, offset, step, true)?;
        offset += step;
    }
    file.sync_data()
}

/// Writes the dirty pages of `len_bytes` at `offset` of `file` back to the disk
/// (`sync_file_range`): if `wait`, after waiting for writeback already under way there and
/// until the range is written; otherwise only starting it. Durable only together with an
/// fsync (file metadata, the disk's cache). A no-op where `sync_file_range` does not exist.
pub(crate) fn write_back_range(
    file: &File,
    offset: u64,
    len_bytes: u64,
    wait: bool,
) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let flags = if wait {
            libc::SYNC_FILE_RANGE_WAIT_BEFORE
                | libc::SYNC_FILE_RANGE_WRITE
                | libc::SYNC_FILE_RANGE_WAIT_AFTER
        } else {
            libc::SYNC_FILE_RANGE_WRITE
        };
        // SAFETY: the descriptor belongs to `file`, which outlives the call; the range is
        // plain integers (offsets past the end are allowed and ignored by the kernel).
        let result = unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset as i64, len_bytes as i64, flags)
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len_bytes, wait);
    Ok(())
}

/// Flushes every dirty page and inode of the file system holding `path` (`syncfs`): one call
/// instead of an fsync per file when thousands of logs close at once.
pub(crate) fn sync_file_system(path: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let context = || format!("syncfs {}", path.display());
    let dir = File::open(path).map_err(|e| StorageError::io(context(), e))?;
    // SAFETY: syncfs takes a descriptor we hold open for the duration of the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(StorageError::io(context(), std::io::Error::last_os_error()));
    }
    Ok(())
}

/// Writes `contents` to `path` atomically: write a temporary file, fsync it, rename it over
/// `path`, fsync the directory.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    write_atomically_with(path, contents, true)
}

/// Like [`write_atomically`], durable against power loss only when `durable`; without it the
/// rename is still atomic against a killed process (the page cache survives), and two fsyncs
/// are saved, which matters when thousands of partitions open at once.
pub(crate) fn write_atomically_with(path: &Path, contents: &[u8], durable: bool) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let context = |what: &str| format!("{what} {}", tmp.display());
    let mut file = File::create(&tmp).map_err(|e| StorageError::io(context("creating"), e))?;
    file.write_all(contents)
        .map_err(|e| StorageError::io(context("writing"), e))?;
    if durable {
        file.sync_all()
            .map_err(|e| StorageError::io(context("fsync"), e))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| StorageError::io(context("renaming"), e))?;
    if durable {
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// Makes a file written by [`write_atomically_with`] without `durable` durable where it is:
/// fsyncs the file, then its directory (for the rename). The same guarantee as writing it again
/// durably, without a new inode: on ext4 without a journal, creating a file costs a scan of
/// the inodes deleted in the last minutes, and rewriting thousands of small files deletes many.
pub(crate) fn sync_in_place(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::io(format!("fsync {}", path.display()), e))?;
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Removes a file, treating "already gone" as success.
pub(crate) fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(format!("removing {}", path.display()), e)),
    }
}

/// A byte range of a segment file, to be read without the log's lock: what
/// [`crate::PartitionLog::read_regions`] plans under the lock. The handle stays open as long
/// as the region lives, even if the file cache evicts it or retention deletes the segment
/// (the bytes of an unlinked file stay readable through an open handle).
#[derive(Debug, Clone)]
pub struct FileRegion {
    file: Arc<File>,
    path: PathBuf,
    position: u64,
    len_bytes: usize,
}

impl FileRegion {
    /// The open file.
    pub fn file(&self) -> &Arc<File> {
        &self.file
    }

    /// Where the region starts in the file.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many bytes it spans.
    pub fn len_bytes(&self) -> usize {
        self.len_bytes
    }

    /// Appends the region's bytes to `out` without zeroing the space first. A file that got
    /// shorter since the region was planned (a truncated active segment) yields fewer bytes.
    pub fn read_into(&self, out: &mut Vec<u8>) -> Result<()> {
        use std::os::fd::AsRawFd;
        out.reserve(self.len_bytes);
        let mut done = 0usize;
        while done < self.len_bytes {
            let spare = out.spare_capacity_mut();
            let want = (self.len_bytes - done).min(spare.len());
            // SAFETY: `spare` is writable memory of at least `want` bytes owned by `out`; pread
            // writes at most `want` bytes into it and reports how many, and only those are
            // then marked initialised by `set_len`.
            let read = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    spare.as_mut_ptr().cast(),
                    want,
                    (self.position + done as u64) as libc::off_t,
                )
            };
            if read < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(StorageError::io(
                    format!("reading {} at {}", self.path.display(), self.position),
                    error,
                ));
            }
            if read == 0 {
                break;
            }
            let read = read as usize;
            // SAFETY: pread initialised `read` bytes right after the current length.
            unsafe { out.set_len(out.len() + read) };
            done += read;
        }
        Ok(())
    }
}

impl LogFile {
    /// A region of this file for reading outside the log's lock.
    pub(crate) fn region(&self, position: u64, len_bytes: usize) -> Result<FileRegion> {
        Ok(FileRegion {
            file: self.handle()?,
            path: self.path.clone(),
            position,
            len_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::sync_data_in_steps;

    #[test]
    fn stepped_sync_covers_files_of_any_length() {
        let dir = tempfile::tempdir().unwrap();
        // Empty, shorter than a step, an exact multiple, and a remainder after whole steps.
        for len_bytes in [0usize, 100, 4096 * 3, 4096 * 3 + 17] {
            let path = dir.path().join(format!("{len_bytes}.log"));
            let contents: Vec<u8> = (0..len_bytes).map(|i| (i % 251) as u8).collect();
            let mut file = std::fs::File::create(&path).unwrap();
            file.write_all(&contents).unwrap();
            sync_data_in_steps(&file, 4096).unwrap();
            drop(file);
            let mut read_back = Vec::new();
            std::fs::File::open(&path)
                .unwrap()
                .read_to_end(&mut read_back)
                .unwrap();
            assert_eq!(read_back, contents, "{len_bytes} bytes");
        }
    }

    #[test]
    fn stepped_sync_reports_what_the_kernel_refuses() {
        // A pipe has no pages to write back: the error comes back instead of a panic or a
        // silent success.
        let (reader, _writer) = std::io::pipe().unwrap();
        let file = std::fs::File::from(std::os::fd::OwnedFd::from(reader));
        assert!(sync_data_in_steps(&file, 4096).is_err());
    }
}

//! Each log's page cache kept to a window of its newest bytes; what falls behind is written back
//! and evicted, so new appends reuse the pages it held.
//!
//! Left to itself, the kernel keeps every byte ever appended in the page cache until memory
//! runs out, so each append needs pages that were never used before. On a VM that hands its
//! free memory back to the host (free page reporting, balloons) such a page costs a fault in
//! the host on first touch: ~9 µs per 4 KiB page on the 2-vCPU benchmark VM, which caps one
//! appending thread at ~450-600 MB/s and made the CPU that page faults take the bottleneck of
//! sustained produce and of end-to-end latency at high rates (BENCHMARKS.md, twelfth and
//! thirteenth sessions). Pages freed a moment ago are cheap: writes into them run at several
//! GB/s. A [`CacheTrimmer`] makes sure there are such pages: every log tells it when another
//! [`CACHE_STEP_BYTES`] were appended (it starts their writeback at once, so the writes go to
//! the disk while appends go on) and when a step has fallen more than the window behind the log
//! end (it waits for the step's writeback and evicts its pages: `sync_file_range` then
//! `posix_fadvise(DONTNEED)`). Measured with a plain writer on the benchmark VM: 3.4-3.7 GB/s
//! at 0.26-0.28 ms of CPU per MB (writeback included), against 750 MB/s at 1.36 ms per MB
//! without.
//!
//! Consumers within the window of the log end read from the page cache as before; older data
//! is read from disk (and cached again by the kernel while it is read). Nothing about
//! durability changes: the writeback is the one the kernel would have done later, and a log's
//! flush policy still decides when appends are fsynced. Every call is advisory; a failed one
//! (a file deleted or cut meanwhile) only leaves pages cached, as they were before.

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Bytes of a log's appends handed to the thread at once: its writeback starts when they are
/// complete, and they are evicted together. At 500 MB/s of appends, 60 steps a second.
pub const CACHE_STEP_BYTES: u64 = 8 * 1024 * 1024;

/// Steps end on multiples of this (the page size of every Linux machine Strom runs on; a
/// larger page would only make the first page of each step be written back twice).
const PAGE_BYTES: u64 = 4096;

/// Jobs waiting for the thread at most; when full, a job is skipped (its pages stay cached and
/// the kernel writes them back and reclaims them on its own, as without a window).
const QUEUED_JOBS_MAX: usize = 1024;

/// Counters of a [`CacheTrimmer`], for `/health` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CacheTrimStats {
    /// Steps whose writeback was started.
    pub steps_written: u64,
    /// Steps written back and evicted.
    pub steps_evicted: u64,
    /// Bytes of the evicted steps.
    pub bytes_evicted: u64,
    /// Jobs skipped: the queue was full, or the file was gone.
    pub jobs_skipped: u64,
}

#[derive(Debug, Default)]
struct Counters {
    steps_written: AtomicU64,
    steps_evicted: AtomicU64,
    bytes_evicted: AtomicU64,
    jobs_skipped: AtomicU64,
}

/// The thread that writes back and evicts what fell behind each log's window (see the module
/// docs). Shared by every log of a broker through [`crate::LogOpenOptions`]; the thread ends
/// when the last handle is dropped.
#[derive(Debug)]
pub struct CacheTrimmer {
    window_bytes: u64,
    queue: Mutex<SyncSender<TrimJob>>,
    counters: Arc<Counters>,
}

impl CacheTrimmer {
    /// Starts the thread. Each log keeps about its newest `window_bytes` in the page cache (at
    /// least one [`CACHE_STEP_BYTES`]: a smaller window is raised to it).
    pub fn start(window_bytes: u64) -> std::io::Result<Arc<CacheTrimmer>> {
        let (queue, jobs) = sync_channel::<TrimJob>(QUEUED_JOBS_MAX);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("strom-cache-trim".to_string())
            .spawn(move || {
                for job in jobs {
                    job.run(&thread_counters);
                }
            })?;
        Ok(Arc::new(CacheTrimmer {
            window_bytes: window_bytes.max(CACHE_STEP_BYTES),
            queue: Mutex::new(queue),
            counters,
        }))
    }

    /// Bytes of each log's newest data left in the page cache.
    pub fn window_bytes(&self) -> u64 {
        self.window_bytes
    }

    fn submit(&self, job: TrimJob) {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.counters.jobs_skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheTrimStats {
        CacheTrimStats {
            steps_written: self.counters.steps_written.load(Ordering::Relaxed),
            steps_evicted: self.counters.steps_evicted.load(Ordering::Relaxed),
            bytes_evicted: self.counters.bytes_evicted.load(Ordering::Relaxed),
            jobs_skipped: self.counters.jobs_skipped.load(Ordering::Relaxed),
        }
    }
}

/// What the thread does with a byte range of a segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TrimKind {
    /// Start writing the range's dirty pages back, without waiting.
    StartWriteback,
    /// Wait until the range is written back, then evict its pages.
    Evict,
}

#[derive(Debug)]
struct TrimJob {
    path: PathBuf,
    from: u64,
    to: u64,
    kind: TrimKind,
}

impl TrimJob {
    /// Opens the file by path (a log holds no descriptor for its steps: the broker's open
    /// files budget stays whole, and a segment deleted meanwhile is simply skipped) and runs
    /// the job. Errors are counted, never returned: the job is advisory.
    fn run(&self, counters: &Counters) {
        let Ok(file) = File::open(&self.path) else {
            counters.jobs_skipped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let fd = file.as_raw_fd();
        let offset = self.from as libc::off64_t;
        let len = (self.to - self.from) as libc::off64_t;
        match self.kind {
            TrimKind::StartWriteback => {
                // SAFETY: sync_file_range only reads its integer arguments; `fd` is open while
                // `file` lives.
                unsafe { libc::sync_file_range(fd, offset, len, libc::SYNC_FILE_RANGE_WRITE) };
                counters.steps_written.fetch_add(1, Ordering::Relaxed);
            }
            TrimKind::Evict => {
                // Dirty pages are not evicted: wait for the range to be on disk first.
                // SAFETY: as above; posix_fadvise likewise only reads its arguments.
                let rc = unsafe {
                    libc::sync_file_range(
                        fd,
                        offset,
                        len,
                        libc::SYNC_FILE_RANGE_WAIT_BEFORE
                            | libc::SYNC_FILE_RANGE_WRITE
                            | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                    )
                };
                if rc != 0 {
                    counters.jobs_skipped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                unsafe { libc::posix_fadvise(fd, offset, len, libc::POSIX_FADV_DONTNEED) };
                counters.steps_evicted.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_evicted
                    .fetch_add(self.to - self.from, Ordering::Relaxed);
            }
        }
    }
}

/// A byte range of one segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileRange {
    path: PathBuf,
    from: u64,
    to: u64,
}

impl FileRange {
    fn len_bytes(&self) -> u64 {
        self.to - self.from
    }
}

/// One log's side of the window: the step being appended to, and the steps handed to the
/// thread for writeback and not yet evicted (oldest first). At most `window / step + 2` of
/// them, whatever the log does: a step is evicted as soon as the window passes it.
#[derive(Debug, Default)]
pub(crate) struct CacheWindow {
    /// Appended bytes not yet handed over, in the active segment.
    open: Option<FileRange>,
    /// Steps being written back, oldest first.
    behind: VecDeque<FileRange>,
    /// Bytes of `behind`.
    behind_bytes: u64,
}

impl CacheWindow {
    /// After an append wrote bytes `from_bytes..to_bytes` of the segment file at `path`:
    /// hands a completed step to the thread and evicts the steps the window has passed. An
    /// append elsewhere than right after the open step (a new segment after a roll, or the
    /// same one after a truncation) closes the open step first.
    pub(crate) fn after_append(
        &mut self,
        trimmer: &CacheTrimmer,
        path: &Path,
        from_bytes: u64,
        to_bytes: u64,
    ) {
        match &mut self.open {
            Some(open) if open.to == from_bytes && open.path == path => open.to = to_bytes,
            _ => {
                if let Some(open) = self.open.take() {
                    self.hand_over(trimmer, open);
                }
                self.open = Some(FileRange {
                    path: path.to_path_buf(),
                    from: from_bytes,
                    to: to_bytes,
                });
            }
        }
        if let Some(open) = &mut self.open {
            if open.len_bytes() >= CACHE_STEP_BYTES {
                // The step ends at a page boundary: the page the next append goes on stays with
                // the open step, so writeback never starts on a page still being written.
                let to = open.to & !(PAGE_BYTES - 1);
                let step = FileRange {
                    path: open.path.clone(),
                    from: open.from,
                    to,
                };
                open.from = to;
                self.hand_over(trimmer, step);
            }
        }
        let open_bytes = self.open.as_ref().map_or(0, FileRange::len_bytes);
        while let Some(oldest) = self.behind.front() {
            let newer_bytes = self.behind_bytes - oldest.len_bytes() + open_bytes;
            if newer_bytes < trimmer.window_bytes {
                break;
            }
            let Some(oldest) = self.behind.pop_front() else {
                break;
            };
            self.behind_bytes -= oldest.len_bytes();
            trimmer.submit(TrimJob {
                path: oldest.path,
                from: oldest.from,
                to: oldest.to,
                kind: TrimKind::Evict,
            });
        }
    }

    fn hand_over(&mut self, trimmer: &CacheTrimmer, step: FileRange) {
        if step.len_bytes() == 0 {
            return;
        }
        trimmer.submit(TrimJob {
            path: step.path.clone(),
            from: step.from,
            to: step.to,
            kind: TrimKind::StartWriteback,
        });
        self.behind_bytes += step.len_bytes();
        self.behind.push_back(step);
    }
}

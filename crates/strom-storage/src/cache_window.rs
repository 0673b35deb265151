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

use crate::io::write_back_range;

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
        let len_bytes = self.to - self.from;
        match self.kind {
            TrimKind::StartWriteback => {
                // An error only means the pages are written back later, by the kernel.
                write_back_range(&file, self.from, len_bytes, false).ok();
                counters.steps_written.fetch_add(1, Ordering::Relaxed);
            }
            TrimKind::Evict => {
                // Dirty pages are not evicted: wait for the range to be on disk first.
                if write_back_range(&file, self.from, len_bytes, true).is_err() {
                    counters.jobs_skipped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                // SAFETY: posix_fadvise only reads its integer arguments; the descriptor is
                // open while `file` lives.
                unsafe {
                    libc::posix_fadvise(
                        file.as_raw_fd(),
                        self.from as libc::off_t,
                        len_bytes as libc::off_t,
                        libc::POSIX_FADV_DONTNEED,
                    )
                };
                counters.steps_evicted.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_evicted
                    .fetch_add(len_bytes, Ordering::Relaxed);
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
                if let Some(mut open) = self.open.take() {
                    if open.path == path {
                        // The file was cut at `from_bytes` (a truncation) and written again:
                        // what the steps held past the cut is new data now, inside the window.
                        open.to = open.to.min(from_bytes).max(open.from);
                        self.clip_behind(path, from_bytes);
                    }
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

    /// Ends the waiting steps of the file at `path` at `cut_bytes` at the latest (dropping
    /// those that start past it), so that evicting them leaves later data alone (eviction only
    /// drops whole pages, so the page holding the cut stays).
    fn clip_behind(&mut self, path: &Path, cut_bytes: u64) {
        for step in self.behind.iter_mut().filter(|step| step.path == path) {
            let to = step.to.min(cut_bytes).max(step.from);
            self.behind_bytes -= step.to - to;
            step.to = to;
        }
        self.behind.retain(|step| step.len_bytes() > 0);
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

#[cfg(test)]
pub(crate) mod tests {
    //! The window's bookkeeping (which steps are handed over and evicted, and when), the
    //! thread's counters, and what a real file keeps in the page cache afterwards (`mincore`).

    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::FileExt;
    use std::time::{Duration, Instant};

    use super::*;

    const MIB: u64 = 1024 * 1024;

    /// Polls the trimmer's counters until `done` holds (30 s at most) and returns them.
    pub(crate) fn wait_for(
        trimmer: &CacheTrimmer,
        what: &str,
        done: impl Fn(&CacheTrimStats) -> bool,
    ) -> CacheTrimStats {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let stats = trimmer.stats();
            if done(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {stats:?}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Jobs the thread has finished: each one adds to exactly one of these counters.
    fn jobs_done(stats: &CacheTrimStats) -> u64 {
        stats.steps_written + stats.steps_evicted + stats.jobs_skipped
    }

    /// Waits until the thread has run as many jobs as `expected` counts, then checks that the
    /// counters are `expected` and stay so (no job was submitted beyond those).
    fn assert_stats(trimmer: &CacheTrimmer, expected: CacheTrimStats) {
        let jobs = jobs_done(&expected);
        let stats = wait_for(trimmer, &format!("{jobs} jobs done"), |s| {
            jobs_done(s) >= jobs
        });
        assert_eq!(stats, expected);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            trimmer.stats(),
            expected,
            "counters moved after the jobs ran"
        );
    }

    /// Whether `posix_fadvise(DONTNEED)` can drop pages of files under `dir` (not on tmpfs,
    /// where pages are the files' only copy).
    pub(crate) fn page_cache_evicts(dir: &Path) -> bool {
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
        // SAFETY: `path` is a NUL-terminated string and `fs` a writable statfs.
        let mut fs: libc::statfs = unsafe { std::mem::zeroed() };
        let rc = unsafe { libc::statfs(path.as_ptr(), &mut fs) };
        assert_eq!(rc, 0, "statfs {}", dir.display());
        let evicts = fs.f_type != libc::TMPFS_MAGIC;
        if !evicts {
            eprintln!("{} is on tmpfs: page residency not checked", dir.display());
        }
        evicts
    }

    /// Pages of bytes `from..to` of the file at `path` (every page they touch), and how many of
    /// them are in the page cache (`mincore` over a mapping of the file, which reads nothing).
    pub(crate) fn resident_pages(path: &Path, from: u64, to: u64) -> (usize, usize) {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        assert!(from < to && to <= len, "{from}..{to} of {len} bytes");
        // SAFETY: the mapping is only passed to mincore, never read.
        let map = unsafe { memmap2::Mmap::map(&file) }.unwrap();
        let mut resident = vec![0u8; len.div_ceil(PAGE_BYTES) as usize];
        // SAFETY: `map` spans `len` bytes and `resident` has one byte per page of them.
        let rc = unsafe {
            libc::mincore(
                map.as_ptr() as *mut libc::c_void,
                len as usize,
                resident.as_mut_ptr(),
            )
        };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        let pages = &resident[(from / PAGE_BYTES) as usize..to.div_ceil(PAGE_BYTES) as usize];
        (pages.iter().filter(|&&p| p & 1 == 1).count(), pages.len())
    }

    /// A log's window fed by a test, with the counters the thread should reach: the steps the
    /// window handed over (steps_written) and the ones it evicted, read from how `behind`
    /// (oldest first) changed.
    struct Driver {
        trimmer: Arc<CacheTrimmer>,
        window: CacheWindow,
        expected: CacheTrimStats,
        evicted: Vec<FileRange>,
    }

    impl Driver {
        fn new(window_bytes: u64) -> Driver {
            Driver {
                trimmer: CacheTrimmer::start(window_bytes).unwrap(),
                window: CacheWindow::default(),
                expected: CacheTrimStats::default(),
                evicted: Vec::new(),
            }
        }

        fn append(&mut self, path: &Path, from: u64, to: u64) {
            let before: Vec<FileRange> = self.window.behind.iter().cloned().collect();
            self.window.after_append(&self.trimmer, path, from, to);
            let after = &self.window.behind;
            // Steps leave at the front (evicted) and join at the back (handed over).
            let popped = (0..=before.len())
                .find(|&p| {
                    before.len() - p <= after.len()
                        && after.iter().take(before.len() - p).eq(before[p..].iter())
                })
                .unwrap();
            let pushed = after.len() - (before.len() - popped);
            for step in &before[..popped] {
                self.expected.steps_evicted += 1;
                self.expected.bytes_evicted += step.len_bytes();
                self.evicted.push(step.clone());
            }
            self.expected.steps_written += pushed as u64;
            self.check_invariants();
        }

        /// What the window promises after every append.
        fn check_invariants(&self) {
            let w = &self.window;
            assert_eq!(
                w.behind_bytes,
                w.behind.iter().map(FileRange::len_bytes).sum::<u64>()
            );
            let open_bytes = w.open.as_ref().map_or(0, FileRange::len_bytes);
            assert!(open_bytes < CACHE_STEP_BYTES, "open step {:?}", w.open);
            if let Some(oldest) = w.behind.front() {
                assert!(
                    w.behind_bytes - oldest.len_bytes() + open_bytes < self.trimmer.window_bytes(),
                    "{oldest:?} is a window behind and was not evicted: {w:?}"
                );
            }
            assert!(w.behind.iter().all(|s| s.len_bytes() > 0));
        }

        fn open(&self) -> FileRange {
            self.window.open.clone().unwrap()
        }

        fn behind(&self) -> Vec<FileRange> {
            self.window.behind.iter().cloned().collect()
        }
    }

    fn range(path: &Path, from: u64, to: u64) -> FileRange {
        FileRange {
            path: path.to_path_buf(),
            from,
            to,
        }
    }

    /// The byte at `offset` of the test files: changes within a page and from page to page.
    fn pattern(offset: u64) -> u8 {
        (offset % 251 + offset / PAGE_BYTES * 7) as u8
    }

    /// Writes `len` bytes of [`pattern`] at `at` of `file`.
    fn write_pattern(file: &File, at: u64, len: u64) {
        let bytes: Vec<u8> = (at..at + len).map(pattern).collect();
        file.write_all_at(&bytes, at).unwrap();
    }

    fn assert_pattern(path: &Path, len: u64) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(bytes.len() as u64, len);
        if let Some(at) = (0..len).find(|&i| bytes[i as usize] != pattern(i)) {
            panic!("{} differs at byte {at}", path.display());
        }
    }

    #[test]
    fn steps_are_handed_over_every_8_mib_on_page_boundaries_and_evicted_a_window_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        File::create(&path).unwrap();
        let mut d = Driver::new(16 * MIB);
        const APPEND: u64 = 1_000_000;
        let mut end = 0;
        let mut append = |d: &mut Driver, count: usize| {
            for _ in 0..count {
                d.append(&path, end, end + APPEND);
                end += APPEND;
            }
        };

        // 8,000,000 bytes: less than a step, nothing handed over.
        append(&mut d, 8);
        assert!(d.behind().is_empty());
        assert_eq!(d.open(), range(&path, 0, 8_000_000));
        assert_stats(&d.trimmer, CacheTrimStats::default());

        // 9,000,000: a step, cut at the page boundary below the log end; the rest of that
        // page stays with the open step.
        append(&mut d, 1);
        let first = range(&path, 0, 8_998_912);
        assert_eq!(first.to % PAGE_BYTES, 0);
        assert!(9_000_000 - first.to < PAGE_BYTES);
        assert_eq!(d.behind(), std::slice::from_ref(&first));
        assert_eq!(d.open(), range(&path, 8_998_912, 9_000_000));
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 1,
                ..Default::default()
            },
        );

        // 17,000,000: the open step holds 8,001,088 bytes, under 8 MiB; 18,000,000: the
        // second step, again up to a page boundary.
        append(&mut d, 8);
        assert_eq!(d.behind(), std::slice::from_ref(&first));
        append(&mut d, 1);
        let second = range(&path, 8_998_912, 17_997_824);
        assert_eq!(d.behind(), [first.clone(), second.clone()]);
        assert_eq!(d.open(), range(&path, 17_997_824, 18_000_000));

        // 25,000,000: 16,001,088 bytes are newer than the first step, under the 16 MiB
        // window: nothing evicted.
        append(&mut d, 7);
        assert_eq!(d.behind(), [first.clone(), second.clone()]);
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 2,
                ..Default::default()
            },
        );

        // 26,000,000: 17,001,088 newer bytes: the first step goes, the second stays.
        append(&mut d, 1);
        assert_eq!(d.behind(), std::slice::from_ref(&second));
        assert_eq!(d.open(), range(&path, 17_997_824, 26_000_000));
        assert_eq!(d.evicted, std::slice::from_ref(&first));
        let expected = CacheTrimStats {
            steps_written: 2,
            steps_evicted: 1,
            bytes_evicted: first.len_bytes(),
            jobs_skipped: 0,
        };
        assert_eq!(d.expected, expected);
        assert_stats(&d.trimmer, expected);

        // On to 100,000,000: every step a page multiple, each evicted once a window behind.
        append(&mut d, 74);
        assert!(d
            .behind()
            .iter()
            .chain(&d.evicted)
            .all(|s| s.from % PAGE_BYTES == 0 && s.to % PAGE_BYTES == 0));
        assert_eq!(d.expected.steps_written, 11);
        assert_eq!(d.expected.steps_evicted, 9);
        assert_eq!(d.behind().len(), 2);
        assert_stats(&d.trimmer, d.expected);
    }

    #[test]
    fn a_step_is_evicted_when_exactly_a_window_of_newer_bytes_exists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        File::create(&path).unwrap();
        let mut d = Driver::new(16 * MIB);
        for i in 0..16 {
            d.append(&path, i * MIB, (i + 1) * MIB);
        }
        assert_eq!(
            d.behind(),
            [range(&path, 0, 8 * MIB), range(&path, 8 * MIB, 16 * MIB)]
        );
        // One byte short of 16 MiB newer than the first step.
        d.append(&path, 16 * MIB, 24 * MIB - 1);
        assert_eq!(d.behind().len(), 2);
        assert!(d.evicted.is_empty());
        // The byte that completes the third step and the window.
        d.append(&path, 24 * MIB - 1, 24 * MIB);
        assert_eq!(d.evicted, [range(&path, 0, 8 * MIB)]);
        assert_eq!(
            d.behind(),
            [
                range(&path, 8 * MIB, 16 * MIB),
                range(&path, 16 * MIB, 24 * MIB)
            ]
        );
        assert_eq!(d.open(), range(&path, 24 * MIB, 24 * MIB));
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 3,
                steps_evicted: 1,
                bytes_evicted: 8 * MIB,
                jobs_skipped: 0,
            },
        );
    }

    #[test]
    fn evicted_steps_leave_the_page_cache_and_the_newest_bytes_stay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        let file = File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut d = Driver::new(0);
        assert_eq!(d.trimmer.window_bytes(), CACHE_STEP_BYTES);
        // ~40 MiB in appends of a size that is no page multiple.
        const APPEND: u64 = 300_001;
        let mut end = 0;
        while end < 40 * MIB {
            write_pattern(&file, end, APPEND);
            d.append(&path, end, end + APPEND);
            end += APPEND;
        }
        assert!(d.expected.steps_evicted >= 3, "{:?}", d.expected);
        assert_stats(&d.trimmer, d.expected);
        assert_eq!(
            d.expected.bytes_evicted,
            d.evicted.iter().map(FileRange::len_bytes).sum::<u64>()
        );
        let evicted_to = d.evicted.last().unwrap().to;
        assert_eq!(d.behind()[0].from, evicted_to);
        assert!(end - evicted_to < 2 * CACHE_STEP_BYTES + APPEND);

        if page_cache_evicts(dir.path()) {
            let (resident, pages) = resident_pages(&path, 0, evicted_to);
            assert_eq!(
                resident, 0,
                "{resident} of {pages} pages of the evicted bytes 0..{evicted_to} are cached"
            );
            let (resident, pages) = resident_pages(&path, evicted_to, end);
            assert_eq!(
                resident, pages,
                "only {resident} of {pages} pages of the newest bytes {evicted_to}..{end} are cached"
            );
        }
        drop(file);
        assert_pattern(&path, end);
    }

    #[test]
    fn a_roll_closes_the_open_step_of_the_previous_segment() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("00000000000000000000.log");
        let second = dir.path().join("00000000000000001000.log");
        let files: Vec<File> = [&first, &second]
            .iter()
            .map(|p| File::create(p).unwrap())
            .collect();
        let mut d = Driver::new(8 * MIB);
        for i in 0..5 {
            write_pattern(&files[0], i * 1_000_000, 1_000_000);
            d.append(&first, i * 1_000_000, (i + 1) * 1_000_000);
        }
        assert!(d.behind().is_empty());

        // The first append to the new segment hands over the old one's 5,000,000 bytes, up to
        // its end (no page boundary: nothing is appended to it any more).
        write_pattern(&files[1], 0, 1_000_000);
        d.append(&second, 0, 1_000_000);
        assert_eq!(d.behind(), [range(&first, 0, 5_000_000)]);
        assert_eq!(d.open(), range(&second, 0, 1_000_000));
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 1,
                ..Default::default()
            },
        );

        // 8,000,000 bytes in the new segment: less than the window, the old step stays.
        for i in 1..8 {
            write_pattern(&files[1], i * 1_000_000, 1_000_000);
            d.append(&second, i * 1_000_000, (i + 1) * 1_000_000);
        }
        assert!(d.evicted.is_empty());
        // 9,000,000: the new segment's first step is handed over, and the old step is a
        // window behind.
        write_pattern(&files[1], 8_000_000, 1_000_000);
        d.append(&second, 8_000_000, 9_000_000);
        assert_eq!(d.evicted, [range(&first, 0, 5_000_000)]);
        assert_eq!(d.behind(), [range(&second, 0, 8_998_912)]);
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 2,
                steps_evicted: 1,
                bytes_evicted: 5_000_000,
                jobs_skipped: 0,
            },
        );
        if page_cache_evicts(dir.path()) {
            // Every page of the old segment, its partial last page included (the range ends
            // at the end of the file).
            assert_eq!(resident_pages(&first, 0, 5_000_000).0, 0);
            let (resident, pages) = resident_pages(&second, 0, 9_000_000);
            assert_eq!(resident, pages);
        }
        drop(files);
        assert_pattern(&first, 5_000_000);
        assert_pattern(&second, 9_000_000);
    }

    #[test]
    fn an_append_below_the_open_step_after_a_truncation_starts_a_new_step() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        File::create(&path).unwrap();
        let mut d = Driver::new(8 * MIB);
        for i in 0..6 {
            d.append(&path, i * 1_000_000, (i + 1) * 1_000_000);
        }
        assert!(d.behind().is_empty());
        // The log was cut to 2,000,100 bytes and is appended to from there: the open step is
        // handed over up to the cut (past it is new data), and the new one starts at the cut
        // (no page boundary).
        d.append(&path, 2_000_100, 3_000_100);
        assert_eq!(d.behind(), [range(&path, 0, 2_000_100)]);
        assert_eq!(d.open(), range(&path, 2_000_100, 3_000_100));
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 1,
                ..Default::default()
            },
        );
        // A step from the cut once 8 MiB were appended after it (11,000,100 bytes), up to a
        // page boundary; the step before the cut is then a window behind.
        for i in 3..11 {
            d.append(&path, i * 1_000_000 + 100, (i + 1) * 1_000_000 + 100);
        }
        assert_eq!(d.evicted, [range(&path, 0, 2_000_100)]);
        assert_eq!(d.behind(), [range(&path, 2_000_100, 10_997_760)]);
        assert_eq!(d.open(), range(&path, 10_997_760, 11_000_100));
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 2,
                steps_evicted: 1,
                bytes_evicted: 2_000_100,
                jobs_skipped: 0,
            },
        );
        // A cut inside the open step starts one too, and clips the open one.
        d.append(&path, 10_999_000, 11_500_000);
        assert_eq!(
            d.behind(),
            [
                range(&path, 2_000_100, 10_997_760),
                range(&path, 10_997_760, 10_999_000)
            ]
        );
        assert_eq!(d.open(), range(&path, 10_999_000, 11_500_000));
        // A cut below a waiting step clips it and drops those wholly past the cut (called
        // directly: the driver's bookkeeping assumes steps are never changed once waiting).
        d.window
            .after_append(&d.trimmer, &path, 5_000_000, 5_100_000);
        assert_eq!(d.behind(), [range(&path, 2_000_100, 5_000_000)]);
        assert_eq!(d.open(), range(&path, 5_000_000, 5_100_000));
    }

    #[test]
    fn jobs_for_a_file_that_is_gone_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("00000000000000000000.log");
        let there = dir.path().join("00000000000000001000.log");
        File::create(&there).unwrap();
        let mut d = Driver::new(8 * MIB);
        // Two steps of a file that does not exist (deleted by retention, say), the first a
        // window behind: two writebacks and an eviction, all skipped.
        for i in 0..18 {
            d.append(&gone, i * 1_000_000, (i + 1) * 1_000_000);
        }
        assert_eq!(d.expected.steps_written, 2);
        assert_eq!(d.expected.steps_evicted, 1);
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                jobs_skipped: 3,
                ..Default::default()
            },
        );
        // The thread goes on: the next segment's step is written back, and the gone file's
        // last two steps (the second, and the rest closed by the roll) are skipped again.
        for i in 0..9 {
            d.append(&there, i * 1_000_000, (i + 1) * 1_000_000);
        }
        assert_eq!(d.behind(), [range(&there, 0, 8_998_912)]);
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 1,
                jobs_skipped: 6,
                ..Default::default()
            },
        );
    }

    #[test]
    fn a_window_below_one_step_is_raised_to_one_step() {
        for asked in [0, 1, MIB, CACHE_STEP_BYTES - 1] {
            let trimmer = CacheTrimmer::start(asked).unwrap();
            assert_eq!(trimmer.window_bytes(), CACHE_STEP_BYTES, "asked {asked}");
        }
        for asked in [CACHE_STEP_BYTES, CACHE_STEP_BYTES + 1, 256 * MIB] {
            assert_eq!(CacheTrimmer::start(asked).unwrap().window_bytes(), asked);
        }

        // With 1 MiB asked for, a step stays until 8 MiB are newer than it.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("00000000000000000000.log");
        File::create(&path).unwrap();
        let mut d = Driver::new(MIB);
        for i in 0..15 {
            d.append(&path, i * MIB, (i + 1) * MIB);
        }
        assert_eq!(d.behind(), [range(&path, 0, 8 * MIB)]);
        assert!(d.evicted.is_empty());
        d.append(&path, 15 * MIB, 16 * MIB);
        assert_eq!(d.evicted, [range(&path, 0, 8 * MIB)]);
        assert_stats(
            &d.trimmer,
            CacheTrimStats {
                steps_written: 2,
                steps_evicted: 1,
                bytes_evicted: 8 * MIB,
                jobs_skipped: 0,
            },
        );
    }
}

//! Page cache pages for the next appends, made ready by another thread.
//!
//! Every new page an append writes must first exist in the page cache: the kernel allocates it,
//! zeroes it and, on a VM whose free memory was handed back to the host (free page reporting,
//! balloons), the host backs it again on first touch. On the 2-vCPU VM this project is
//! measured on that costs ~9 µs per 4 KiB page once recently freed memory runs out: a single
//! thread writing new pages then tops out at ~450 MB/s, and the one thread appending to a busy
//! partition pays it inside the partition's lock, in every producer's latency
//! (BENCHMARKS.md, twelfth session).
//!
//! A [`Prefaulter`] moves that work off the appending thread (the broker starts one only when
//! `log_prefault_ahead_bytes_max` is set: its CPU competes with producers and consumers, and on
//! the benchmark VM it raised e2e p99 at moderate rates while adding 8% to sustained produce
//! into new pages). Only while new pages are slow:
//! a log times its large appends that land in unprepared pages ([`ColdPages`]), and
//! prefaulting pages that would have been cheap costs a burst ~10% (the kernel zeroes pages a
//! full-page write would not). While they are slow, after an append of a large blob the log
//! extends its active segment file (a sparse `ftruncate`, see
//! [`crate::io::LogFile::preallocate`]) a few MiB past its data and hands the new range to
//! the prefaulter's thread, which asks the kernel to read it ahead (`posix_fadvise
//! WILLNEED`): reading a hole creates zeroed, clean page cache pages without any disk I/O. The
//! appends that follow overwrite pages that already exist. Clean pages are never written back,
//! so the extension costs no disk bandwidth; if the prefaulter falls behind, appends fault
//! pages in themselves, as before.
//!
//! The extension is trimmed when the segment rolls or the log closes, so closed segments and
//! cleanly closed active segments end exactly at their last batch. After a crash the active
//! segment may end in zeros; recovery recognises a tail of zeros and cuts it off without
//! calling it corruption.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

/// Appends smaller than this do not prefault: a partition written in small blobs (thousands of
/// partitions, slow producers) needs few new pages per second, and zeroed pages ahead of
/// thousands of logs would only take memory.
pub const PREFAULT_APPEND_BYTES_MIN: usize = 32 * 1024;

/// How far ahead of the data a log prefaults, in appends of the size just made: 32 appends of
/// 256 KiB keep 8 MiB ready (~16 ms of appends at 500 MB/s).
const PREFAULT_AHEAD_APPENDS: u64 = 32;

/// An unprefaulted append slower than this many ns per KiB (1 GB/s) met new pages that cost a
/// fault each: writes into pages freed a moment ago run at 3.6-6 GB/s on the benchmark VM,
/// into new pages at ~0.45 GB/s.
const COLD_WRITE_NS_PER_KIB: u64 = 1024;

/// Appends prefaulted for after one slow unprefaulted append; then the log writes without
/// prefaulting again and looks at how long that takes. Prefaulting pages that would have been
/// cheap anyway costs ~10% of a burst's throughput (zeroed pages, the read-ahead path), so it
/// is only kept while new pages are expensive.
const PREFAULT_SPAN_BYTES: u64 = 256 * 1024 * 1024;

/// Bytes asked of the kernel per `posix_fadvise` call: the kernel reads ahead at most the
/// device's read-ahead window per call (`read_ahead_kb`, 128 KiB by default), so larger
/// requests would be cut short.
const ADVISE_CHUNK_BYTES: u64 = 128 * 1024;

/// Ranges waiting for the thread at most; when full, new ranges are dropped (their appends
/// fault pages in themselves).
const QUEUED_JOBS_MAX: usize = 64;

/// Counters of a [`Prefaulter`], for logs and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrefaultStats {
    /// Ranges prefaulted.
    pub jobs_done: u64,
    /// Ranges dropped because the queue was full.
    pub jobs_dropped: u64,
    /// Bytes of those ranges (some may have been in the page cache already).
    pub bytes_advised: u64,
}

/// A thread that populates the page cache ahead of appends (see the module docs). Shared by
/// every log of a broker through [`crate::LogOpenOptions`]; the thread ends when the last
/// handle is dropped.
#[derive(Debug)]
pub struct Prefaulter {
    ahead_bytes_max: u64,
    always: bool,
    queue: Mutex<SyncSender<PrefaultJob>>,
    counters: Arc<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    jobs_done: AtomicU64,
    jobs_dropped: AtomicU64,
    bytes_advised: AtomicU64,
}

impl Prefaulter {
    /// Starts the thread. A log keeps at most `ahead_bytes_max` bytes prefaulted past its data,
    /// while its appends into new pages are slow (see [`ColdPages`]) or, if `always`, after
    /// every large append.
    pub fn start(ahead_bytes_max: u64, always: bool) -> std::io::Result<Arc<Prefaulter>> {
        let (queue, jobs) = sync_channel::<PrefaultJob>(QUEUED_JOBS_MAX);
        let counters = Arc::new(Counters::default());
        let thread_counters = counters.clone();
        std::thread::Builder::new()
            .name("strom-prefault".to_string())
            .spawn(move || {
                for job in jobs {
                    job.run();
                    thread_counters.jobs_done.fetch_add(1, Ordering::Relaxed);
                    thread_counters
                        .bytes_advised
                        .fetch_add(job.to - job.from, Ordering::Relaxed);
                }
            })?;
        Ok(Arc::new(Prefaulter {
            ahead_bytes_max,
            always,
            queue: Mutex::new(queue),
            counters,
        }))
    }

    /// How far past its data a log should keep its active segment prefaulted after appending
    /// `append_bytes` at once (0: not at all).
    pub(crate) fn ahead_bytes_for(&self, append_bytes: usize) -> u64 {
        if append_bytes < PREFAULT_APPEND_BYTES_MIN {
            return 0;
        }
        (append_bytes as u64)
            .saturating_mul(PREFAULT_AHEAD_APPENDS)
            .min(self.ahead_bytes_max)
    }

    /// Whether every large append is prefaulted, slow pages or not.
    pub(crate) fn always(&self) -> bool {
        self.always
    }

    /// Queues a range; drops it when the queue is full.
    pub(crate) fn submit(&self, job: PrefaultJob) {
        let queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        match queue.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                job.state.in_flight.store(false, Ordering::Release);
                self.counters.jobs_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> PrefaultStats {
        PrefaultStats {
            jobs_done: self.counters.jobs_done.load(Ordering::Relaxed),
            jobs_dropped: self.counters.jobs_dropped.load(Ordering::Relaxed),
            bytes_advised: self.counters.bytes_advised.load(Ordering::Relaxed),
        }
    }
}

/// Unprefaulted appends judged together: one append can be slow for other reasons (the
/// thread preempted, a few new pages among reused ones); 8 in a row that are slow on the whole
/// are not.
const TIMED_APPENDS_PER_VERDICT: u32 = 8;

/// Whether one log prefaults: after [`TIMED_APPENDS_PER_VERDICT`] unprefaulted appends that
/// were slow on the whole (new pages were expensive), for the next [`PREFAULT_SPAN_BYTES`]
/// appended.
#[derive(Debug, Default)]
pub(crate) struct ColdPages {
    prefault_left_bytes: u64,
    timed_appends: u32,
    timed_bytes: u64,
    timed_ns: u64,
}

impl ColdPages {
    /// Whether an append of `append_bytes` that lands outside prefaulted space should be
    /// timed (large enough to tell).
    pub(crate) fn worth_timing(append_bytes: usize) -> bool {
        append_bytes >= PREFAULT_APPEND_BYTES_MIN
    }

    /// Records how much CPU time (see [`thread_cpu_ns`]) an unprefaulted append of
    /// `append_bytes` took.
    pub(crate) fn record_unprefaulted(&mut self, append_bytes: usize, cpu_ns: u64) {
        self.timed_appends += 1;
        self.timed_bytes = self.timed_bytes.saturating_add(append_bytes as u64);
        self.timed_ns = self.timed_ns.saturating_add(cpu_ns);
        if self.timed_appends < TIMED_APPENDS_PER_VERDICT {
            return;
        }
        let limit_ns = (self.timed_bytes / 1024).saturating_mul(COLD_WRITE_NS_PER_KIB);
        if self.timed_ns > limit_ns {
            if self.prefault_left_bytes == 0 {
                tracing::debug!(
                    ns_per_kib = self.timed_ns / (self.timed_bytes / 1024).max(1),
                    "appends into new pages are slow; prefaulting the next ones"
                );
            }
            self.prefault_left_bytes = PREFAULT_SPAN_BYTES;
        }
        self.timed_appends = 0;
        self.timed_bytes = 0;
        self.timed_ns = 0;
    }

    /// Whether to prefault after an append of `append_bytes`; counts it against the span.
    pub(crate) fn take(&mut self, append_bytes: usize) -> bool {
        if self.prefault_left_bytes == 0 {
            return false;
        }
        self.prefault_left_bytes = self.prefault_left_bytes.saturating_sub(append_bytes as u64);
        true
    }
}

/// CPU time the calling thread has used, in ns: how long an append took without the time
/// the thread waited for a CPU (the host's work on a fault counts as the thread's time).
pub(crate) fn thread_cpu_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into `now`, which lives across the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    if rc != 0 {
        return 0;
    }
    (now.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(now.tv_nsec as u64)
}

/// What a log file and the prefault thread share about the file's job.
///
/// While the kernel reads a range of a file ahead, it holds the file's invalidate lock (shared),
/// and changing the file's length (`ftruncate`, up or down) takes it exclusively: an append
/// that extended or trimmed the file during its own job would wait for the job, and a job
/// whose thread is preempted can hold that lock for a long time (500+ ms measured with a
/// `SCHED_IDLE` prefault thread on a busy CPU). So a file is not extended while its job is in
/// flight, and before a file is cut the job is told to stop at its next chunk.
#[derive(Debug, Default)]
pub(crate) struct PrefaultState {
    /// A job for this file is queued or running.
    pub(crate) in_flight: AtomicBool,
    /// The file is being cut: a running job stops before its next chunk.
    pub(crate) cancelled: AtomicBool,
}

/// A byte range of a segment file, past its data and within its (extended) length, whose page
/// cache pages should exist before the appends reach it.
#[derive(Debug)]
pub(crate) struct PrefaultJob {
    pub(crate) file: Arc<File>,
    pub(crate) from: u64,
    pub(crate) to: u64,
    pub(crate) state: Arc<PrefaultState>,
}

impl PrefaultJob {
    /// Asks the kernel to read the range ahead, a chunk at a time, unless the file is being cut.
    /// Pages already cached (written meanwhile) are skipped by the kernel; a range the file no
    /// longer reaches is ignored. Errors are ignored too: prefaulting is only ever an
    /// optimisation. Marks the job done at the end.
    pub(crate) fn run(&self) {
        self.advise();
        self.state.in_flight.store(false, Ordering::Release);
    }

    fn advise(&self) {
        let fd = self.file.as_raw_fd();
        let mut at = self.from;
        while at < self.to {
            if self.state.cancelled.load(Ordering::Acquire) {
                return;
            }
            let len = ADVISE_CHUNK_BYTES.min(self.to - at);
            // SAFETY: posix_fadvise only reads its integer arguments; `fd` stays open while
            // `self.file` lives.
            unsafe {
                libc::posix_fadvise(
                    fd,
                    at as libc::off_t,
                    len as libc::off_t,
                    libc::POSIX_FADV_WILLNEED,
                );
            }
            at += len;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_appends_do_not_prefault_and_large_ones_are_capped() {
        let prefaulter = Prefaulter::start(16 << 20, false).unwrap();
        assert_eq!(prefaulter.ahead_bytes_for(0), 0);
        assert_eq!(prefaulter.ahead_bytes_for(PREFAULT_APPEND_BYTES_MIN - 1), 0);
        assert_eq!(
            prefaulter.ahead_bytes_for(PREFAULT_APPEND_BYTES_MIN),
            PREFAULT_APPEND_BYTES_MIN as u64 * PREFAULT_AHEAD_APPENDS
        );
        assert_eq!(prefaulter.ahead_bytes_for(256 * 1024), 8 << 20);
        assert_eq!(prefaulter.ahead_bytes_for(64 << 20), 16 << 20);
        assert_eq!(prefaulter.ahead_bytes_for(usize::MAX), 16 << 20);
    }

    /// Pages of the range are in the page cache after the job ran (`mincore` over a mapping
    /// of the file), although nothing was ever written there.
    #[test]
    fn a_job_puts_the_range_of_a_sparse_file_in_the_page_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let len_bytes: u64 = 4 << 20;
        file.set_len(len_bytes).unwrap();
        let file = Arc::new(file);
        let resident_before = resident_pages(&file, len_bytes);
        PrefaultJob {
            file: file.clone(),
            from: 1 << 20,
            to: len_bytes,
            state: Arc::new(PrefaultState::default()),
        }
        .run();
        let resident_after = resident_pages(&file, len_bytes);
        let page = page_size();
        let wanted = ((len_bytes - (1 << 20)) / page) as usize;
        assert!(
            resident_after >= resident_before + wanted * 9 / 10,
            "{resident_before} pages resident before, {resident_after} after, {wanted} advised"
        );
    }

    #[test]
    fn only_slow_unprefaulted_appends_start_a_prefault_span() {
        let mut cold = ColdPages::default();
        assert!(!cold.take(256 * 1024));
        // 256 KiB in 60 µs (4.4 GB/s): pages were cheap. One slow append among them does not
        // tip the verdict.
        cold.record_unprefaulted(256 * 1024, 550_000);
        for _ in 1..TIMED_APPENDS_PER_VERDICT {
            cold.record_unprefaulted(256 * 1024, 60_000);
        }
        assert!(!cold.take(256 * 1024));
        // 256 KiB in 550 µs (0.48 GB/s): new pages fault.
        for _ in 0..TIMED_APPENDS_PER_VERDICT - 1 {
            cold.record_unprefaulted(256 * 1024, 550_000);
            assert!(!cold.take(256 * 1024), "no verdict before 8 appends");
        }
        cold.record_unprefaulted(256 * 1024, 550_000);
        let appends = PREFAULT_SPAN_BYTES / (256 * 1024);
        for _ in 0..appends {
            assert!(cold.take(256 * 1024));
        }
        assert!(!cold.take(256 * 1024));
        assert!(!ColdPages::worth_timing(PREFAULT_APPEND_BYTES_MIN - 1));
        assert!(ColdPages::worth_timing(PREFAULT_APPEND_BYTES_MIN));
    }

    #[test]
    fn a_full_queue_drops_ranges_instead_of_blocking() {
        let prefaulter = Prefaulter::start(1 << 20, false).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("f")).unwrap());
        for _ in 0..QUEUED_JOBS_MAX * 4 {
            prefaulter.submit(PrefaultJob {
                file: file.clone(),
                from: 0,
                to: 0,
                state: Arc::new(PrefaultState::default()),
            });
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let stats = prefaulter.stats();
            if stats.jobs_done + stats.jobs_dropped == (QUEUED_JOBS_MAX * 4) as u64 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "{stats:?}");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    #[test]
    fn a_cancelled_job_advises_nothing_more_and_is_marked_done() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("sparse"))
            .unwrap();
        file.set_len(4 << 20).unwrap();
        let file = Arc::new(file);
        let state = Arc::new(PrefaultState::default());
        state.in_flight.store(true, Ordering::Release);
        state.cancelled.store(true, Ordering::Release);
        PrefaultJob {
            file: file.clone(),
            from: 0,
            to: 4 << 20,
            state: state.clone(),
        }
        .run();
        assert!(!state.in_flight.load(Ordering::Acquire));
        assert_eq!(resident_pages(&file, 4 << 20), 0);
    }

    fn page_size() -> u64 {
        // SAFETY: sysconf has no preconditions.
        unsafe { libc::sysconf(libc::_SC_PAGESIZE) as u64 }
    }

    fn resident_pages(file: &File, len_bytes: u64) -> usize {
        let page = page_size();
        let pages = len_bytes.div_ceil(page) as usize;
        let mut vec = vec![0u8; pages];
        // SAFETY: a private read-only mapping of `len_bytes` of an open file, unmapped before
        // returning; mincore writes one byte per page into `vec`, which holds `pages` bytes.
        unsafe {
            let addr = libc::mmap(
                std::ptr::null_mut(),
                len_bytes as usize,
                libc::PROT_READ,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            );
            assert_ne!(addr, libc::MAP_FAILED);
            let rc = libc::mincore(addr, len_bytes as usize, vec.as_mut_ptr());
            libc::munmap(addr, len_bytes as usize);
            assert_eq!(rc, 0);
        }
        vec.iter().filter(|b| **b & 1 == 1).count()
    }
}

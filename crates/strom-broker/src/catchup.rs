//! Catch-up reads at a lower CPU priority.
//!
//! A consumer replaying old data (a batch job reading a day of records, a new replica of a
//! service starting from the beginning) asks for as many bytes as the broker can move, and
//! on a machine whose cores are all busy every byte it gets is CPU taken from producers and
//! from consumers at the tail. Kafka leaves this to the disk (old data is read from it, new
//! data is in the page cache); Redpanda gives fetches a smaller CPU share than produce. Strom
//! does the latter with the kernel's scheduler: a fetch that starts more than
//! `fetch_catchup_lag_bytes` behind the log end has its bytes read (`pread`) and written to
//! the socket (`sendmsg`) by [`CatchUpIo`]'s threads, which run at a higher nice value. When
//! the CPU is free they run as fast as any other thread; when it is not, producers come
//! first, and the catch-up consumer, waiting for its bytes, slows down with them.
//!
//! A lower priority alone does not protect producers on a small machine: moving bytes costs
//! the broker little, and most of a fast consumer's cost is its own (receiving and parsing a
//! gigabyte a second), which the broker's scheduling cannot touch. So while producers are
//! active (an append within the last [`PRODUCE_ACTIVE_WINDOW_MS`]), catch-up reads also share
//! a byte budget, `fetch_catchup_bytes_per_sec` over the whole broker ([`CatchUpBudget`]): a
//! catch-up fetch whose bytes would overdraw it is answered later, as Kafka's quotas delay a
//! throttled fetch. With no producers they run as fast as the machine allows.
//!
//! Everything else about the fetch (planning under the partition lock, encoding, the order of
//! responses) stays on the connection's task; only the copying moves. The connection hands
//! the threads a duplicate of its socket descriptor and waits for them, so the stream is never
//! written from two places at once, and a job whose connection went away meanwhile writes to
//! a socket that is still open (the duplicate) and fails harmlessly.
//!
//! Limits: a connection has at most one job queued or running (it waits for it), so the queue
//! holds at most `connections_max` jobs; a write job waits at most [`WRITE_WAIT_MS_MAX`] for a
//! full socket buffer, then hands what is left back to the connection's task, so a consumer
//! that stops reading never holds a thread.

use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Longest a write job waits for room in a socket's send buffer before it returns the rest
/// of the frame to the connection's task.
pub const WRITE_WAIT_MS_MAX: u64 = 20;

/// Producers count as active this long after the last append.
pub const PRODUCE_ACTIVE_WINDOW_MS: u64 = 1000;

/// The budget's bucket holds this much time's worth of bytes: a consumer that starts to
/// catch up cannot take a second's worth at once.
pub const BUDGET_BURST_MS: u64 = 100;

/// Longest one catch-up fetch is held back by the budget, whatever the overdraft (many
/// catch-up consumers at once then share more than the budget rather than time out).
pub const BUDGET_WAIT_MS_MAX: u64 = 1000;

/// Chunks handed to one `sendmsg` at most (Linux's IOV_MAX is 1024).
const IOV_CHUNKS_MAX: usize = 64;

type Job = Box<dyn FnOnce() + Send>;

/// Samples [`RecentAppends`] keeps at most: with one per eighth of the tail window, two
/// windows' worth.
const RECENT_SAMPLES_MAX: usize = 16;

/// How many bytes a partition received lately, so a fetch can tell a consumer close behind
/// the producers (however many bytes that is on a fast partition) from one replaying old data.
///
/// Without it, a consumer of a partition written at 400 MB/s that fell 64 MiB behind (160 ms:
/// a stall of the consumer or of the machine) had its fetches turned into catch-up reads,
/// limited to `fetch_catchup_bytes_per_sec` and run at a lower priority, so it fell further
/// behind for as long as the producers kept writing.
///
/// Appends are sampled (the partition's running byte count, at most one sample per eighth of
/// the window), so [`RecentAppends::bytes_within`] may miss up to an eighth of a window of
/// appends: it errs towards calling a read a catch-up read, as before.
#[derive(Debug, Default)]
pub struct RecentAppends {
    /// Bytes appended since the partition was opened on this node.
    total_bytes: u64,
    /// `(time_ms, total_bytes before the append at time_ms)`, oldest first.
    samples: std::collections::VecDeque<(i64, u64)>,
}

impl RecentAppends {
    /// Notes an append of `bytes` at `now_ms`, sampling for a tail window of `window_ms`.
    pub fn record(&mut self, now_ms: i64, bytes: u64, window_ms: u64) {
        let spacing_ms = (window_ms / 8).max(1) as i64;
        let due = self
            .samples
            .back()
            .is_none_or(|&(at_ms, _)| now_ms.saturating_sub(at_ms) >= spacing_ms);
        if due {
            if self.samples.len() == RECENT_SAMPLES_MAX {
                self.samples.pop_front();
            }
            self.samples.push_back((now_ms, self.total_bytes));
        }
        self.total_bytes = self.total_bytes.saturating_add(bytes);
    }

    /// Bytes appended within `window_ms` before `now_ms` (counted from the first sample in
    /// the window, so possibly fewer).
    pub fn bytes_within(&self, now_ms: i64, window_ms: u64) -> u64 {
        let since_ms = now_ms.saturating_sub(window_ms.min(i64::MAX as u64) as i64);
        self.samples
            .iter()
            .find(|&&(at_ms, _)| at_ms >= since_ms)
            .map_or(0, |&(_, before)| self.total_bytes - before)
    }
}

/// The byte budget of catch-up reads while producers are active: a token bucket filled at
/// `bytes_per_sec`, holding at most [`BUDGET_BURST_MS`] of it. A read takes its bytes at once (the
/// bucket may go negative) and waits until the bucket would have covered them.
#[derive(Debug)]
pub struct CatchUpBudget {
    bytes_per_sec: u64,
    /// When the last append happened, in ms since `epoch`.
    last_append_ms: AtomicU64,
    epoch: Instant,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes available (negative: owed).
    bytes: f64,
    refilled_at: Instant,
}

impl CatchUpBudget {
    /// A budget of `bytes_per_sec` (0: unlimited).
    pub fn new(bytes_per_sec: u64) -> CatchUpBudget {
        let now = Instant::now();
        CatchUpBudget {
            bytes_per_sec,
            last_append_ms: AtomicU64::new(0),
            epoch: now,
            bucket: Mutex::new(Bucket {
                bytes: Self::burst_bytes(bytes_per_sec),
                refilled_at: now,
            }),
        }
    }

    fn burst_bytes(bytes_per_sec: u64) -> f64 {
        bytes_per_sec as f64 * BUDGET_BURST_MS as f64 / 1000.0
    }

    /// Notes an append (called by every produce request that appended).
    pub fn appended(&self) {
        let now_ms = self.epoch.elapsed().as_millis() as u64 + 1;
        // Only store when the value changes, so the cache line is not written per request.
        if self.last_append_ms.load(Ordering::Relaxed) != now_ms {
            self.last_append_ms.store(now_ms, Ordering::Relaxed);
        }
    }

    /// Whether an append happened within [`PRODUCE_ACTIVE_WINDOW_MS`].
    pub fn producers_active(&self) -> bool {
        let last_ms = self.last_append_ms.load(Ordering::Relaxed);
        last_ms > 0
            && (self.epoch.elapsed().as_millis() as u64 + 1).saturating_sub(last_ms)
                <= PRODUCE_ACTIVE_WINDOW_MS
    }

    /// How long a catch-up read of `bytes` must wait before it goes out (zero when producers
    /// are idle or the budget is unlimited); takes the bytes from the budget.
    pub fn reserve(&self, bytes: usize) -> Duration {
        if self.bytes_per_sec == 0 || !self.producers_active() {
            return Duration::ZERO;
        }
        let rate = self.bytes_per_sec as f64;
        let mut bucket = self.bucket.lock();
        let now = Instant::now();
        let refill = now.duration_since(bucket.refilled_at).as_secs_f64() * rate;
        bucket.bytes = (bucket.bytes + refill).min(Self::burst_bytes(self.bytes_per_sec));
        bucket.refilled_at = now;
        bucket.bytes -= bytes as f64;
        if bucket.bytes >= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(-bucket.bytes / rate).min(Duration::from_millis(BUDGET_WAIT_MS_MAX))
    }
}

/// The job was lost: its thread panicked, or the threads are gone.
#[derive(Debug, thiserror::Error)]
#[error("the catch-up thread running the job failed")]
pub struct JobLost;

/// A few threads at a lower CPU priority that run catch-up reads and writes.
#[derive(Debug)]
pub struct CatchUpIo {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl CatchUpIo {
    /// Starts `threads` threads at nice value `nice` (raising the nice value needs no
    /// privilege; if the kernel refuses, they run at the normal priority and say so).
    pub fn start(threads: usize, nice: i32) -> std::io::Result<CatchUpIo> {
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = std::sync::Arc::new(Mutex::new(receiver));
        for index in 0..threads.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("strom-catchup-{index}"))
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = receiver.lock().recv();
                        let Ok(job) = job else { return };
                        // A panicking job drops its reply sender (its caller sees JobLost);
                        // the thread carries on with the next one.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(CatchUpIo {
            jobs: Mutex::new(sender),
        })
    }

    /// Runs `work` on a catch-up thread and waits (asynchronously) for its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, JobLost> {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = reply.send(work());
        });
        if let Err(mpsc::SendError(job)) = self.jobs.lock().send(job) {
            job(); // no threads left: do it here rather than not at all
        }
        answer.await.map_err(|_| JobLost)
    }

    /// Writes `chunks` to the socket `fd` (a duplicate of a connection's descriptor, which the
    /// connection does not write to meanwhile) on a catch-up thread. Returns the bytes not
    /// written because the socket stayed full for [`WRITE_WAIT_MS_MAX`]; the caller writes
    /// those itself.
    pub async fn write(&self, fd: OwnedFd, chunks: Vec<Bytes>) -> std::io::Result<Vec<Bytes>> {
        self.run(move || write_chunks(&fd, chunks, Duration::from_millis(WRITE_WAIT_MS_MAX)))
            .await
            .map_err(std::io::Error::other)?
    }
}

/// Raises the calling thread's nice value to `nice`.
fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    // SAFETY: gettid and setpriority only read their arguments; PRIO_PROCESS with a thread
    // id changes that one thread on Linux.
    let result = unsafe {
        let thread_id = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS as _, thread_id as libc::id_t, nice)
    };
    if result != 0 {
        tracing::warn!(
            nice,
            error = %std::io::Error::last_os_error(),
            "could not lower the catch-up thread's priority"
        );
    }
}

/// Sends `chunks` on the non-blocking socket `fd`, waiting for room at most `wait_max` in
/// all; returns what is left (empty when everything went out).
fn write_chunks(
    fd: &OwnedFd,
    mut chunks: Vec<Bytes>,
    wait_max: Duration,
) -> std::io::Result<Vec<Bytes>> {
    let started = Instant::now();
    let mut first = 0usize;
    while first < chunks.len() {
        let iovecs: Vec<libc::iovec> = chunks[first..]
            .iter()
            .take(IOV_CHUNKS_MAX)
            .map(|c| libc::iovec {
                iov_base: c.as_ptr() as *mut libc::c_void,
                iov_len: c.len(),
            })
            .collect();
        // SAFETY: msghdr is plain data; all-zero is a valid empty header.
        let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
        header.msg_iov = iovecs.as_ptr() as *mut libc::iovec;
        header.msg_iovlen = iovecs.len() as _;
        // SAFETY: `header` points at `iovecs`, which describe live `Bytes` that outlive the
        // call; sendmsg only reads them. MSG_NOSIGNAL: a closed peer gives EPIPE, not SIGPIPE.
        let sent = unsafe { libc::sendmsg(fd.as_raw_fd(), &header, libc::MSG_NOSIGNAL) };
        if sent < 0 {
            let error = std::io::Error::last_os_error();
            match error.kind() {
                std::io::ErrorKind::Interrupted => continue,
                std::io::ErrorKind::WouldBlock => {
                    let waited = started.elapsed();
                    if waited >= wait_max || !wait_writable(fd, wait_max - waited)? {
                        break;
                    }
                    continue;
                }
                _ => return Err(error),
            }
        }
        if sent == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "sendmsg sent 0 bytes",
            ));
        }
        first = strom_protocol::chunked::skip_written(&mut chunks, first, sent as usize);
    }
    chunks.drain(..first);
    Ok(chunks)
}

/// Waits until `fd` can take more bytes, at most `wait`; whether it can.
fn wait_writable(fd: &OwnedFd, wait: Duration) -> std::io::Result<bool> {
    let mut poll_fd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    let timeout_ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd, count 1.
    let ready = unsafe { libc::poll(&mut poll_fd, 1, timeout_ms) };
    if ready < 0 {
        let error = std::io::Error::last_os_error();
        return if error.kind() == std::io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(error)
        };
    }
    // POLLERR/POLLHUP count as ready: the next sendmsg reports the error.
    Ok(ready > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsFd;

    fn socket_pair() -> (std::net::TcpStream, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        server.set_nonblocking(true).unwrap();
        (server, client)
    }

    #[test]
    fn recent_appends_count_the_bytes_of_the_window_only() {
        let mut recent = RecentAppends::default();
        assert_eq!(recent.bytes_within(10_000, 1000), 0, "nothing appended");
        // 100 bytes every 50 ms from t = 0 to t = 2950: sampled at the first append at least
        // 125 ms after the last sample, so at t = 0, 150, 300, ..., 2850 (the last 16 kept).
        for step in 0..60 {
            recent.record(step * 50, 100, 1000);
        }
        assert_eq!(recent.samples.len(), RECENT_SAMPLES_MAX);
        assert_eq!(recent.samples.front(), Some(&(600, 1200)));
        // The window [1990, 2990] holds 20 appends; counted from the sample at 2100: 18.
        assert_eq!(recent.bytes_within(2990, 1000), 1800);
        // A window reaching past the oldest kept sample counts from it.
        assert_eq!(recent.bytes_within(2990, 60_000), 4800);
        // Long after the last append, nothing is recent.
        assert_eq!(recent.bytes_within(10_000, 1000), 0);
        // A burst after a pause counts from its own first append.
        recent.record(20_000, 7, 1000);
        recent.record(20_001, 5, 1000);
        assert_eq!(recent.bytes_within(20_500, 1000), 12);
    }

    #[test]
    fn recent_appends_survive_a_clock_that_steps_back() {
        let mut recent = RecentAppends::default();
        recent.record(5000, 10, 1000);
        recent.record(1000, 10, 1000);
        recent.record(i64::MIN, 10, 1000);
        assert_eq!(recent.bytes_within(5000, 1000), 30);
        assert_eq!(recent.bytes_within(i64::MIN, u64::MAX), 30);
    }

    #[tokio::test]
    async fn a_write_job_sends_every_chunk_in_order() {
        let io = CatchUpIo::start(2, 10).unwrap();
        let (server, mut client) = socket_pair();
        let chunks: Vec<Bytes> = (0u8..50)
            .map(|i| Bytes::from(vec![i; 1000 + i as usize]))
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.to_vec()).collect();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; expected.len()];
            client.read_exact(&mut got).unwrap();
            assert_eq!(got, expected);
        });
        let fd = server.as_fd().try_clone_to_owned().unwrap();
        let rest = io.write(fd, chunks).await.unwrap();
        assert!(rest.is_empty());
        reader.join().unwrap();
    }

    #[tokio::test]
    async fn a_reader_that_stops_gets_the_rest_back_instead_of_holding_a_thread() {
        let io = CatchUpIo::start(1, 0).unwrap();
        let (server, client) = socket_pair();
        // 64 MiB cannot fit in the socket buffers while nobody reads.
        let total_bytes = 64 * 1024 * 1024;
        let chunks = vec![Bytes::from(vec![7u8; total_bytes / 4]); 4];
        let fd = server.as_fd().try_clone_to_owned().unwrap();
        let rest = io.write(fd, chunks).await.unwrap();
        let left: usize = rest.iter().map(Bytes::len).sum();
        assert!(left > 0 && left < total_bytes, "left {left} bytes");
        // The thread is free again.
        assert_eq!(io.run(|| 42).await.unwrap(), 42);
        drop(client);
    }

    #[test]
    fn the_budget_paces_only_while_producers_are_active() {
        let budget = CatchUpBudget::new(1_000_000);
        // No appends yet: unlimited.
        assert_eq!(budget.reserve(50_000_000), Duration::ZERO);
        budget.appended();
        assert!(budget.producers_active());
        // The bucket starts with BUDGET_BURST_MS (100 ms, 100 KB) of budget.
        assert_eq!(budget.reserve(60_000), Duration::ZERO);
        // 240 KB more overdraws it by about 200 KB: about 0.2 s.
        let wait = budget.reserve(240_000);
        assert!(
            wait > Duration::from_millis(100) && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // A huge overdraft waits at most BUDGET_WAIT_MS_MAX.
        assert_eq!(
            budget.reserve(100_000_000),
            Duration::from_millis(BUDGET_WAIT_MS_MAX)
        );
        // Unlimited budgets never wait.
        let unlimited = CatchUpBudget::new(0);
        unlimited.appended();
        assert_eq!(unlimited.reserve(usize::MAX), Duration::ZERO);
    }

    #[tokio::test]
    async fn a_panicking_job_is_reported_and_the_thread_survives() {
        let io = CatchUpIo::start(1, 0).unwrap();
        let lost = io.run(|| -> u32 { panic!("job failed on purpose") }).await;
        assert!(lost.is_err());
        assert_eq!(io.run(|| 7).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_closed_peer_is_an_error_not_a_signal() {
        let io = CatchUpIo::start(1, 0).unwrap();
        let (server, client) = socket_pair();
        drop(client);
        let fd = server.as_fd().try_clone_to_owned().unwrap();
        let mut outcome = Ok(Vec::new());
        for _ in 0..20 {
            let chunks = vec![Bytes::from(vec![1u8; 256 * 1024])];
            let fd = fd.try_clone().unwrap();
            outcome = io.write(fd, chunks).await;
            if outcome.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(outcome.is_err(), "writing to a closed peer kept succeeding");
    }
}

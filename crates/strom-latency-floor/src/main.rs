//! `latency-floor`: the end-to-end latency a log broker could reach on this machine if it did
//! nothing but move bytes, measured the way `strom bench e2e` measures Strom's.
//!
//! `../shared/tools/wire-limit` is the speed of light for throughput; it has no latency mode.
//! This tool is its counterpart for `strom bench e2e`'s latency target:
//!
//! - `pipeline`: a paced producer (open loop: record `i` is due at `i / rate` seconds, stamped with
//!   its due time, batched by linger and size like a Kafka producer) writes frames over loopback
//!   TCP to a "broker" thread that appends them to a file (the page cache) and acks them; a second
//!   broker thread reads each appended range back from the file and writes it over loopback TCP
//!   to a consumer, which records `receive time - due time` for every record. No protocol work,
//!   no CRCs, no batching decisions beyond linger: whatever latency this shows, a broker on this
//!   machine cannot beat.
//! - `gaps`: one thread per CPU spins reading the clock and reports every stretch over 0.5 ms in
//!   which it did not run (the guest kernel's threads, the hypervisor). Those stretches bound any
//!   tail latency from below.
//!
//! Both print a human line on stderr and one JSON line on stdout.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;

/// Highest latency recorded, in microseconds (longer ones are clamped).
const LATENCY_US_MAX: u64 = 600_000_000;
/// Intervals reported at most (`--interval-ms`); later records count only in the whole run.
const INTERVALS_MAX: usize = 1_000;
/// Bytes the fetch side reads from the file and writes to the consumer at once, at most.
const FETCH_CHUNK_BYTES: usize = 1024 * 1024;
/// Frame length prefix, in bytes.
const FRAME_HEADER_BYTES: usize = 4;
/// Stamp (due time in ns since the start, big-endian) at the front of every record, in bytes.
const STAMP_BYTES: usize = 8;
/// `gaps`: a stretch without the clock advancing for this long counts as a gap, in ns.
const GAP_MIN_NS: u64 = 500_000;

#[derive(Debug, Parser)]
#[command(
    name = "latency-floor",
    about = "The e2e latency floor of this machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Paced producer -> loopback -> page cache -> loopback -> consumer, with no protocol work.
    Pipeline(PipelineArgs),
    /// One spinning thread per CPU; reports the stretches in which a thread did not run.
    Gaps(GapsArgs),
}

#[derive(Debug, Args)]
struct PipelineArgs {
    /// Record size in bytes (at least 8: the due time travels in the record).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Records per second (open loop).
    #[arg(long)]
    rate: u64,
    /// Seconds of sending.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// A batch goes out this long after its first record was due, in milliseconds.
    #[arg(long, default_value_t = 1)]
    linger_ms: u64,
    /// A batch goes out when it holds this many bytes of records.
    #[arg(long, default_value_t = 64 * 1024)]
    batch_bytes: usize,
    /// Also report p50/p99/max per this many milliseconds of due time (0: off).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Directory for the log file (removed at the end).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// MiB of the newest appends left in the page cache: older ones are written back and
    /// evicted by a helper thread, 8 MiB at a time, as Strom's `log_cache_window_bytes` does
    /// (the same page cache work as Strom's log, so the floor stays a floor). 0: off.
    #[arg(long, default_value_t = 1024)]
    cache_window_mib: u64,
}

#[derive(Debug, Args)]
struct GapsArgs {
    /// Seconds to spin.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Spinning threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Pipeline(args) => pipeline(&args),
        Command::Gaps(args) => gaps(&args),
    }
}

fn latency_histogram(significant_digits: u8) -> anyhow::Result<Histogram<u64>> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, significant_digits).context("histogram bounds")
}

/// The appended end of the log, shared by the append and the fetch side.
#[derive(Default)]
struct LogEnd {
    state: Mutex<LogEndState>,
    grown: Condvar,
}

#[derive(Default)]
struct LogEndState {
    end_bytes: u64,
    closed: bool,
}

impl LogEnd {
    fn publish(&self, end_bytes: u64, closed: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.end_bytes = end_bytes;
        state.closed |= closed;
        self.grown.notify_one();
    }

    /// Waits until the end moves past `known_bytes` or the log closes: (end, closed).
    fn wait_past(&self, known_bytes: u64) -> (u64, bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while state.end_bytes == known_bytes && !state.closed {
            state = self.grown.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        (state.end_bytes, state.closed)
    }
}

/// Bytes of appends handed to the cache trimming thread at once (as Strom's
/// `strom_storage::cache_window::CACHE_STEP_BYTES`).
const CACHE_STEP_BYTES: u64 = 8 * 1024 * 1024;

/// Writes back and evicts appended ranges once they are `window_bytes` behind the end of the
/// file: `ranges` carries each completed step, whose writeback starts at once.
fn trim_cache(file: File, window_bytes: u64, ranges: std::sync::mpsc::Receiver<(u64, u64)>) {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    let mut behind = std::collections::VecDeque::new();
    for (from, to) in ranges {
        // SAFETY (all three calls): they only read their integer arguments; `fd` is open while
        // `file` lives.
        unsafe {
            libc::sync_file_range(
                fd,
                from as i64,
                (to - from) as i64,
                libc::SYNC_FILE_RANGE_WRITE,
            )
        };
        behind.push_back((from, to));
        while let Some(&(old_from, old_to)) = behind.front() {
            if to - old_to < window_bytes {
                break;
            }
            behind.pop_front();
            let len = (old_to - old_from) as i64;
            unsafe {
                libc::sync_file_range(
                    fd,
                    old_from as i64,
                    len,
                    libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER,
                );
                libc::posix_fadvise(fd, old_from as i64, len, libc::POSIX_FADV_DONTNEED);
            }
        }
    }
}

/// The broker's produce side: frames from the producer are appended to the file and acked;
/// with a cache window, completed steps go to a [`trim_cache`] thread.
fn serve_appends(
    mut producer: TcpStream,
    mut file: File,
    end: &LogEnd,
    cache_window_bytes: u64,
) -> anyhow::Result<()> {
    let mut trim = None;
    if cache_window_bytes > 0 {
        let (steps, ranges) = std::sync::mpsc::channel();
        let trim_file = file.try_clone().context("clone the log file")?;
        thread::spawn(move || trim_cache(trim_file, cache_window_bytes, ranges));
        trim = Some(steps);
    }
    let mut step_from = 0u64;
    let mut frame = Vec::new();
    let mut end_bytes = 0u64;
    let result = (|| loop {
        let mut header = [0u8; FRAME_HEADER_BYTES];
        match producer.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e).context("read a frame header"),
        }
        let len = u32::from_be_bytes(header) as usize;
        frame.clear();
        frame.extend_from_slice(&header);
        frame.resize(FRAME_HEADER_BYTES + len, 0);
        producer
            .read_exact(&mut frame[FRAME_HEADER_BYTES..])
            .context("read a frame")?;
        file.write_all(&frame).context("append")?;
        end_bytes += frame.len() as u64;
        end.publish(end_bytes, false);
        if let Some(trim) = &trim {
            if end_bytes - step_from >= CACHE_STEP_BYTES {
                let step_to = end_bytes & !4095;
                trim.send((step_from, step_to)).ok();
                step_from = step_to;
            }
        }
        producer.write_all(&header).context("ack")?;
    })();
    end.publish(end_bytes, true);
    result
}

/// The broker's fetch side: every appended range is read back from the file and sent on.
fn serve_fetches(mut consumer: TcpStream, file: File, end: &LogEnd) -> anyhow::Result<()> {
    let mut buffer = vec![0u8; FETCH_CHUNK_BYTES];
    let mut sent_bytes = 0u64;
    loop {
        let (end_bytes, closed) = end.wait_past(sent_bytes);
        while sent_bytes < end_bytes {
            let len = ((end_bytes - sent_bytes) as usize).min(FETCH_CHUNK_BYTES);
            file.read_exact_at(&mut buffer[..len], sent_bytes)
                .context("read back")?;
            consumer.write_all(&buffer[..len]).context("send")?;
            sent_bytes += len as u64;
        }
        if closed && sent_bytes == end_bytes {
            consumer.shutdown(Shutdown::Write).ok();
            return Ok(());
        }
    }
}

/// Open-loop pacing: record `index` is due at `index * nanos_per_record` after `started`.
struct Schedule {
    started: Instant,
    nanos_per_record: f64,
}

impl Schedule {
    fn due(&self, index: u64) -> Instant {
        self.started + Duration::from_nanos((index as f64 * self.nanos_per_record) as u64)
    }

    /// Sleeps until record `index` is due; returns how many records from `index` on are due by
    /// then (at least 1), to be sent without reading the clock again (as `strom bench` does).
    fn wait(&self, index: u64) -> u64 {
        let due = self.due(index);
        let mut now = Instant::now();
        if due > now {
            thread::sleep(due - now);
            now = Instant::now();
        }
        let elapsed_ns = now.saturating_duration_since(self.started).as_nanos() as f64;
        let last_due = (elapsed_ns / self.nanos_per_record) as u64;
        (last_due + 1).saturating_sub(index).max(1)
    }
}

/// Sends `count` paced records in frames of at most `batch_bytes`, each frame going out when
/// full or `linger` after its first record was due.
fn produce(
    mut socket: TcpStream,
    schedule: &Schedule,
    count: u64,
    size: usize,
    linger: Duration,
    batch_bytes: usize,
) -> anyhow::Result<()> {
    let mut frame: Vec<u8> = Vec::with_capacity(FRAME_HEADER_BYTES + batch_bytes + size);
    frame.extend_from_slice(&[0; FRAME_HEADER_BYTES]);
    let filler: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let mut send = |frame: &mut Vec<u8>| -> anyhow::Result<()> {
        let len = (frame.len() - FRAME_HEADER_BYTES) as u32;
        if len == 0 {
            return Ok(());
        }
        frame[..FRAME_HEADER_BYTES].copy_from_slice(&len.to_be_bytes());
        socket.write_all(frame).context("send a frame")?;
        frame.truncate(FRAME_HEADER_BYTES);
        Ok(())
    };
    let mut linger_deadline: Option<Instant> = None;
    let mut due_unsent = 0u64;
    for index in 0..count {
        let due = schedule.due(index);
        if let Some(deadline) = linger_deadline {
            if deadline <= due {
                let now = Instant::now();
                if deadline > now {
                    thread::sleep(deadline - now);
                }
                send(&mut frame)?;
                linger_deadline = None;
            }
        }
        if due_unsent == 0 {
            due_unsent = schedule.wait(index);
        }
        due_unsent -= 1;
        let stamp = due.saturating_duration_since(schedule.started).as_nanos() as u64;
        frame.extend_from_slice(&stamp.to_be_bytes());
        frame.extend_from_slice(&filler[STAMP_BYTES..]);
        linger_deadline.get_or_insert(due + linger);
        if frame.len() - FRAME_HEADER_BYTES >= batch_bytes {
            send(&mut frame)?;
            linger_deadline = None;
        }
    }
    send(&mut frame)?;
    socket.shutdown(Shutdown::Write).ok();
    Ok(())
}

/// What the consumer measured.
struct Consumed {
    records: u64,
    latency_us: Histogram<u64>,
    intervals: Vec<Histogram<u64>>,
    beyond_intervals: u64,
}

/// Reads frames to the end; every record's latency is its receive time (read once per socket
/// read, as `strom bench e2e` reads it once per poll) less its due time.
fn consume(
    mut socket: TcpStream,
    started: Instant,
    size: usize,
    interval_ms: u64,
    frame_bytes_max: usize,
) -> anyhow::Result<Consumed> {
    let mut consumed = Consumed {
        records: 0,
        latency_us: latency_histogram(3)?,
        intervals: Vec::new(),
        beyond_intervals: 0,
    };
    let interval_ns = interval_ms.saturating_mul(1_000_000);
    let mut buffer = vec![0u8; FETCH_CHUNK_BYTES.max(2 * frame_bytes_max)];
    let mut filled = 0usize;
    loop {
        if filled == buffer.len() {
            bail!("a frame larger than {} bytes", buffer.len());
        }
        let n = socket.read(&mut buffer[filled..]).context("receive")?;
        if n == 0 {
            if filled > 0 {
                bail!("the stream ended inside a frame");
            }
            return Ok(consumed);
        }
        filled += n;
        let now_ns = started.elapsed().as_nanos() as u64;
        let mut at = 0usize;
        while filled - at >= FRAME_HEADER_BYTES {
            let header: [u8; FRAME_HEADER_BYTES] = buffer[at..at + FRAME_HEADER_BYTES]
                .try_into()
                .context("frame header")?;
            let len = u32::from_be_bytes(header) as usize;
            if filled - at < FRAME_HEADER_BYTES + len {
                break;
            }
            let records = &buffer[at + FRAME_HEADER_BYTES..at + FRAME_HEADER_BYTES + len];
            for record in records.chunks_exact(size) {
                let stamp: [u8; STAMP_BYTES] = record[..STAMP_BYTES].try_into().context("stamp")?;
                let due_ns = u64::from_be_bytes(stamp);
                let latency_us = (now_ns.saturating_sub(due_ns) / 1000).clamp(1, LATENCY_US_MAX);
                consumed.latency_us.saturating_record(latency_us);
                if let Some(index) = due_ns.min(now_ns).checked_div(interval_ns) {
                    let index = index as usize;
                    if index < INTERVALS_MAX {
                        while consumed.intervals.len() <= index {
                            consumed.intervals.push(latency_histogram(2)?);
                        }
                        consumed.intervals[index].saturating_record(latency_us);
                    } else {
                        consumed.beyond_intervals += 1;
                    }
                }
                consumed.records += 1;
            }
            at += FRAME_HEADER_BYTES + len;
        }
        buffer.copy_within(at..filled, 0);
        filled -= at;
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

/// One pipeline run's result.
struct PipelineReport {
    count: u64,
    seconds: f64,
    consumed: Consumed,
}

/// Runs the pipeline: every record is sent, appended, read back and received, or an error.
fn run_pipeline(args: &PipelineArgs) -> anyhow::Result<PipelineReport> {
    if args.size < STAMP_BYTES {
        bail!("--size must be {STAMP_BYTES} or more (the due time travels in the record)");
    }
    if args.rate == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--rate and --seconds must be positive");
    }
    let count = ((args.rate as f64 * args.seconds) as u64).max(1);
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("latency-floor"));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    let path = dir.join(format!("floor-{}-{}.log", std::process::id(), args.rate));
    let append_file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&path)
        .with_context(|| format!("create {}", path.display()))?;
    let read_file = File::open(&path).with_context(|| format!("open {}", path.display()));
    let result =
        read_file.and_then(|read_file| run_pipeline_on(args, count, append_file, read_file));
    std::fs::remove_file(&path).ok();
    result
}

fn run_pipeline_on(
    args: &PipelineArgs,
    count: u64,
    append_file: File,
    read_file: File,
) -> anyhow::Result<PipelineReport> {
    let produce_listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let fetch_listener = TcpListener::bind("127.0.0.1:0").context("bind")?;
    let producer = TcpStream::connect(produce_listener.local_addr()?).context("connect")?;
    let consumer = TcpStream::connect(fetch_listener.local_addr()?).context("connect")?;
    let (appends, _) = produce_listener.accept().context("accept")?;
    let (fetches, _) = fetch_listener.accept().context("accept")?;
    for socket in [&producer, &consumer, &appends, &fetches] {
        socket.set_nodelay(true).context("nodelay")?;
    }
    // Acks are read and dropped, so the producer never blocks on them.
    let mut acks = producer.try_clone().context("clone")?;

    let end = Arc::new(LogEnd::default());
    let append_side = {
        let end = end.clone();
        let cache_window_bytes = args.cache_window_mib << 20;
        thread::spawn(move || serve_appends(appends, append_file, &end, cache_window_bytes))
    };
    let fetch_side = {
        let end = end.clone();
        thread::spawn(move || serve_fetches(fetches, read_file, &end))
    };
    let ack_reader = thread::spawn(move || {
        let mut sink = [0u8; 4096];
        while matches!(acks.read(&mut sink), Ok(n) if n > 0) {}
    });

    let started = Instant::now();
    let (size, interval_ms) = (args.size, args.interval_ms);
    let frame_bytes_max = FRAME_HEADER_BYTES + args.batch_bytes + args.size;
    let consumer_side =
        thread::spawn(move || consume(consumer, started, size, interval_ms, frame_bytes_max));
    let schedule = Schedule {
        started,
        nanos_per_record: 1e9 / args.rate as f64,
    };
    let linger = Duration::from_millis(args.linger_ms);
    // On an error the producer's socket closes, which ends every other thread in turn.
    let produced = produce(
        producer,
        &schedule,
        count,
        args.size,
        linger,
        args.batch_bytes,
    );
    let join = |name: &str| anyhow::anyhow!("the {name} thread panicked");
    let appended = append_side.join().map_err(|_| join("append"))?;
    let fetched = fetch_side.join().map_err(|_| join("fetch"))?;
    let consumed = consumer_side.join().map_err(|_| join("consumer"))?;
    ack_reader.join().map_err(|_| join("ack reader"))?;
    let seconds = started.elapsed().as_secs_f64();
    produced?;
    appended?;
    fetched?;
    let consumed = consumed?;
    if consumed.records != count {
        bail!("{} of {count} records came back", consumed.records);
    }
    Ok(PipelineReport {
        count,
        seconds,
        consumed,
    })
}

/// p50, p99, p99.9 and max in milliseconds.
fn quantiles_ms(h: &Histogram<u64>) -> (f64, f64, f64, f64) {
    (
        ms(h.value_at_quantile(0.5)),
        ms(h.value_at_quantile(0.99)),
        ms(h.value_at_quantile(0.999)),
        ms(h.max()),
    )
}

fn pipeline(args: &PipelineArgs) -> anyhow::Result<()> {
    let report = run_pipeline(args)?;
    let consumed = &report.consumed;
    let (p50, p99, p999, max) = quantiles_ms(&consumed.latency_us);
    eprintln!(
        "pipeline: {} records of {} B at {} msgs/s: latency ms p50 {p50:.3}  p99 {p99:.3}  p99.9 {p999:.3}  max {max:.3}",
        report.count, args.size, args.rate
    );
    if consumed.beyond_intervals > 0 {
        eprintln!(
            "note: {} records were due after the last of {INTERVALS_MAX} intervals",
            consumed.beyond_intervals
        );
    }
    let intervals: Vec<_> = consumed
        .intervals
        .iter()
        .enumerate()
        .map(|(index, h)| {
            let (p50, p99, _, max) = quantiles_ms(h);
            json!({
                "start_ms": index as u64 * args.interval_ms,
                "messages": h.len(),
                "latency_ms": {"p50": p50, "p99": p99, "max": max},
            })
        })
        .collect();
    println!(
        "{}",
        json!({
            "bench": "latency-floor",
            "size": args.size,
            "rate": args.rate,
            "linger_ms": args.linger_ms,
            "messages": consumed.records,
            "seconds": report.seconds,
            "msgs_per_sec": consumed.records as f64 / report.seconds,
            "latency_ms": {"p50": p50, "p99": p99, "p999": p999, "max": max},
            "intervals": intervals,
        })
    );
    Ok(())
}

/// What one spinning thread saw.
struct Gaps {
    /// Gaps of at least [`GAP_MIN_NS`], in microseconds.
    gap_us: Histogram<u64>,
    lost_ns: u64,
}

fn spin(seconds: f64) -> anyhow::Result<Gaps> {
    let mut gaps = Gaps {
        gap_us: latency_histogram(3)?,
        lost_ns: 0,
    };
    let started = Instant::now();
    let length = Duration::from_secs_f64(seconds);
    let mut previous = started;
    loop {
        let now = Instant::now();
        let gap_ns = now.saturating_duration_since(previous).as_nanos() as u64;
        previous = now;
        if gap_ns >= GAP_MIN_NS {
            gaps.gap_us
                .saturating_record((gap_ns / 1000).clamp(1, LATENCY_US_MAX));
            gaps.lost_ns += gap_ns;
        }
        if now.saturating_duration_since(started) >= length {
            return Ok(gaps);
        }
    }
}

fn gaps(args: &GapsArgs) -> anyhow::Result<()> {
    if !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--seconds must be positive");
    }
    let threads = args
        .threads
        .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let seconds = args.seconds;
    let spinners: Vec<_> = (0..threads)
        .map(|_| thread::spawn(move || spin(seconds)))
        .collect();
    let mut per_thread = Vec::new();
    for spinner in spinners {
        let gaps = spinner
            .join()
            .map_err(|_| anyhow::anyhow!("a spinner panicked"))??;
        let h = &gaps.gap_us;
        let over = |ms: u64| h.count_between(ms * 1000, LATENCY_US_MAX);
        let lost_share = gaps.lost_ns as f64 / (seconds * 1e9);
        eprintln!(
            "thread {}: gaps >0.5 ms {}, >1 ms {}, >3 ms {}, >10 ms {}, max {:.1} ms, {:.2}% of the time lost",
            per_thread.len(),
            h.len(),
            over(1),
            over(3),
            over(10),
            ms(h.max()),
            lost_share * 100.0
        );
        per_thread.push(json!({
            "gaps": h.len(),
            "over_1_ms": over(1),
            "over_3_ms": over(3),
            "over_10_ms": over(10),
            "max_ms": ms(h.max()),
            "lost_share": lost_share,
        }));
    }
    println!(
        "{}",
        json!({"bench": "gaps", "seconds": seconds, "threads": per_thread})
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(rate: u64, seconds: f64, size: usize) -> PipelineArgs {
        PipelineArgs {
            size,
            rate,
            seconds,
            linger_ms: 1,
            batch_bytes: 4096,
            interval_ms: 50,
            dir: None,
            cache_window_mib: 0,
        }
    }

    /// 24 MB through an 8 MiB cache window: steps are written back and evicted behind the
    /// consumer, and every record still comes back.
    #[test]
    fn every_record_comes_back_through_a_cache_window() {
        let mut args = args(40_000, 0.6, 1000);
        args.cache_window_mib = 8;
        args.batch_bytes = 64 * 1024;
        let report = run_pipeline(&args).expect("pipeline");
        assert_eq!(report.count, 24_000);
        assert_eq!(report.consumed.records, 24_000);
    }

    #[test]
    fn every_record_comes_back_with_a_latency_and_an_interval() {
        let report = run_pipeline(&args(20_000, 0.2, 100)).expect("pipeline");
        assert_eq!(report.count, 4_000);
        let consumed = &report.consumed;
        assert_eq!(consumed.records, 4_000);
        assert_eq!(consumed.latency_us.len(), 4_000);
        assert!(consumed.latency_us.min() >= 1);
        // 0.2 s of due time in 50 ms intervals: 4 of them, every record in one.
        assert_eq!(consumed.intervals.len(), 4);
        let in_intervals: u64 = consumed.intervals.iter().map(|h| h.len()).sum();
        assert_eq!(in_intervals, 4_000);
        assert_eq!(consumed.beyond_intervals, 0);
    }

    #[test]
    fn records_larger_than_a_batch_still_travel() {
        // Each record fills a batch by itself.
        let report = run_pipeline(&args(2_000, 0.1, 5_000)).expect("pipeline");
        assert_eq!(report.consumed.records, 200);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(run_pipeline(&args(1_000, 0.1, 7)).is_err());
        assert!(run_pipeline(&args(0, 0.1, 100)).is_err());
        assert!(run_pipeline(&args(1_000, 0.0, 100)).is_err());
    }

    #[test]
    fn a_spinner_counts_only_gaps_it_saw() {
        let gaps = spin(0.05).expect("spin");
        // Whatever the machine did, the lost time fits in the spin's length (plus one gap).
        let longest_ns = gaps.gap_us.max() * 1000;
        assert!(gaps.lost_ns <= 50_000_000 + longest_ns + 1_000_000);
        assert!(gaps.gap_us.is_empty() || gaps.gap_us.min() >= GAP_MIN_NS / 1000);
    }
}

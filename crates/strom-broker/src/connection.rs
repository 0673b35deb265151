//! One client connection: read length-prefixed frames, decode each request through the bounded
//! decoder, handle requests one at a time in arrival order, and write the responses in that
//! order.
//!
//! Like Kafka, a connection's requests are processed in order, one at a time: two produce
//! requests pipelined on one connection are appended in the order they were sent. One task
//! serves the connection (no hand-off between a reader and a processor, so no wake-up per
//! request): it reads whatever the socket holds into one buffer, handles every complete frame
//! in it, and writes the responses it gathered with one vectored write before it reads again.
//! A request whose handler must wait (a long-poll fetch, a JoinGroup) first flushes the
//! responses gathered before it, so no answer waits behind another request. Responses are
//! coalesced up to `inflight_requests_per_connection_max` or [`PENDING_RESPONSE_BYTES_MAX`].
//!
//! Limits: a frame larger than `socket_request_max_bytes` (or negative) closes the connection;
//! the bytes of a frame being read or handled are held under the `queued_request_kib`
//! semaphore shared by all connections; the read buffer of an idle connection is released.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use bytes::{Buf, Bytes, BytesMut};
use strom_protocol::chunked::Frame;
use strom_protocol::request::{decode_request, RequestError};
use strom_protocol::response::encode_api_versions_fallback;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::handlers::{self, Outcome};
use crate::state::BrokerState;

/// Bytes read from the socket at a time when no larger frame is being read.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Bytes read at a time right after the connection was idle.
const IDLE_READ_BUFFER_BYTES: usize = 4 * 1024;

/// Responses gathered beyond this many bytes are written before the next request is handled.
pub const PENDING_RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// Chunks handed to one `writev` at most (Linux's IOV_MAX is 1024).
const IOV_CHUNKS_MAX: usize = 64;

/// Responses handled but not written yet, in order.
struct Pending {
    chunks: Vec<Bytes>,
    responses: usize,
    bytes: usize,
}

impl Pending {
    fn new() -> Pending {
        Pending {
            chunks: Vec::new(),
            responses: 0,
            bytes: 0,
        }
    }

    fn push(&mut self, frame: Frame) {
        self.responses += 1;
        self.bytes += frame.len();
        self.chunks
            .extend(frame.into_chunks().into_iter().filter(|c| !c.is_empty()));
    }
}

/// Serves one connection until the client closes it, sends something unacceptable, or the
/// broker shuts down.
pub async fn serve(mut stream: TcpStream, peer: SocketAddr, state: Arc<BrokerState>) {
    let _ = stream.set_nodelay(true);
    match serve_requests(&mut stream, peer, &state).await {
        Ok(()) => {}
        Err(Closed::Quietly(reason)) => tracing::info!(%peer, %reason, "closing connection"),
        Err(Closed::Loudly(reason)) => tracing::error!(%peer, %reason, "closing connection"),
    }
    let _ = stream.shutdown().await;
}

/// Why a connection ends early.
enum Closed {
    /// The client's doing (bad frame, idle, reset): logged at info.
    Quietly(String),
    /// The broker could not answer: logged at error.
    Loudly(String),
}

async fn serve_requests(
    stream: &mut TcpStream,
    peer: SocketAddr,
    state: &Arc<BrokerState>,
) -> Result<(), Closed> {
    let max_bytes = state.config.socket_request_max_bytes;
    let responses_max = state.config.inflight_requests_per_connection_max.max(1);
    let idle = std::time::Duration::from_millis(state.config.connections_max_idle_ms.max(1));
    let mut input = BytesMut::new();
    let mut pending = Pending::new();
    // The memory budget of the frame at the front of `input`, taken before its bytes are.
    let mut permit: Option<OwnedSemaphorePermit> = None;
    let mut read_reserve_bytes = READ_BUFFER_BYTES;
    // One timer per connection for `connections_max_idle_ms`, re-armed only when it fires
    // (a timer armed and cancelled around every read cost idle long-pollers a tenth of their
    // CPU); `last_active` says when the connection last read or answered something.
    let idle_timer = tokio::time::sleep(idle);
    tokio::pin!(idle_timer);
    let mut last_active = Instant::now();
    loop {
        // Handle every complete frame already read.
        while input.len() >= 4 {
            let prefix = [input[0], input[1], input[2], input[3]];
            let size_bytes = strom_protocol::frame::frame_size(prefix, max_bytes)
                .map_err(|e| Closed::Quietly(format!("bad frame: {e}")))?;
            if permit.is_none() {
                let kib = (size_bytes.div_ceil(1024)).max(1) as u32;
                permit = Some(
                    state
                        .queued_request_kib
                        .clone()
                        .acquire_many_owned(kib)
                        .await
                        .map_err(|_| Closed::Quietly("broker shutting down".to_string()))?,
                );
            }
            if input.len() < 4 + size_bytes {
                input.reserve(4 + size_bytes - input.len());
                break;
            }
            let whole_buffer = input.len() == 4 + size_bytes && input.capacity() == input.len();
            input.advance(4);
            let frame = if whole_buffer {
                // The buffer is this frame and nothing else (a small read after idling):
                // hand it over whole, without the shared header a split would allocate.
                std::mem::take(&mut input).freeze()
            } else {
                input.split_to(size_bytes).freeze()
            };
            let outcome = match decode_request(frame, &state.decode_limits) {
                Ok(request) => {
                    let handling = handlers::handle(state, request, peer);
                    tokio::pin!(handling);
                    match futures::poll!(&mut handling) {
                        Poll::Ready(outcome) => outcome,
                        Poll::Pending => {
                            // It waits: answer what came before it first.
                            write_pending(stream, &mut pending).await?;
                            handling.await
                        }
                    }
                }
                Err(RequestError::UnsupportedVersion(prefix))
                    if prefix.api_key == kafka_protocol::messages::ApiKey::ApiVersions as i16 =>
                {
                    Outcome::Respond(Frame::single(encode_api_versions_fallback(
                        prefix.correlation_id,
                    )))
                }
                Err(error) => {
                    tracing::warn!(%peer, %error, "rejecting request");
                    write_pending(stream, &mut pending).await?;
                    return Err(Closed::Quietly(format!("unacceptable request: {error}")));
                }
            };
            permit = None;
            last_active = Instant::now();
            match outcome {
                Outcome::Respond(frame) => pending.push(frame),
                Outcome::RespondCatchUp(frame) => {
                    write_pending(stream, &mut pending).await?;
                    write_catch_up(stream, state, frame).await?;
                }
                Outcome::Silent => {}
                Outcome::Close(reason) => {
                    write_pending(stream, &mut pending).await?;
                    return Err(Closed::Loudly(reason));
                }
            }
            if pending.responses >= responses_max || pending.bytes >= PENDING_RESPONSE_BYTES_MAX {
                write_pending(stream, &mut pending).await?;
            }
        }
        write_pending(stream, &mut pending).await?;
        if input.is_empty() {
            let idled = {
                let readable = stream.readable();
                tokio::pin!(readable);
                let idling = futures::poll!(&mut readable).is_pending();
                if idling {
                    // An idle connection holds no read buffer, and after idling it reads into
                    // a small one: a long-polling consumer sends one small request at a time,
                    // and a 64 KiB allocation per request was most of what idle consumers cost.
                    input = BytesMut::new();
                    read_reserve_bytes = IDLE_READ_BUFFER_BYTES;
                    loop {
                        tokio::select! {
                            biased;
                            ready = &mut readable => {
                                ready.map_err(|e| Closed::Quietly(format!("read failed: {e}")))?;
                                break;
                            }
                            () = &mut idle_timer => check_idle(idle_timer.as_mut(), last_active, idle)?,
                        }
                    }
                }
                idling
            };
            if idled {
                match read_after_idle(stream) {
                    Ok(Some(read)) if read.is_empty() => return Ok(()),
                    Ok(Some(read)) => {
                        if read.len() == IDLE_READ_BUFFER_BYTES {
                            read_reserve_bytes = READ_BUFFER_BYTES;
                        }
                        input = read;
                        last_active = Instant::now();
                        continue;
                    }
                    Ok(None) => {} // not readable after all: wait below
                    Err(e) => return Err(Closed::Quietly(format!("read failed: {e}"))),
                }
            }
        }
        if input.capacity() - input.len() < read_reserve_bytes / 4 {
            input.reserve(read_reserve_bytes);
        }
        let spare_bytes = input.capacity() - input.len();
        let read = loop {
            tokio::select! {
                biased;
                read = stream.read_buf(&mut input) => break read,
                () = &mut idle_timer => check_idle(idle_timer.as_mut(), last_active, idle)?,
            }
        };
        if matches!(read, Ok(n) if n == spare_bytes) {
            read_reserve_bytes = READ_BUFFER_BYTES; // the socket had more: read in large steps
        }
        match read {
            Ok(0) if input.is_empty() => return Ok(()),
            Ok(0) => {
                return Err(Closed::Quietly(format!(
                    "closed by the client inside a frame ({} bytes read of it)",
                    input.len()
                )))
            }
            Ok(_) => last_active = Instant::now(),
            Err(e) => return Err(Closed::Quietly(format!("read failed: {e}"))),
        }
    }
}

/// The first read after idling: what the socket holds, up to [`IDLE_READ_BUFFER_BYTES`], read
/// on the stack and copied into a buffer of its exact size (a long-polling consumer sends one
/// small request at a time: one small allocation instead of a 4 KiB buffer and the shared
/// header of a split). `None` if the socket had nothing after all; an empty buffer at the end
/// of the stream.
///
/// It polls the stream's `poll_read` once rather than calling `try_read`: a read that leaves
/// the socket drained then clears the stream's readiness, so the next wait does not begin with
/// a read that returns `EAGAIN`. (If the socket has nothing, the no-op waker it leaves behind is
/// replaced by the next read's.)
fn read_after_idle(stream: &mut TcpStream) -> std::io::Result<Option<BytesMut>> {
    let mut buf = [0u8; IDLE_READ_BUFFER_BYTES];
    let mut read = ReadBuf::new(&mut buf);
    let mut cx = std::task::Context::from_waker(futures::task::noop_waker_ref());
    match std::pin::Pin::new(stream).poll_read(&mut cx, &mut read) {
        Poll::Ready(Ok(())) => Ok(Some(BytesMut::from(read.filled()))),
        Poll::Ready(Err(e)) => Err(e),
        Poll::Pending => Ok(None),
    }
}

/// The idle timer fired: closes the connection if it has really been idle for `idle`, else
/// re-arms the timer for the moment it would be.
fn check_idle(
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
    last_active: Instant,
    idle: std::time::Duration,
) -> Result<(), Closed> {
    let deadline = last_active + idle;
    if Instant::now() >= deadline {
        return Err(Closed::Quietly(format!("idle for {} ms", idle.as_millis())));
    }
    timer.reset(deadline);
    Ok(())
}

/// Writes a catch-up fetch's response from the catch-up threads (nothing else is written to
/// the stream meanwhile: the connection waits here), then whatever they left because the
/// client was slow to read.
async fn write_catch_up(
    stream: &mut TcpStream,
    state: &BrokerState,
    frame: Frame,
) -> Result<(), Closed> {
    use std::os::fd::AsFd;
    let chunks: Vec<Bytes> = frame
        .into_chunks()
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
    let fd = stream
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| Closed::Loudly(format!("cannot duplicate the socket: {e}")))?;
    let mut rest = state
        .catch_up
        .write(fd, chunks)
        .await
        .map_err(|e| Closed::Quietly(format!("write failed: {e}")))?;
    write_chunks(stream, &mut rest).await
}

/// Writes the gathered responses with vectored writes.
async fn write_pending(stream: &mut TcpStream, pending: &mut Pending) -> Result<(), Closed> {
    let mut chunks = std::mem::take(&mut pending.chunks);
    pending.responses = 0;
    pending.bytes = 0;
    write_chunks(stream, &mut chunks).await?;
    pending.chunks = chunks; // keep the Vec's capacity
    Ok(())
}

/// Writes `chunks` in order with vectored writes; leaves the Vec empty (its capacity kept).
async fn write_chunks(stream: &mut TcpStream, chunks: &mut Vec<Bytes>) -> Result<(), Closed> {
    let mut first = 0;
    while first < chunks.len() {
        let written = if first + 1 == chunks.len() {
            // One chunk left (an empty fetch, most small answers): no slice list to allocate.
            stream.write(&chunks[first]).await
        } else {
            let slices: Vec<IoSlice<'_>> = chunks[first..]
                .iter()
                .take(IOV_CHUNKS_MAX)
                .map(|c| IoSlice::new(c))
                .collect();
            stream.write_vectored(&slices).await
        };
        let written = written.map_err(|e| Closed::Quietly(format!("write failed: {e}")))?;
        if written == 0 {
            return Err(Closed::Quietly("write returned 0 bytes".to_string()));
        }
        first = strom_protocol::chunked::skip_written(chunks, first, written);
    }
    chunks.clear();
    Ok(())
}

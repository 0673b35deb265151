//! One TCP connection to one broker: framing, correlation ids, pipelining, version negotiation
//! and per-request timeouts.
//!
//! Requests are written by one writer task (so a dropped caller future never leaves half a
//! frame on the socket) and responses are matched to their callers by correlation id by one
//! reader task. Any number of requests may be in flight; the broker answers them in order.
//!
//! A produce request's record batches are not copied into its frame: the frame is a list of
//! chunks (the encoded fields, and the batches themselves), written with vectored writes.

use std::any::Any;
use std::collections::HashMap;
use std::io::IoSlice;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, RequestHeader, ResponseHeader,
};
use kafka_protocol::protocol::{Decodable, HeaderVersion, Request, StrBytes};
use parking_lot::Mutex;
use strom_protocol::chunked::{encode_request_frame, skip_written, Frame};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// Largest response frame this client accepts; a bigger size prefix closes the connection.
pub const RESPONSE_FRAME_BYTES_MAX: usize = 512 * 1024 * 1024;

/// Bytes the response reader buffers from the socket at a time.
const RESPONSE_READ_BUFFER_BYTES: usize = 64 * 1024;
/// Frames queued for the writer task at most; senders wait beyond it.
const WRITE_QUEUE_FRAMES_MAX: usize = 1024;

/// The API versions this client knows how to fill in, per API: `(key, min, max)`.
///
/// The version used on a connection is the highest one both this table and the broker's
/// ApiVersions answer allow. Fetch stops at 12 and Produce at 11 because later versions name
/// topics by id only.
pub const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 5),
    (ApiKey::DeleteRecords, 0, 2),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 1, 4),
    (ApiKey::ListGroups, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::JoinGroup, 1, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 5),
];

type Waiter = oneshot::Sender<Result<Bytes>>;

struct Pending {
    waiters: HashMap<i32, (i16, Waiter)>,
    closed: Option<String>,
}

/// A connection to one broker. Cheap to share (`Arc<Connection>`); all methods take `&self`.
pub struct Connection {
    addr: String,
    client_id: StrBytes,
    request_timeout_ms: u64,
    next_correlation_id: AtomicI32,
    frames: mpsc::Sender<Frame>,
    pending: Arc<Mutex<Pending>>,
    versions: HashMap<i16, i16>,
    broker_versions: HashMap<i16, (i16, i16)>,
    tasks: [tokio::task::JoinHandle<()>; 2],
}

impl Drop for Connection {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("addr", &self.addr)
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and negotiates API versions.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        connect_timeout_ms: u64,
        request_timeout_ms: u64,
    ) -> Result<Connection> {
        let unreachable = |cause| Error::Unreachable {
            addr: addr.to_string(),
            cause,
        };
        let stream = tokio::time::timeout(
            Duration::from_millis(connect_timeout_ms),
            TcpStream::connect(addr),
        )
        .await
        .map_err(|_| {
            unreachable(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "connect timed out",
            ))
        })?
        .map_err(unreachable)?;
        stream.set_nodelay(true).map_err(unreachable)?;
        let (read_half, write_half) = stream.into_split();
        let pending = Arc::new(Mutex::new(Pending {
            waiters: HashMap::new(),
            closed: None,
        }));
        let (frames, frames_receiver) = mpsc::channel(WRITE_QUEUE_FRAMES_MAX);
        let reader = tokio::spawn(read_loop(read_half, pending.clone()));
        let writer = tokio::spawn(write_loop(write_half, frames_receiver, pending.clone()));
        let mut connection = Connection {
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            request_timeout_ms,
            next_correlation_id: AtomicI32::new(1),
            frames,
            pending,
            versions: HashMap::new(),
            broker_versions: HashMap::new(),
            tasks: [reader, writer],
        };
        connection.negotiate().await?;
        Ok(connection)
    }

    async fn negotiate(&mut self) -> Result<()> {
        let mut request = ApiVersionsRequest::default();
        request.client_software_name = StrBytes::from_static_str("strom-client");
        request.client_software_version = StrBytes::from_static_str(env!("CARGO_PKG_VERSION"));
        let first: Result<ApiVersionsResponse> = self
            .send_versioned(&request, 3, self.request_timeout_ms)
            .await;
        let response = match first {
            Ok(response) if response.error_code != 35 => response,
            // UNSUPPORTED_VERSION (answered in v0) or a body we could not read: ask in v0.
            Ok(_) | Err(Error::Protocol(_)) => {
                self.send_versioned(&ApiVersionsRequest::default(), 0, self.request_timeout_ms)
                    .await?
            }
            Err(error) => return Err(error),
        };
        crate::error::check(
            response.error_code,
            || format!("ApiVersions to {}", self.addr),
            None,
        )?;
        for api in &response.api_keys {
            self.broker_versions
                .insert(api.api_key, (api.min_version, api.max_version));
        }
        self.versions = negotiate_versions(&self.broker_versions);
        Ok(())
    }

    /// `host:port` of the broker.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Whether the connection is broken (it will not be used again).
    pub fn is_closed(&self) -> bool {
        self.pending.lock().closed.is_some() || self.frames.is_closed()
    }

    /// The version negotiated for API `key`, if the broker and this client share one.
    pub fn version(&self, key: ApiKey) -> Option<i16> {
        self.versions.get(&(key as i16)).copied()
    }

    /// The broker's advertised range for API `key`.
    pub fn broker_range(&self, key: ApiKey) -> Option<(i16, i16)> {
        self.broker_versions.get(&(key as i16)).copied()
    }

    fn version_or_error<R: Request + 'static>(&self) -> Result<i16> {
        let key = ApiKey::try_from(R::KEY)
            .map_err(|_| Error::Protocol(format!("unknown API key {}", R::KEY)))?;
        self.version(key).ok_or_else(|| {
            let (min, max) = client_range(key).unwrap_or((0, -1));
            Error::UnsupportedApi {
                api: api_name(R::KEY),
                addr: self.addr.clone(),
                min,
                max,
            }
        })
    }

    /// Sends `request` at the negotiated version and waits for its response (request timeout).
    pub async fn send<R: Request + 'static>(&self, request: &R) -> Result<(i16, R::Response)> {
        self.send_timeout(request, self.request_timeout_ms).await
    }

    /// Like [`Connection::send`] with an explicit timeout (for long polls).
    pub async fn send_timeout<R: Request + 'static>(
        &self,
        request: &R,
        timeout_ms: u64,
    ) -> Result<(i16, R::Response)> {
        let version = self.version_or_error::<R>()?;
        let response = self.send_versioned(request, version, timeout_ms).await?;
        Ok((version, response))
    }

    /// Sends `request` without waiting for (or expecting) a response: Produce with acks=0.
    pub async fn send_no_response<R: Request + 'static>(&self, request: &R) -> Result<i16> {
        let version = self.version_or_error::<R>()?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(request, version, correlation_id)?;
        self.frames
            .send(frame)
            .await
            .map_err(|_| self.disconnected())?;
        Ok(version)
    }

    /// Sends `request` at `version` and decodes its response.
    pub async fn send_versioned<R: Request + 'static>(
        &self,
        request: &R,
        version: i16,
        timeout_ms: u64,
    ) -> Result<R::Response> {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(timeout_ms);
        let in_flight =
            match tokio::time::timeout_at(deadline, self.enqueue(request, version, timeout_ms))
                .await
            {
                Ok(in_flight) => in_flight?,
                Err(_) => {
                    return Err(Error::Timeout {
                        api: api_name(R::KEY),
                        addr: self.addr.clone(),
                        timeout_ms,
                    })
                }
            };
        in_flight.response().await
    }

    /// Queues `request` at the negotiated version for writing and returns a handle to await its
    /// response. Requests queued one after the other on a connection reach the broker in that
    /// order, which is how the producer keeps batches of one partition in order.
    pub async fn start<R: Request + 'static>(
        &self,
        request: &R,
        timeout_ms: u64,
    ) -> Result<InFlight<R::Response>> {
        let version = self.version_or_error::<R>()?;
        self.enqueue(request, version, timeout_ms).await
    }

    async fn enqueue<R: Request + 'static>(
        &self,
        request: &R,
        version: i16,
        timeout_ms: u64,
    ) -> Result<InFlight<R::Response>> {
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let frame = self.encode(request, version, correlation_id)?;
        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = self.pending.lock();
            if let Some(reason) = &pending.closed {
                return Err(Error::Disconnected {
                    addr: self.addr.clone(),
                    reason: reason.clone(),
                });
            }
            pending.waiters.insert(
                correlation_id,
                (R::Response::header_version(version), sender),
            );
        }
        let in_flight = InFlight {
            receiver,
            correlation_id,
            version,
            api_key: R::KEY,
            timeout_ms,
            addr: self.addr.clone(),
            pending: self.pending.clone(),
            _response: std::marker::PhantomData,
        };
        if self.frames.send(frame).await.is_err() {
            return Err(in_flight.forget(self.disconnected()));
        }
        Ok(in_flight)
    }

    fn encode<R: Request + 'static>(
        &self,
        request: &R,
        version: i16,
        correlation_id: i32,
    ) -> Result<Frame> {
        let mut header = RequestHeader::default();
        header.request_api_key = R::KEY;
        header.request_api_version = version;
        header.correlation_id = correlation_id;
        header.client_id = Some(self.client_id.clone());
        let header_version = R::header_version(version);
        let invalid = |e: &dyn std::fmt::Display| {
            Error::Invalid(format!(
                "cannot encode {} v{version}: {e}",
                api_name(R::KEY)
            ))
        };
        encode_request_frame(
            &header,
            header_version,
            request,
            version,
            &record_batches(request),
        )
        .map_err(|e| invalid(&e))
    }

    fn disconnected(&self) -> Error {
        let reason = self
            .pending
            .lock()
            .closed
            .clone()
            .unwrap_or_else(|| "connection closed".to_string());
        Error::Disconnected {
            addr: self.addr.clone(),
            reason,
        }
    }
}

/// A request written (or queued for writing) whose response has not been awaited yet.
#[must_use = "a request's response should be awaited"]
pub struct InFlight<T> {
    receiver: oneshot::Receiver<Result<Bytes>>,
    correlation_id: i32,
    version: i16,
    api_key: i16,
    timeout_ms: u64,
    addr: String,
    pending: Arc<Mutex<Pending>>,
    _response: std::marker::PhantomData<fn() -> T>,
}

impl<T: Decodable> InFlight<T> {
    /// The API version the request was sent at.
    pub fn version(&self) -> i16 {
        self.version
    }

    /// Waits (up to the request timeout) for the response and decodes it.
    pub async fn response(mut self) -> Result<T> {
        let timeout = Duration::from_millis(self.timeout_ms);
        let body = match tokio::time::timeout(timeout, &mut self.receiver).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => {
                let reason = self
                    .pending
                    .lock()
                    .closed
                    .clone()
                    .unwrap_or_else(|| "connection closed".to_string());
                Err(Error::Disconnected {
                    addr: self.addr.clone(),
                    reason,
                })
            }
            Err(_) => Err(Error::Timeout {
                api: api_name(self.api_key),
                addr: self.addr.clone(),
                timeout_ms: self.timeout_ms,
            }),
        };
        let mut body = match body {
            Ok(body) => body,
            Err(error) => return Err(self.forget(error)),
        };
        T::decode(&mut body, self.version).map_err(|e| {
            Error::Protocol(format!(
                "cannot decode {} v{} response from {}: {e}",
                api_name(self.api_key),
                self.version,
                self.addr
            ))
        })
    }

    fn forget(&self, error: Error) -> Error {
        self.pending.lock().waiters.remove(&self.correlation_id);
        error
    }
}

/// Picks, per API, the highest version both this client and the broker speak.
pub fn negotiate_versions(broker: &HashMap<i16, (i16, i16)>) -> HashMap<i16, i16> {
    let mut versions = HashMap::new();
    for &(key, client_min, client_max) in CLIENT_VERSIONS {
        let Some(&(broker_min, broker_max)) = broker.get(&(key as i16)) else {
            continue;
        };
        let max = client_max.min(broker_max).min(key.valid_versions().max);
        let min = client_min.max(broker_min);
        if min <= max {
            versions.insert(key as i16, max);
        }
    }
    versions
}

fn client_range(key: ApiKey) -> Option<(i16, i16)> {
    CLIENT_VERSIONS
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// The Kafka name of an API key, for messages.
pub fn api_name(key: i16) -> String {
    match ApiKey::try_from(key) {
        Ok(api) => format!("{api:?}"),
        Err(_) => format!("api {key}"),
    }
}

/// The record batches of a produce request, which its frame takes by reference (none for
/// other requests).
fn record_batches<R: 'static>(request: &R) -> Vec<Bytes> {
    let Some(produce) = (request as &dyn Any).downcast_ref::<ProduceRequest>() else {
        return Vec::new();
    };
    produce
        .topic_data
        .iter()
        .flat_map(|topic| topic.partition_data.iter())
        .filter_map(|partition| partition.records.clone())
        .collect()
}

/// Chunks handed to one vectored write at most (Linux's IOV_MAX is 1024).
const IOV_CHUNKS_MAX: usize = 64;

/// Writes one frame: a single chunk through the buffer; several with vectored writes, which
/// the buffer passes straight to the socket once they are larger than it (after writing what
/// it holds), so large batches are not copied.
async fn write_frame(
    writer: &mut BufWriter<tokio::net::tcp::OwnedWriteHalf>,
    frame: Frame,
) -> std::io::Result<()> {
    let mut chunks = frame.into_chunks();
    if let [one] = chunks.as_slice() {
        return writer.write_all(one).await;
    }
    let mut first = 0;
    while first < chunks.len() {
        let slices: Vec<IoSlice<'_>> = chunks[first..]
            .iter()
            .take(IOV_CHUNKS_MAX)
            .map(|c| IoSlice::new(c))
            .collect();
        let written = writer.write_vectored(&slices).await?;
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        first = skip_written(&mut chunks, first, written);
    }
    Ok(())
}

async fn write_loop(
    write_half: tokio::net::tcp::OwnedWriteHalf,
    mut frames: mpsc::Receiver<Frame>,
    pending: Arc<Mutex<Pending>>,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, write_half);
    while let Some(frame) = frames.recv().await {
        let mut result = write_frame(&mut writer, frame).await;
        // Coalesce whatever else is queued into the same flush.
        while result.is_ok() {
            match frames.try_recv() {
                Ok(frame) => result = write_frame(&mut writer, frame).await,
                Err(_) => break,
            }
        }
        if let Err(error) = result.and(writer.flush().await) {
            close(&pending, format!("write failed: {error}"));
            return;
        }
    }
}

async fn read_loop(read_half: tokio::net::tcp::OwnedReadHalf, pending: Arc<Mutex<Pending>>) {
    // Buffered: a small response (a produce acknowledgement) costs one read, not two.
    let mut read_half = tokio::io::BufReader::with_capacity(RESPONSE_READ_BUFFER_BYTES, read_half);
    let reason = loop {
        let size = match read_half.read_i32().await {
            Ok(size) => size,
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                break "closed by the broker".to_string()
            }
            Err(error) => break format!("read failed: {error}"),
        };
        if size < 4 || size as usize > RESPONSE_FRAME_BYTES_MAX {
            break format!("bad response size {size}");
        }
        // Read into reserved capacity: no zeroing of what the socket overwrites anyway.
        let size = size as usize;
        let mut frame = BytesMut::with_capacity(size);
        let mut failed = None;
        while frame.len() < size {
            let wanted = size - frame.len();
            match read_half.read_buf(&mut (&mut frame).limit(wanted)).await {
                Ok(0) => {
                    failed = Some("closed by the broker inside a response".to_string());
                    break;
                }
                Ok(_) => {}
                Err(error) => {
                    failed = Some(format!("read failed: {error}"));
                    break;
                }
            }
        }
        if let Some(reason) = failed {
            break reason;
        }
        let mut frame = frame.freeze();
        let correlation_id = (&frame[..4]).get_i32();
        let Some((header_version, waiter)) = pending.lock().waiters.remove(&correlation_id) else {
            // A caller that timed out and left; its answer is dropped.
            continue;
        };
        let result = ResponseHeader::decode(&mut frame, header_version)
            .map(|_| frame)
            .map_err(|e| Error::Protocol(format!("bad response header: {e}")));
        let _ = waiter.send(result);
    };
    close(&pending, reason);
}

fn close(pending: &Mutex<Pending>, reason: String) {
    let waiters = {
        let mut pending = pending.lock();
        pending.closed.get_or_insert(reason);
        std::mem::take(&mut pending.waiters)
    };
    drop(waiters);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_picks_highest_common_version() {
        let broker = HashMap::from([
            (ApiKey::Fetch as i16, (0, 17)),
            (ApiKey::Produce as i16, (3, 9)),
            (ApiKey::Metadata as i16, (0, 0)),
        ]);
        let versions = negotiate_versions(&broker);
        assert_eq!(versions.get(&(ApiKey::Fetch as i16)), Some(&12));
        assert_eq!(versions.get(&(ApiKey::Produce as i16)), Some(&9));
        // The broker only speaks Metadata v0, which this client does not.
        assert_eq!(versions.get(&(ApiKey::Metadata as i16)), None);
        assert_eq!(versions.get(&(ApiKey::ListOffsets as i16)), None);
    }

    #[test]
    fn client_versions_are_within_kafka_protocol() {
        for &(key, min, max) in CLIENT_VERSIONS {
            let valid = key.valid_versions();
            assert!(
                valid.min <= min && min <= max && max <= valid.max,
                "{key:?}"
            );
        }
    }
}

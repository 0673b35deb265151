//! One client connection: read length-prefixed frames, decode each request through the bounded
//! decoder, handle requests one at a time in arrival order, and write each response before
//! handling the next request.
//!
//! Like Kafka, a connection's requests are processed in order, one at a time: two produce
//! requests pipelined on one connection are appended in the order they were sent. Reading and
//! decoding run ahead of handling (pipelining), bounded by
//! `inflight_requests_per_connection_max`. A frame larger than `socket_request_max_bytes` (or
//! negative) closes the connection; the frame bytes held over all connections are bounded by the
//! `queued_request_kib` semaphore.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strom_protocol::request::{decode_request, DecodedRequest, RequestError};
use strom_protocol::response::encode_api_versions_fallback;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use crate::handlers::{self, Outcome};
use crate::state::BrokerState;

/// Work for the connection's processor, in arrival order.
enum Work {
    /// A decoded request and the memory budget its frame holds until it is handled.
    Request(Box<DecodedRequest>, OwnedSemaphorePermit),
    /// A response decided while reading (the ApiVersions fallback).
    Respond(Bytes),
}

/// Serves one connection until the client closes it, sends something unacceptable, or the
/// broker shuts down.
pub async fn serve(stream: TcpStream, peer: SocketAddr, state: Arc<BrokerState>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (work_sender, mut work_receiver) =
        mpsc::channel::<Work>(state.config.inflight_requests_per_connection_max);

    let processor_state = state.clone();
    let processor = tokio::spawn(async move {
        while let Some(work) = work_receiver.recv().await {
            let outcome = match work {
                Work::Request(request, permit) => {
                    let outcome = handlers::handle(&processor_state, *request, peer).await;
                    drop(permit);
                    outcome
                }
                Work::Respond(bytes) => Outcome::Respond(bytes),
            };
            match outcome {
                Outcome::Respond(bytes) => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Outcome::Silent => {}
                Outcome::Close(reason) => {
                    tracing::error!(%peer, %reason, "closing connection");
                    break;
                }
            }
        }
        let _ = writer.shutdown().await;
    });

    if let Err(reason) = read_requests(&mut reader, peer, &state, &work_sender).await {
        tracing::info!(%peer, %reason, "closing connection");
    }
    drop(work_sender);
    let _ = processor.await;
}

/// Reads and dispatches frames until the stream ends (Ok) or must be closed (Err with why).
async fn read_requests(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    state: &Arc<BrokerState>,
    work: &mpsc::Sender<Work>,
) -> Result<(), String> {
    let max_bytes = state.config.socket_request_max_bytes;
    let idle = std::time::Duration::from_millis(state.config.connections_max_idle_ms.max(1));
    loop {
        let mut prefix = [0u8; 4];
        match tokio::time::timeout(idle, reader.read_exact(&mut prefix)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Ok(Err(e)) => return Err(format!("read failed: {e}")),
            Err(_) => return Err(format!("idle for {} ms", idle.as_millis())),
        }
        let size_bytes = strom_protocol::frame::frame_size(prefix, max_bytes)
            .map_err(|e| format!("bad frame: {e}"))?;
        let kib = (size_bytes.div_ceil(1024)).max(1) as u32;
        let permit = state
            .queued_request_kib
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| "broker shutting down".to_string())?;
        let mut frame = BytesMut::zeroed(size_bytes);
        reader
            .read_exact(&mut frame)
            .await
            .map_err(|e| format!("truncated frame of {size_bytes} bytes: {e}"))?;
        let frame = frame.freeze();
        let next = match decode_request(frame, &state.decode_limits) {
            Ok(request) => Work::Request(Box::new(request), permit),
            Err(RequestError::UnsupportedVersion(prefix))
                if prefix.api_key == kafka_protocol::messages::ApiKey::ApiVersions as i16 =>
            {
                Work::Respond(encode_api_versions_fallback(prefix.correlation_id))
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "rejecting request");
                return Err(format!("unacceptable request: {error}"));
            }
        };
        work.send(next)
            .await
            .map_err(|_| "connection processor gone".to_string())?;
    }
}

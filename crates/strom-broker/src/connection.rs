//! One client connection: read length-prefixed frames, decode each request through the bounded
//! decoder, handle requests concurrently, and write responses back in request order.
//!
//! Limits: a frame larger than `socket_request_max_bytes` (or negative) closes the connection;
//! at most `inflight_requests_per_connection_max` requests are in flight before the reader
//! waits; the frame bytes held over all connections are bounded by the `queued_request_kib`
//! semaphore.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use strom_protocol::request::{decode_request, RequestError};
use strom_protocol::response::encode_api_versions_fallback;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use crate::handlers;
use crate::state::BrokerState;

/// What the writer sends for one request: response bytes, or nothing (acks=0 produce).
type PendingResponse = oneshot::Receiver<Option<Bytes>>;

/// Serves one connection until the client closes it, sends something unacceptable, or the
/// broker shuts down.
pub async fn serve(stream: TcpStream, peer: SocketAddr, state: Arc<BrokerState>) {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let (pending_sender, mut pending_receiver) =
        mpsc::channel::<PendingResponse>(state.config.inflight_requests_per_connection_max);

    let writer_task = tokio::spawn(async move {
        while let Some(pending) = pending_receiver.recv().await {
            match pending.await {
                Ok(Some(bytes)) => {
                    if writer.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
        let _ = writer.shutdown().await;
    });

    if let Err(reason) = read_requests(&mut reader, peer, &state, &pending_sender).await {
        tracing::info!(%peer, %reason, "closing connection");
    }
    drop(pending_sender);
    let _ = writer_task.await;
}

/// Reads and dispatches frames until the stream ends (Ok) or must be closed (Err with why).
async fn read_requests(
    reader: &mut tokio::net::tcp::OwnedReadHalf,
    peer: SocketAddr,
    state: &Arc<BrokerState>,
    pending: &mpsc::Sender<PendingResponse>,
) -> Result<(), String> {
    let max_bytes = state.config.socket_request_max_bytes;
    loop {
        let mut prefix = [0u8; 4];
        match reader.read_exact(&mut prefix).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(format!("read failed: {e}")),
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
        let (sender, receiver) = oneshot::channel();
        match decode_request(frame, &state.decode_limits) {
            Ok(request) => {
                let state = state.clone();
                tokio::spawn(async move {
                    let response = handlers::handle(&state, request).await;
                    drop(permit);
                    let _ = sender.send(response);
                });
            }
            Err(RequestError::UnsupportedVersion(prefix))
                if prefix.api_key == kafka_protocol::messages::ApiKey::ApiVersions as i16 =>
            {
                let _ = sender.send(Some(encode_api_versions_fallback(prefix.correlation_id)));
            }
            Err(error) => {
                tracing::warn!(%peer, %error, "rejecting request");
                return Err(format!("unacceptable request: {error}"));
            }
        }
        pending
            .send(receiver)
            .await
            .map_err(|_| "writer gone".to_string())?;
    }
}

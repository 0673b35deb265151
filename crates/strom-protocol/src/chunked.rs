//! Response frames as a list of byte chunks, so stored record batches go to the socket as they
//! were read instead of being copied into one response buffer.
//!
//! `kafka-protocol` encodes into any [`ByteBufMut`]. [`ChunkedFrame`] is one: it collects the
//! small fields in a growing buffer, and when the encoder writes a slice that is exactly one of
//! the [`Bytes`] registered as *zero-copy* (same address, same length: the `records` of a fetch
//! response), it ends the current chunk and keeps a clone of that `Bytes` as the next chunk,
//! without copying it. The frame is then written with vectored writes. The bytes on the wire are
//! identical to those of [`crate::response::encode_response`]; `tests` prove it.

use bytes::buf::UninitSlice;
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;
use kafka_protocol::protocol::Encodable;

/// Slices shorter than this are copied even when registered: a chunk boundary costs more than
/// copying a few bytes.
pub(crate) const ZERO_COPY_MIN_BYTES: usize = 512;

/// A complete frame (size prefix, header, body) as chunks to be written in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frame {
    chunks: Vec<Bytes>,
    len_bytes: usize,
}

impl Frame {
    /// A frame of one contiguous buffer.
    pub fn single(bytes: Bytes) -> Frame {
        Frame {
            len_bytes: bytes.len(),
            chunks: vec![bytes],
        }
    }

    /// The chunks, in wire order.
    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    /// Consumes the frame into its chunks.
    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    /// Total bytes.
    pub fn len(&self) -> usize {
        self.len_bytes
    }

    /// Whether the frame has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len_bytes == 0
    }

    /// Whether one of the chunks is `bytes` itself (same address, same length): taken by
    /// reference, not copied.
    pub fn references(&self, bytes: &[u8]) -> bool {
        self.chunks
            .iter()
            .any(|c| c.as_ptr() == bytes.as_ptr() && c.len() == bytes.len())
    }

    /// The frame as one buffer (copies when it has several chunks); for tests and tools.
    pub fn to_contiguous(&self) -> Bytes {
        match self.chunks.as_slice() {
            [one] => one.clone(),
            chunks => {
                let mut out = BytesMut::with_capacity(self.len_bytes);
                for chunk in chunks {
                    out.extend_from_slice(chunk);
                }
                out.freeze()
            }
        }
    }
}

/// Encodes a request frame: the 4-byte size prefix, `header` at `header_version`, then `body` at
/// `version`, taking the `zero_copy` slices (a produce request's record batches) by reference
/// instead of copying them into the frame. Byte for byte the contiguous encoding.
pub fn encode_request_frame<H: Encodable, B: Encodable>(
    header: &H,
    header_version: i16,
    body: &B,
    version: i16,
    zero_copy: &[Bytes],
) -> Result<Frame, String> {
    let size = header
        .compute_size(header_version)
        .map_err(|e| e.to_string())?
        + body.compute_size(version).map_err(|e| e.to_string())?;
    let size_prefix = i32::try_from(size).map_err(|e| e.to_string())?;
    let referenced: usize = zero_copy
        .iter()
        .filter(|b| b.len() >= ZERO_COPY_MIN_BYTES)
        .map(Bytes::len)
        .sum();
    let parts = RequestParts {
        size_prefix,
        header,
        header_version,
        body,
        version,
    };
    let mut frame = ChunkedFrame::new((4 + size).saturating_sub(referenced), zero_copy);
    parts.put(&mut frame)?;
    if let Some(frame) = frame.finish() {
        return Ok(frame);
    }
    // The encoder went back into bytes already taken: encode it contiguously.
    let mut contiguous = BytesMut::with_capacity(4 + size);
    parts.put(&mut contiguous)?;
    Ok(Frame::single(contiguous.freeze()))
}

/// What a request frame is made of.
struct RequestParts<'a, H, B> {
    size_prefix: i32,
    header: &'a H,
    header_version: i16,
    body: &'a B,
    version: i16,
}

impl<H: Encodable, B: Encodable> RequestParts<'_, H, B> {
    /// Writes the size prefix, the header and the body into `out`.
    fn put<W: ByteBufMut>(&self, out: &mut W) -> Result<(), String> {
        out.put_i32(self.size_prefix);
        self.header
            .encode(out, self.header_version)
            .map_err(|e| e.to_string())?;
        self.body
            .encode(out, self.version)
            .map_err(|e| e.to_string())
    }
}

/// Drops `written` bytes from the front of `chunks[first..]` (whole chunks are skipped, a
/// partly written one is advanced): what a vectored write that took `written` bytes leaves.
/// Returns the index of the first chunk with bytes left.
pub fn skip_written(chunks: &mut [Bytes], mut first: usize, mut written: usize) -> usize {
    use bytes::Buf;
    while written > 0 && first < chunks.len() {
        let chunk = &mut chunks[first];
        if written >= chunk.len() {
            written -= chunk.len();
            first += 1;
        } else {
            chunk.advance(written);
            written = 0;
        }
    }
    first
}

/// A [`ByteBufMut`] that builds a [`Frame`], taking registered `Bytes` by reference.
pub(crate) struct ChunkedFrame<'a> {
    head: BytesMut,
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    flushed_bytes: usize,
    zero_copy: &'a [Bytes],
    /// (address, length, index in `zero_copy`) of the slices long enough to be taken by
    /// reference, sorted: a lookup per slice of a message with thousands of record sets must
    /// not scan them all.
    by_address: Vec<(usize, usize, usize)>,
    /// Set when the encoder asked to rewrite bytes already moved into `chunks` (no message
    /// encoder does; the caller then falls back to a contiguous encoding).
    broken: bool,
    scratch: Vec<u8>,
}

impl<'a> ChunkedFrame<'a> {
    pub(crate) fn new(capacity_bytes: usize, zero_copy: &'a [Bytes]) -> ChunkedFrame<'a> {
        let mut by_address: Vec<(usize, usize, usize)> = zero_copy
            .iter()
            .enumerate()
            .filter(|(_, b)| b.len() >= ZERO_COPY_MIN_BYTES)
            .map(|(i, b)| (b.as_ptr() as usize, b.len(), i))
            .collect();
        by_address.sort_unstable();
        ChunkedFrame {
            by_address,
            head: BytesMut::with_capacity(capacity_bytes),
            chunks: Vec::with_capacity(1 + 2 * zero_copy.len()),
            flushed_bytes: 0,
            zero_copy,
            broken: false,
            scratch: Vec::new(),
        }
    }

    /// The frame, or `None` if the encoder needed random access into a flushed chunk.
    pub(crate) fn finish(mut self) -> Option<Frame> {
        if self.broken {
            return None;
        }
        if !self.head.is_empty() {
            self.chunks.push(self.head.freeze());
        }
        let len_bytes = self.chunks.iter().map(Bytes::len).sum();
        Some(Frame {
            chunks: self.chunks,
            len_bytes,
        })
    }

    fn registered(&self, src: &[u8]) -> Option<&Bytes> {
        if src.len() < ZERO_COPY_MIN_BYTES {
            return None;
        }
        let key = (src.as_ptr() as usize, src.len());
        let at = self
            .by_address
            .partition_point(|&(address, len, _)| (address, len) < key);
        match self.by_address.get(at) {
            Some(&(address, len, index)) if (address, len) == key => self.zero_copy.get(index),
            _ => None,
        }
    }
}

// SAFETY: every method delegates to `head`, a `BytesMut`, whose `BufMut` implementation upholds
// the trait's contract; `put_slice` only adds whole chunks besides that.
unsafe impl BufMut for ChunkedFrame<'_> {
    fn remaining_mut(&self) -> usize {
        self.head.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded unchanged; the caller initialised `cnt` bytes of `chunk_mut()`,
        // which is `head`'s.
        unsafe { self.head.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut UninitSlice {
        self.head.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        if let Some(bytes) = self.registered(src).cloned() {
            if !self.head.is_empty() {
                let head = self.head.split().freeze();
                self.flushed_bytes += head.len();
                self.chunks.push(head);
            }
            self.flushed_bytes += bytes.len();
            self.chunks.push(bytes);
        } else {
            self.head.extend_from_slice(src);
        }
    }
}

impl ByteBufMut for ChunkedFrame<'_> {
    fn offset(&self) -> usize {
        self.flushed_bytes + self.head.len()
    }

    fn seek(&mut self, offset: usize) {
        match offset.checked_sub(self.flushed_bytes) {
            Some(in_head) => self.head.seek(in_head),
            None => self.broken = true,
        }
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        match (
            r.start.checked_sub(self.flushed_bytes),
            r.end.checked_sub(self.flushed_bytes),
        ) {
            (Some(start), Some(end)) if end <= self.head.len() => &mut self.head[start..end],
            _ => {
                self.broken = true;
                self.scratch.clear();
                self.scratch.resize(r.len(), 0);
                &mut self.scratch
            }
        }
    }
}

"""A tiny hand-written Kafka wire client for the raw-socket tests.

Only what the tests need: frames, request headers (v1 and flexible v2), ApiVersions v0..v3,
Metadata v1 (non-flexible) and Fetch v4, and a few readers for the responses. Everything is
written from the Kafka protocol guide, so a test can craft exactly the bytes it wants.
"""

from __future__ import annotations

import socket
import struct
import time

# Kafka error codes used by the tests.
NONE = 0
OFFSET_OUT_OF_RANGE = 1
UNKNOWN_TOPIC_OR_PARTITION = 3
MESSAGE_TOO_LARGE = 10
INVALID_TOPIC_EXCEPTION = 17
UNSUPPORTED_VERSION = 35
TOPIC_ALREADY_EXISTS = 36
INVALID_PARTITIONS = 37
INVALID_REQUEST = 42

API_FETCH = 1
API_METADATA = 3
API_API_VERSIONS = 18


# ---------------------------------------------------------------------------- primitives

def i8(v: int) -> bytes:
    return struct.pack(">b", v)


def i16(v: int) -> bytes:
    return struct.pack(">h", v)


def i32(v: int) -> bytes:
    return struct.pack(">i", v)


def i64(v: int) -> bytes:
    return struct.pack(">q", v)


def string(s: str | None) -> bytes:
    if s is None:
        return i16(-1)
    b = s.encode()
    return i16(len(b)) + b


def uvarint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def compact_string(s: str | None) -> bytes:
    if s is None:
        return uvarint(0)
    b = s.encode()
    return uvarint(len(b) + 1) + b


def header_v1(api_key: int, api_version: int, correlation_id: int, client_id: str | None = "strom-tests") -> bytes:
    return i16(api_key) + i16(api_version) + i32(correlation_id) + string(client_id)


def header_v2(api_key: int, api_version: int, correlation_id: int, client_id: str | None = "strom-tests") -> bytes:
    # Request header v2: v1 plus an empty tagged-field section.
    return header_v1(api_key, api_version, correlation_id, client_id) + uvarint(0)


def frame(payload: bytes) -> bytes:
    return i32(len(payload)) + payload


class Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError(f"read underflow: want {n} at {self.pos} of {len(self.data)}")
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b

    def i8(self) -> int:
        return struct.unpack(">b", self.take(1))[0]

    def i16(self) -> int:
        return struct.unpack(">h", self.take(2))[0]

    def i32(self) -> int:
        return struct.unpack(">i", self.take(4))[0]

    def i64(self) -> int:
        return struct.unpack(">q", self.take(8))[0]

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        return self.take(n).decode()

    def bytes_(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        return self.take(n)

    def uvarint(self) -> int:
        shift = 0
        v = 0
        while True:
            b = self.take(1)[0]
            v |= (b & 0x7F) << shift
            if not b & 0x80:
                return v
            shift += 7

    def compact_string(self) -> str | None:
        n = self.uvarint()
        if n == 0:
            return None
        return self.take(n - 1).decode()

    def skip_tags(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()
            self.take(self.uvarint())

    def remaining(self) -> int:
        return len(self.data) - self.pos


# ---------------------------------------------------------------------------- connection

class Closed(Exception):
    """The peer closed the connection (EOF or reset) before a full frame arrived."""


class Conn:
    def __init__(self, host: str, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @classmethod
    def to(cls, bootstrap: str, timeout: float = 10.0) -> "Conn":
        host, port = bootstrap.rsplit(":", 1)
        return cls(host, int(port), timeout)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, payload: bytes) -> None:
        self.sock.sendall(frame(payload))

    def _recv_exact(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(n - len(buf))
            except (ConnectionResetError, BrokenPipeError) as e:
                raise Closed(str(e)) from e
            if not chunk:
                raise Closed(f"EOF after {len(buf)} of {n} bytes")
            buf += chunk
        return bytes(buf)

    def recv_frame(self) -> bytes:
        n = struct.unpack(">i", self._recv_exact(4))[0]
        assert 0 <= n < 64 * 1024 * 1024, f"response frame length {n}"
        return self._recv_exact(n)

    def expect_closed(self, timeout: float = 10.0) -> bytes:
        """Wait until the peer closes; return any bytes it sent before closing.

        Raises AssertionError if the connection is still open after `timeout` seconds.
        """
        self.sock.settimeout(0.2)
        got = bytearray()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except (ConnectionResetError, BrokenPipeError):
                return bytes(got)
            if not chunk:
                return bytes(got)
            got += chunk
        raise AssertionError(f"connection still open after {timeout}s (received {len(got)} bytes)")

    def is_closed_within(self, timeout: float) -> bool:
        try:
            self.expect_closed(timeout)
            return True
        except AssertionError:
            return False


# ---------------------------------------------------------------------------- ApiVersions

def api_versions_request(version: int, correlation_id: int) -> bytes:
    if version >= 3:
        # Flexible: header v2, body = client_software_name, client_software_version, tags.
        return (header_v2(API_API_VERSIONS, version, correlation_id)
                + compact_string("strom-tests") + compact_string("1.0") + uvarint(0))
    return header_v1(API_API_VERSIONS, version, correlation_id)


def parse_api_versions_response(resp: bytes, version: int):
    """Parse an ApiVersions response (header is always v0 for this API).

    Returns (correlation_id, error_code, {api_key: (min, max)}, reader) — the reader is
    positioned after the api list so callers can check what remains.
    """
    r = Reader(resp)
    corr = r.i32()
    err = r.i16()
    apis = {}
    if version >= 3:
        n = r.uvarint() - 1
        for _ in range(n):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            r.skip_tags()
            apis[k] = (lo, hi)
        r.i32()  # throttle_time_ms
        r.skip_tags()
    else:
        n = r.i32()
        assert 0 <= n < 1000, n
        for _ in range(n):
            k, lo, hi = r.i16(), r.i16(), r.i16()
            apis[k] = (lo, hi)
        if version >= 1:
            r.i32()  # throttle_time_ms
    return corr, err, apis, r


def api_versions(bootstrap: str, version: int = 3):
    with Conn.to(bootstrap) as c:
        c.send(api_versions_request(version, 7))
        corr, err, apis, _ = parse_api_versions_response(c.recv_frame(), version)
        assert corr == 7
        return err, apis


# ---------------------------------------------------------------------------- Metadata v1

def metadata_v1_request(topics: list[str] | None, correlation_id: int) -> bytes:
    body = i32(-1) if topics is None else i32(len(topics)) + b"".join(string(t) for t in topics)
    return header_v1(API_METADATA, 1, correlation_id) + body


def parse_metadata_v1(resp: bytes):
    r = Reader(resp)
    corr = r.i32()
    brokers = []
    for _ in range(r.i32()):
        node, host, port, rack = r.i32(), r.string(), r.i32(), r.string()
        brokers.append((node, host, port, rack))
    controller = r.i32()
    topics = {}
    for _ in range(r.i32()):
        err, name, internal = r.i16(), r.string(), r.i8()
        parts = {}
        for _ in range(r.i32()):
            perr, pid, leader = r.i16(), r.i32(), r.i32()
            replicas = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            parts[pid] = (perr, leader, replicas, isr)
        topics[name] = (err, internal, parts)
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in Metadata v1 response"
    return corr, brokers, controller, topics


# ---------------------------------------------------------------------------- Fetch v4

def fetch_v4_request(topic: str, partition: int, offset: int, correlation_id: int,
                     max_wait_ms: int = 100, max_bytes: int = 1 << 20) -> bytes:
    body = (i32(-1) + i32(max_wait_ms) + i32(1) + i32(max_bytes) + i8(0)
            + i32(1) + string(topic)
            + i32(1) + i32(partition) + i64(offset) + i32(max_bytes))
    return header_v1(API_FETCH, 4, correlation_id) + body


def parse_fetch_v4(resp: bytes):
    """Returns {(topic, partition): (error_code, high_watermark, last_stable_offset, records_bytes)}."""
    r = Reader(resp)
    r.i32()  # correlation id
    r.i32()  # throttle
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            pid, err, hw, lso = r.i32(), r.i16(), r.i64(), r.i64()
            n_aborted = r.i32()
            for _ in range(max(n_aborted, 0)):
                r.i64(), r.i64()
            recs = r.bytes_()
            out[(topic, pid)] = (err, hw, lso, recs)
    return out


def fetch_v4(bootstrap: str, topic: str, partition: int, offset: int):
    with Conn.to(bootstrap) as c:
        c.send(fetch_v4_request(topic, partition, offset, 11))
        return parse_fetch_v4(c.recv_frame())[(topic, partition)]


# ---------------------------------------------------------------------------- record batches on disk

BATCH_HEADER_LEN = 61  # baseOffset(8) batchLength(4) ... up to and including recordCount


def parse_batches(data: bytes):
    """Split stored log bytes into v2 record batches.

    Returns a list of dicts with base_offset, last_offset_delta, start, end (file positions),
    record_count, crc; stops at the first incomplete batch and reports the leftover as
    `tail_bytes` in the last element's sibling (callers use the file size for that).
    """
    out = []
    pos = 0
    while pos + 12 <= len(data):
        base_offset, batch_len = struct.unpack(">qi", data[pos:pos + 12])
        end = pos + 12 + batch_len
        if batch_len < BATCH_HEADER_LEN - 12 or end > len(data):
            break
        magic = data[pos + 16]
        crc = struct.unpack(">I", data[pos + 17:pos + 21])[0]
        last_delta = struct.unpack(">i", data[pos + 23:pos + 27])[0]
        count = struct.unpack(">i", data[pos + 57:pos + 61])[0]
        out.append(dict(base_offset=base_offset, last_offset_delta=last_delta, start=pos, end=end,
                        record_count=count, magic=magic, crc=crc))
        pos = end
    return out

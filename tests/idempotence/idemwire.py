"""Raw frames for the idempotent-producer tests, on top of tests/kwire.py.

What the direct protocol tests need and no client lets them control: record batch v2 encoding with
any producer id, epoch and base sequence (CRC-32C computed here, from a table), InitProducerId v4
(flexible; with a producer id and epoch for a KIP-360 bump) and Produce v8 (non-flexible, with the
per-partition error message). Written from the Kafka protocol guide and the record batch format
(https://kafka.apache.org/documentation/#recordbatch).
"""

from __future__ import annotations

import struct
import time

import kwire
from kwire import Reader, i8, i16, i32, i64, string, uvarint

API_PRODUCE = 0
API_INIT_PRODUCER_ID = 22

# Kafka error codes of the idempotent path.
NONE = 0
CORRUPT_MESSAGE = 2
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47
UNKNOWN_PRODUCER_ID = 59
INVALID_RECORD = 87

NO_PRODUCER_ID = -1


# ---------------------------------------------------------------------------- CRC-32C (Castagnoli)

def _crc32c_table() -> list[int]:
    poly = 0x82F63B78  # reflected 0x1EDC6F41
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_CRC32C = _crc32c_table()


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc = _CRC32C[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283, "CRC-32C check value"


# ---------------------------------------------------------------------------- record batch v2

def zigzag_varint(v: int) -> bytes:
    return uvarint((v << 1) ^ (v >> 63))


def varbytes(b: bytes | None) -> bytes:
    if b is None:
        return zigzag_varint(-1)
    return zigzag_varint(len(b)) + b


def record(offset_delta: int, key: bytes | None, value: bytes | None, timestamp_delta: int = 0) -> bytes:
    body = (i8(0) + zigzag_varint(timestamp_delta) + zigzag_varint(offset_delta)
            + varbytes(key) + varbytes(value) + zigzag_varint(0))  # no headers
    return zigzag_varint(len(body)) + body


def record_batch(records: list[tuple[bytes | None, bytes | None]], producer_id: int = NO_PRODUCER_ID,
                 producer_epoch: int = -1, base_sequence: int = -1, base_timestamp: int | None = None,
                 base_offset: int = 0) -> bytes:
    """One uncompressed v2 batch of (key, value) records, CreateTime, partition leader epoch -1."""
    ts = int(time.time() * 1000) if base_timestamp is None else base_timestamp
    recs = b"".join(record(i, k, v) for i, (k, v) in enumerate(records))
    after_crc = (i16(0)                        # attributes: no codec, CreateTime, not transactional
                 + i32(len(records) - 1)       # lastOffsetDelta
                 + i64(ts) + i64(ts)           # baseTimestamp, maxTimestamp
                 + i64(producer_id) + i16(producer_epoch) + i32(base_sequence)
                 + i32(len(records)) + recs)
    after_len = i32(-1) + i8(2) + struct.pack(">I", crc32c(after_crc)) + after_crc
    return i64(base_offset) + i32(len(after_len)) + after_len


def idempotent_batch(pid: int, epoch: int, seq: int, n: int, tag: str, key_mod: int | None = None,
                     base_timestamp: int | None = None) -> bytes:
    """`n` records with sequences seq..seq+n-1; values name their sequence, keys cycle over key_mod."""
    recs = []
    for i in range(n):
        s = seq + i
        key = f"k{s % key_mod if key_mod else s}".encode()
        recs.append((key, f"{tag}-p{pid}-e{epoch}-s{s}".encode()))
    return record_batch(recs, pid, epoch, seq, base_timestamp)


def parse_batch_header(b: bytes) -> dict:
    (base_offset, length, leader_epoch, magic, crc, attributes, last_delta, base_ts, max_ts,
     pid, epoch, base_seq, count) = struct.unpack(">qiibIhiqqqhii", b[:61])
    return dict(base_offset=base_offset, length=length, leader_epoch=leader_epoch, magic=magic, crc=crc,
                attributes=attributes, last_offset_delta=last_delta, base_timestamp=base_ts,
                max_timestamp=max_ts, producer_id=pid, producer_epoch=epoch, base_sequence=base_seq,
                record_count=count)


def split_batches(data: bytes) -> list[bytes]:
    """Whole v2 batches in fetched record bytes (a trailing partial batch is dropped)."""
    out, pos = [], 0
    while pos + 12 <= len(data):
        length = struct.unpack(">i", data[pos + 8:pos + 12])[0]
        end = pos + 12 + length
        if end > len(data):
            break
        out.append(data[pos:end])
        pos = end
    return out


# ---------------------------------------------------------------------------- requests

def init_producer_id_v4(correlation_id: int, producer_id: int = -1, producer_epoch: int = -1,
                        transactional_id: str | None = None, timeout_ms: int = 60000) -> bytes:
    body = (kwire.compact_string(transactional_id) + i32(timeout_ms) + i64(producer_id)
            + i16(producer_epoch) + uvarint(0))
    return kwire.header_v2(API_INIT_PRODUCER_ID, 4, correlation_id) + body


def parse_init_producer_id_v4(resp: bytes) -> tuple[int, int, int, int]:
    """Returns (correlation_id, error_code, producer_id, producer_epoch); checks nothing is left."""
    r = Reader(resp)
    corr = r.i32()
    r.skip_tags()          # response header v1
    r.i32()                # throttle_time_ms
    err, pid, epoch = r.i16(), r.i64(), r.i16()
    r.skip_tags()
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in InitProducerId v4 response"
    return corr, err, pid, epoch


def produce_v8(correlation_id: int, topic: str, partition: int, records: bytes, acks: int = -1,
               timeout_ms: int = 10000) -> bytes:
    body = (string(None) + i16(acks) + i32(timeout_ms)
            + i32(1) + string(topic) + i32(1) + i32(partition) + i32(len(records)) + records)
    return kwire.header_v1(API_PRODUCE, 8, correlation_id) + body


def parse_produce_v8(resp: bytes) -> tuple[int, dict]:
    """Returns (correlation_id, {(topic, partition): dict(error, base_offset, log_append_time,
    log_start_offset, record_errors, error_message)})."""
    r = Reader(resp)
    corr = r.i32()
    out = {}
    for _ in range(r.i32()):
        topic = r.string()
        for _ in range(r.i32()):
            index, err, base, lat, lso = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
            rec_errors = [(r.i32(), r.string()) for _ in range(r.i32())]
            msg = r.string()
            out[(topic, index)] = dict(error=err, base_offset=base, log_append_time=lat,
                                       log_start_offset=lso, record_errors=rec_errors, error_message=msg)
    r.i32()  # throttle_time_ms
    assert r.remaining() == 0, f"{r.remaining()} trailing bytes in Produce v8 response"
    return corr, out


class Client:
    """One connection; each call sends one request and reads its response."""

    def __init__(self, bootstrap: str):
        self.conn = kwire.Conn.to(bootstrap)
        self.corr = 100

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _next(self) -> int:
        self.corr += 1
        return self.corr

    def init_producer_id(self, producer_id: int = -1, producer_epoch: int = -1,
                         transactional_id: str | None = None) -> tuple[int, int, int]:
        """Returns (error_code, producer_id, producer_epoch)."""
        corr = self._next()
        self.conn.send(init_producer_id_v4(corr, producer_id, producer_epoch, transactional_id))
        got, err, pid, epoch = parse_init_producer_id_v4(self.conn.recv_frame())
        assert got == corr
        return err, pid, epoch

    def produce(self, topic: str, partition: int, records: bytes, acks: int = -1) -> dict:
        corr = self._next()
        self.conn.send(produce_v8(corr, topic, partition, records, acks))
        got, parts = parse_produce_v8(self.conn.recv_frame())
        assert got == corr
        assert list(parts) == [(topic, partition)], parts
        return parts[(topic, partition)]


def fetch_all(bootstrap: str, topic: str, partition: int, offset: int = 0) -> tuple[int, list[bytes]]:
    """(high watermark, every whole batch from `offset`), by repeated Fetch v4."""
    batches: list[bytes] = []
    hw = None
    with kwire.Conn.to(bootstrap) as c:
        corr = 500
        while True:
            corr += 1
            c.send(kwire.fetch_v4_request(topic, partition, offset, corr, max_wait_ms=0))
            err, hw, _lso, recs = kwire.parse_fetch_v4(c.recv_frame())[(topic, partition)]
            assert err == 0, f"fetch {topic}/{partition}@{offset}: error {err}"
            got = split_batches(recs or b"")
            if not got:
                return hw, batches
            batches += got
            h = parse_batch_header(got[-1])
            offset = h["base_offset"] + h["last_offset_delta"] + 1
            if offset >= hw:
                return hw, batches


def high_watermark(bootstrap: str, topic: str, partition: int) -> int:
    err, hw, _lso, _recs = kwire.fetch_v4(bootstrap, topic, partition, 0)
    assert err == 0, err
    return hw

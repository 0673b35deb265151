"""Page cache window (crates/strom-storage/src/cache_window.rs): a partition's bytes that fall more
than `log_cache_window_bytes` behind its log end are written back and evicted from the page cache
while producers append. Real clients must read everything back as it was produced, from disk for
what was evicted, and /health must say what the trimming thread did.
"""

from __future__ import annotations

import ctypes
import json
import mmap
import os
import subprocess
import urllib.request
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition as KpTopicPartition

from stromtest import (assert_serving, consume_range, create_topic, produce_sync, producer,
                       unique_topic, wait_until)

MIB = 1024 * 1024
WINDOW_BYTES = 8 * MIB
SEGMENT_BYTES = 16 * MIB
VALUE_BYTES = 1000
# ~64 MiB of values: four 16 MiB segments, the first three far more than a window behind.
MESSAGES = 64 * MIB // VALUE_BYTES


def value_of(i: int) -> bytes:
    head = f"{i:010d}:".encode()
    return head + bytes([i % 251]) * (VALUE_BYTES - len(head))


def health(broker) -> dict:
    with urllib.request.urlopen(broker.http + "/health", timeout=5) as resp:
        return json.loads(resp.read())


def segment_files(broker, topic: str) -> list[Path]:
    return sorted(broker.partition_dir(topic, 0).glob("[0-9]" * 20 + ".log"))


def on_tmpfs(path: Path) -> bool:
    """tmpfs keeps files only in the page cache: nothing there is ever evicted."""
    r = subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True)
    return r.returncode == 0 and r.stdout.strip() == "tmpfs"


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                       ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
MAP_FAILED = ctypes.c_void_p(-1).value


def resident_pages(path: Path) -> tuple[int, int]:
    """(pages of `path` in the page cache, pages of `path`), by mincore over a mapping of the
    file that is never read (so the check itself caches nothing)."""
    size = path.stat().st_size
    assert size > 0, path
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        assert addr not in (None, MAP_FAILED), os.strerror(ctypes.get_errno())
        try:
            vec = (ctypes.c_ubyte * pages)()
            rc = _libc.mincore(addr, size, vec)
            assert rc == 0, os.strerror(ctypes.get_errno())
            return sum(b & 1 for b in vec), pages
        finally:
            _libc.munmap(addr, size)
    finally:
        os.close(fd)


def test_evicted_bytes_read_back_intact_with_real_clients(broker_factory):
    broker = broker_factory(config={"log_cache_window_bytes": WINDOW_BYTES})
    topic = unique_topic("cachewin")
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": SEGMENT_BYTES})
    start = health(broker)["cache_trim"]
    assert start is not None and start["jobs_skipped"] == 0, start

    p = producer(broker.bootstrap, **{"linger.ms": 20, "batch.size": 1_000_000,
                                       "compression.type": "none", "message.timeout.ms": 60000})
    acks = produce_sync(p, topic, [{"value": value_of(i), "partition": 0} for i in range(MESSAGES)],
                        timeout=60)
    assert [a[1] for a in acks] == list(range(MESSAGES))

    segments = segment_files(broker, topic)
    assert len(segments) >= 4, [s.name for s in segments]
    first_bytes = segments[0].stat().st_size
    # The thread works behind the appends: wait until it evicted at least the first segment.
    def evicted_first_segment():
        t = health(broker)["cache_trim"]
        return t if t["bytes_evicted"] - start["bytes_evicted"] >= first_bytes else None

    trim = wait_until(evicted_first_segment, timeout=20, what="the first segment evicted")
    assert trim["steps_evicted"] > start["steps_evicted"], trim
    assert trim["steps_written"] >= trim["steps_evicted"], trim
    assert trim["jobs_skipped"] == 0, trim

    # Before any consumer reads it: the first segment is (nearly) all out of the page cache,
    # the active one is in it.
    if not on_tmpfs(segments[0]):
        resident, pages = resident_pages(segments[0])
        print(f"first segment: {resident} of {pages} pages cached; /health cache_trim: {trim}")
        assert resident <= pages // 20, f"{resident} of {pages} pages of {segments[0].name} cached"
        resident, pages = resident_pages(segments[-1])
        assert resident >= pages * 9 // 10, f"only {resident} of {pages} pages of the active segment cached"

    # kafka-python, the whole partition from the beginning.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=10000, fetch_max_wait_ms=100,
                      request_timeout_ms=15000)
    try:
        c.assign([KpTopicPartition(topic, 0)])
        c.seek_to_beginning()
        read = []
        for record in c:
            read.append((record.offset, record.value))
            if len(read) == MESSAGES:
                break
    finally:
        c.close()
    assert len(read) == MESSAGES, f"kafka-python read {len(read)} of {MESSAGES}"
    bad = next((i for i, (o, v) in enumerate(read) if o != i or v != value_of(i)), None)
    assert bad is None, f"kafka-python: message {bad} is offset {read[bad][0]}, value {read[bad][1][:16]!r}"

    # confluent-kafka (CRCs checked), the same.
    got = consume_range(broker.bootstrap, topic, 0, 0, MESSAGES, timeout=60)
    bad = next((i for i, m in enumerate(got) if m.offset() != i or m.value() != value_of(i)), None)
    assert bad is None, f"confluent-kafka: message {bad} is offset {got[bad].offset()}"

    assert health(broker)["cache_trim"]["jobs_skipped"] == 0
    assert_serving(broker.bootstrap)


def test_default_window_serves_and_reports_in_health(broker_factory):
    broker = broker_factory()
    topic = unique_topic("cachewin-default")
    create_topic(broker.bootstrap, topic, partitions=1)
    values = [value_of(i) for i in range(2000)]
    produce_sync(producer(broker.bootstrap), topic, [{"value": v, "partition": 0} for v in values])
    got = consume_range(broker.bootstrap, topic, 0, 0, len(values))
    assert [m.value() for m in got] == values
    assert [m.offset() for m in got] == list(range(len(values)))
    trim = health(broker)["cache_trim"]
    assert set(trim) == {"steps_written", "steps_evicted", "bytes_evicted", "jobs_skipped"}, trim
    assert all(isinstance(v, int) and v >= 0 for v in trim.values()), trim
    # 2 MB is far inside the default 1 GiB window.
    assert trim["steps_evicted"] == 0 and trim["jobs_skipped"] == 0, trim


def test_window_off_reports_null_in_health(broker_factory):
    broker = broker_factory(config={"log_cache_window_bytes": 0})
    topic = unique_topic("cachewin-off")
    create_topic(broker.bootstrap, topic, partitions=1)
    values = [value_of(i) for i in range(500)]
    produce_sync(producer(broker.bootstrap), topic, [{"value": v, "partition": 0} for v in values])
    assert [m.value() for m in consume_range(broker.bootstrap, topic, 0, 0, len(values))] == values
    body = health(broker)
    assert "cache_trim" in body and body["cache_trim"] is None, body

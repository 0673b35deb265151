"""Catch-up reads: a fetch that starts far behind the log end has its bytes read and written by
the broker's lower-priority catch-up threads (crates/strom-broker/src/catchup.rs). Real clients
must see exactly what the normal path serves: every record, in order, CRCs intact, including
responses cut inside a batch by the fetch size limits.

The threshold is set low (64 KiB) so every client below reads most of the topic through the
catch-up threads; the test then checks, from /proc, that those threads exist at the configured
nice value and really ran.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition as KpTopicPartition

from stromtest import (assert_serving, consume_range, create_topic, kcat, produce_sync, producer,
                       unique_topic)

PARTITIONS = 3
MESSAGES = 9_000
# The tail window is off here, so data read right after it was written counts as old.
CATCHUP = {"fetch_catchup_lag_bytes": 65536, "fetch_catchup_tail_ms": 0, "fetch_catchup_threads": 2,
           "fetch_catchup_nice": 15}
# With a tail window: bytes appended within it do not count towards the 64 KiB.
TAIL_WINDOW_MS = 8000


def value_of(i: int) -> bytes:
    return f"{i:08d}:".encode() + bytes([65 + i % 26]) * (150 + i % 200)


def catchup_threads(pid: int) -> list[tuple[str, int, int]]:
    """(name, nice, ns on CPU) of each catch-up thread of the broker process."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        name = (task / "comm").read_text().strip()
        if not name.startswith("strom-catchup"):
            continue
        fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        nice = int(fields[16])  # field 19 of stat; fields[0] is field 3
        on_cpu_ns = int((task / "schedstat").read_text().split()[0])
        out.append((name, nice, on_cpu_ns))
    return out


def settled_catchup_cpu_ns(pid: int) -> int:
    """The catch-up threads' CPU time once it stops moving: on a busy machine a thread may
    still be starting (lowering its priority, reaching its first wait) after the broker
    answers, and that start is not a read."""
    deadline = time.monotonic() + 10
    last = sum(ns for _, _, ns in catchup_threads(pid))
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = sum(ns for _, _, ns in catchup_threads(pid))
        if now == last:
            return now
        last = now
    raise AssertionError("the catch-up threads kept running with nothing to read")


def fill(bootstrap: str, topic: str) -> dict[int, list[bytes]]:
    """Produces MESSAGES keyed records in many small batches; returns each partition's values."""
    create_topic(bootstrap, topic, partitions=PARTITIONS)
    p = producer(bootstrap, **{"linger.ms": 2, "batch.num.messages": 200})
    messages = [{"value": value_of(i), "partition": i % PARTITIONS} for i in range(MESSAGES)]
    produce_sync(p, topic, messages)
    expected: dict[int, list[bytes]] = {q: [] for q in range(PARTITIONS)}
    for m in messages:
        expected[m["partition"]].append(m["value"])
    return expected


def test_catch_up_reads_serve_every_record_to_real_clients(broker_factory):
    broker = broker_factory(config=CATCHUP)
    topic = unique_topic("catchup")
    expected = fill(broker.bootstrap, topic)
    before = {name: ns for name, _, ns in catchup_threads(broker.proc.pid)}
    assert len(before) == 2 and all(n == 15 for _, n, _ in catchup_threads(broker.proc.pid))

    # librdkafka, with small fetches so responses end inside a batch.
    for partition in range(PARTITIONS):
        got = consume_range(broker.bootstrap, topic, partition, 0, len(expected[partition]),
                            **{"fetch.max.bytes": 70000, "message.max.bytes": 65536,
                               "max.partition.fetch.bytes": 40000})
        assert [m.value() for m in got] == expected[partition]
        assert [m.offset() for m in got] == list(range(len(expected[partition])))

    # kafka-python, all partitions in one fetch.
    c = KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=5000, fetch_max_wait_ms=100,
                      max_partition_fetch_bytes=100_000, request_timeout_ms=15000)
    try:
        tps = [KpTopicPartition(topic, q) for q in range(PARTITIONS)]
        c.assign(tps)
        c.seek_to_beginning()
        read: dict[int, list[bytes]] = {q: [] for q in range(PARTITIONS)}
        for record in c:
            read[record.partition].append(record.value)
            if sum(map(len, read.values())) == MESSAGES:
                break
        assert read == expected
    finally:
        c.close()

    # kcat, the whole topic from the start.
    r = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-p", "1", "-o", "beginning", "-e", "-q",
             "-f", "%s\n", "-X", "fetch.max.bytes=100000", "-X", "message.max.bytes=65536", timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == expected[1]

    after = {name: ns for name, _, ns in catchup_threads(broker.proc.pid)}
    assert sum(after.values()) > sum(before.values()), (before, after)
    assert_serving(broker.bootstrap)


def test_tail_reads_do_not_use_the_catch_up_threads(broker_factory):
    broker = broker_factory(config=CATCHUP)
    topic = unique_topic("tail")
    create_topic(broker.bootstrap, topic)
    p = producer(broker.bootstrap)
    produce_sync(p, topic, [{"value": value_of(i), "partition": 0} for i in range(100)])
    before = settled_catchup_cpu_ns(broker.proc.pid)
    got = consume_range(broker.bootstrap, topic, 0, 0, 100)
    assert [m.value() for m in got] == [value_of(i) for i in range(100)]
    after = sum(ns for _, _, ns in catchup_threads(broker.proc.pid))
    assert after == before, "a read 20 KB behind the end went through the catch-up threads"


def test_a_consumer_close_behind_the_producers_is_no_catch_up_read(broker_factory):
    # ~800 KB per partition, far more than the 64 KiB threshold, but all of it written within
    # the tail window: a consumer that far behind a fast partition is tailing, and reads the
    # normal way. Once the window has passed, the same bytes are old: a catch-up read.
    broker = broker_factory(config={**CATCHUP, "fetch_catchup_tail_ms": TAIL_WINDOW_MS})
    topic = unique_topic("near")
    filled = time.monotonic()
    expected = fill(broker.bootstrap, topic)
    before = settled_catchup_cpu_ns(broker.proc.pid)
    got = consume_range(broker.bootstrap, topic, 0, 0, len(expected[0]))
    assert [m.value() for m in got] == expected[0]
    read_at = time.monotonic()
    if read_at - filled < TAIL_WINDOW_MS / 1000 / 2:
        # (A machine so slow that the fill and the read took half the window proves nothing.)
        assert settled_catchup_cpu_ns(broker.proc.pid) == before, \
            "a read of bytes written within the tail window went through the catch-up threads"
    time.sleep(max(0.0, filled + TAIL_WINDOW_MS / 1000 + 0.5 - time.monotonic()))
    before = settled_catchup_cpu_ns(broker.proc.pid)
    got = consume_range(broker.bootstrap, topic, 1, 0, len(expected[1]))
    assert [m.value() for m in got] == expected[1]
    after = sum(ns for _, _, ns in catchup_threads(broker.proc.pid))
    assert after > before, "a read of old bytes did not go through the catch-up threads"
    assert_serving(broker.bootstrap)


def test_catch_up_can_be_turned_off(broker_factory):
    broker = broker_factory(config={"fetch_catchup_lag_bytes": 0})
    topic = unique_topic("off")
    expected = fill(broker.bootstrap, topic)
    before = sum(ns for _, _, ns in catchup_threads(broker.proc.pid))
    got = consume_range(broker.bootstrap, topic, 2, 0, len(expected[2]))
    assert [m.value() for m in got] == expected[2]
    assert sum(ns for _, _, ns in catchup_threads(broker.proc.pid)) == before


def test_catch_up_reads_share_a_byte_budget_while_producers_write(broker_factory):
    # 0.5 MB/s for catch-up reads while anything is appended; ~0.8 MB to replay on partition 0.
    broker = broker_factory(config={**CATCHUP, "fetch_catchup_bytes_per_sec": 500_000})
    topic = unique_topic("budget")
    expected = fill(broker.bootstrap, topic)
    busy = unique_topic("busy")
    create_topic(broker.bootstrap, busy)
    stop = threading.Event()

    def keep_producing():
        p = producer(broker.bootstrap)
        while not stop.is_set():
            produce_sync(p, busy, [{"value": b"tick", "partition": 0}])
            time.sleep(0.05)

    writer = threading.Thread(target=keep_producing, daemon=True)
    writer.start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        got = consume_range(broker.bootstrap, topic, 0, 0, len(expected[0]), timeout=60)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        writer.join(10)
    assert [m.value() for m in got] == expected[0]
    replayed_bytes = sum(len(v) for v in expected[0])
    # The budget held the replay back (a lower bound only: a slow machine takes longer anyway).
    assert elapsed >= 0.5 * replayed_bytes / 500_000, (elapsed, replayed_bytes)
    assert_serving(broker.bootstrap)

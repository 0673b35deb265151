"""Retention by size and by time: whole closed segments go, the log start offset moves, and a consumer
asking for a deleted offset gets OFFSET_OUT_OF_RANGE.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError, TopicPartition

import kwire
from stromtest import (consume_range, consumer, create_topic, produce_sync, producer, unique_topic,
                       wait_until, watermarks)

# strom.toml: run the retention check often (Kafka's log.retention.check.interval.ms).
RETENTION_CONFIG = {"log_retention_check_interval_ms": 200}


@pytest.fixture
def rbroker(broker_factory):
    return broker_factory(config=RETENTION_CONFIG)


def fill(bootstrap, topic, n=200, size=1000):
    # One request in flight: this test is about retention, not about pipelined produce ordering.
    p = producer(bootstrap, **{"linger.ms": 0, "batch.num.messages": 1, "compression.type": "none",
                               "max.in.flight.requests.per.connection": 1})
    msgs = [dict(value=f"{i:06d}".encode() + b"x" * (size - 6), partition=0) for i in range(n)]
    acks = produce_sync(p, topic, msgs)
    assert [a[1] for a in acks] == list(range(n))
    return msgs


def segment_files(broker, topic):
    return sorted(broker.partition_dir(topic, 0).glob("*.log"))


def bytes_on_disk(broker, topic):
    total = 0
    for f in segment_files(broker, topic):
        try:
            total += f.stat().st_size
        except FileNotFoundError:  # deleted by retention between glob and stat
            pass
    return total


def assert_out_of_range_from_zero(bootstrap, topic, log_start):
    # Raw Fetch: the broker's own error code.
    err, hw, _, _ = kwire.fetch_v4(bootstrap, topic, 0, 0)
    assert err == kwire.OFFSET_OUT_OF_RANGE, err
    # librdkafka with auto.offset.reset=error reports it as an error event.
    c = consumer(bootstrap, **{"auto.offset.reset": "error"})
    try:
        c.assign([TopicPartition(topic, 0, 0)])
        deadline = time.monotonic() + 15
        err = None
        while time.monotonic() < deadline and err is None:
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                err = m.error()
            else:
                pytest.fail(f"consumer read offset {m.offset()} below the log start {log_start}")
        assert err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET, err
        assert "out of range" in err.str().lower(), err.str()
    finally:
        c.close()


@pytest.mark.timeout(90)
def test_retention_bytes_drops_old_segments(rbroker):
    topic = unique_topic("ret-bytes")
    create_topic(rbroker.bootstrap, topic, 1, config={"segment.bytes": 16384, "retention.bytes": 32768})
    msgs = fill(rbroker.bootstrap, topic)
    total = len(msgs)

    # Retention may already run while we produce: wait until it has caught up with all of it.
    # Kafka keeps the newest segments whose total stays within retention.bytes, plus the active one.
    bound = 32768 + 16384 + 2048

    def settled():
        size = bytes_on_disk(rbroker, topic)
        lo = watermarks(rbroker.bootstrap, topic)[0]
        return (lo, size) if lo > 0 and size <= bound else None

    wait_until(settled, timeout=30, interval=0.3, what=f"log start offset > 0 and <= {bound} bytes on disk")
    lo, hi = watermarks(rbroker.bootstrap, topic)
    assert hi == total
    assert 0 < lo < total
    assert total - lo >= 16, (lo, hi)  # about retention.bytes worth of 1 KB messages is kept
    assert segment_files(rbroker, topic)[0].name == f"{lo:020d}.log"

    got = consume_range(rbroker.bootstrap, topic, 0, lo)
    assert [m.offset() for m in got] == list(range(lo, total))
    assert [m.value() for m in got] == [m["value"] for m in msgs[lo:]]
    assert_out_of_range_from_zero(rbroker.bootstrap, topic, lo)

    # The log start offset survives a restart.
    rbroker.restart()
    assert watermarks(rbroker.bootstrap, topic)[0] >= lo


@pytest.mark.timeout(90)
def test_retention_ms_drops_old_segments(rbroker):
    topic = unique_topic("ret-ms")
    create_topic(rbroker.bootstrap, topic, 1, config={"segment.bytes": 16384, "retention.ms": 2000})
    # Records carry their CreateTime: old timestamps make the closed segments expired at once.
    # One message per batch so the segments roll at segment.bytes (a batch is never split).
    p = producer(rbroker.bootstrap, **{"linger.ms": 0, "compression.type": "none", "batch.num.messages": 1,
                                       "max.in.flight.requests.per.connection": 1})
    old = int(time.time() * 1000) - 600_000
    produce_sync(p, topic, [dict(value=b"o" * 1000, timestamp=old + i, partition=0) for i in range(100)])

    lo = wait_until(lambda: watermarks(rbroker.bootstrap, topic)[0] or None, timeout=30,
                    interval=0.3, what="log start offset > 0")
    lo, hi = watermarks(rbroker.bootstrap, topic)
    assert hi == 100 and lo > 0
    assert_out_of_range_from_zero(rbroker.bootstrap, topic, lo)

    # New data is kept and readable after the cut.
    produce_sync(p, topic, [dict(value=b"fresh", partition=0)])
    got = consume_range(rbroker.bootstrap, topic, 0, 100, count=1)
    assert got[0].value() == b"fresh"


@pytest.mark.timeout(60)
def test_retention_not_applied_without_limits(rbroker):
    topic = unique_topic("ret-none")
    create_topic(rbroker.bootstrap, topic, 1, config={"segment.bytes": 16384})
    fill(rbroker.bootstrap, topic, n=100)
    time.sleep(1.5)  # several retention checks
    assert watermarks(rbroker.bootstrap, topic) == (0, 100)
    assert len(segment_files(rbroker, topic)) > 3

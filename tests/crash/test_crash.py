"""Crash safety: SIGKILL under load, and recovery from a torn or corrupt segment tail."""

from __future__ import annotations

import os
import struct
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

import kwire
from stromtest import (RDKAFKA_LOG, consume_range, create_topic, produce_sync, producer, unique_topic,
                       watermarks)

PARTITIONS = 2


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.acked: dict[tuple[int, int], bytes] = {}  # (partition, offset) -> value
        self.failed = 0

    def cb(self, err, msg):
        with self.lock:
            if err is None:
                key = (msg.partition(), msg.offset())
                assert key not in self.acked, f"offset {key} acknowledged twice"
                self.acked[key] = msg.value()
            else:
                self.failed += 1


def read_partition(bootstrap, topic, partition):
    msgs = consume_range(bootstrap, topic, partition, 0, timeout=60)
    return [(m.offset(), m.value()) for m in msgs]


@pytest.mark.timeout(180)
@pytest.mark.parametrize("acks,idempotent", [("1", False), ("all", False), ("all", True)],
                         ids=["acks1", "acksall", "acksall-idempotent"])
def test_sigkill_during_produce_load(broker, acks, idempotent):
    topic = unique_topic(f"crash-acks{acks}")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    rec = Recorder()
    p = Producer({"bootstrap.servers": broker.bootstrap, "acks": acks, "linger.ms": 2,
                  "batch.num.messages": 50, "message.timeout.ms": 30000, "retries": 1000,
                  "retry.backoff.ms": 100, "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
                  "enable.idempotence": idempotent, "queue.buffering.max.messages": 20000},
                 logger=RDKAFKA_LOG)

    i = 0
    start = time.monotonic()
    kill_at = start + 1.5
    killed = False
    # Steady load: produce as fast as the queue allows for 1.5 s, SIGKILL, keep producing 0.3 s.
    while time.monotonic() < kill_at + 0.3:
        if not killed and time.monotonic() >= kill_at:
            acked_before_kill = len(rec.acked)
            broker.kill()
            killed = True
        try:
            p.produce(topic, value=f"msg-{i:08d}".encode() + b"." * (i % 50),
                      key=str(i % 17).encode(), on_delivery=rec.cb)
            i += 1
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    assert acked_before_kill > 100, f"only {acked_before_kill} acks before the kill: load too light"

    broker.start()
    # Everything still queued is retried against the restarted broker (same port).
    p.flush(60)
    assert len(rec.acked) >= acked_before_kill
    print(f"acks={acks}: produced {i}, acked before kill {acked_before_kill}, acked {len(rec.acked)}, "
          f"failed {rec.failed}")

    # Every acknowledged message is present at exactly its acknowledged offset; no gaps.
    for part in range(PARTITIONS):
        log = read_partition(broker.bootstrap, topic, part)
        offsets = [o for o, _ in log]
        assert offsets == list(range(len(log))), f"partition {part}: offsets not contiguous from 0"
        stored = dict(log)
        for (pp, off), value in rec.acked.items():
            if pp != part:
                continue
            assert off in stored, f"acknowledged {part}@{off} missing (log end {len(log)})"
            assert stored[off] == value, f"{part}@{off}: stored {stored[off]!r}, acknowledged {value!r}"
        lo, hi = watermarks(broker.bootstrap, topic, part)
        assert (lo, hi) == (0, len(log))
        if idempotent:
            # Retries of batches that were written before the kill must be recognised as
            # duplicates: every message exactly once, in produce order, all acknowledged.
            values = [v for _, v in log]
            assert len(values) == len(set(values)), f"partition {part}: duplicates after restart"
            assert len(log) == sum(1 for (pp, _) in rec.acked if pp == part)
            seq = [int(v[4:12]) for v in values]
            assert seq == sorted(seq), f"partition {part}: out of order"

        # Producing after the restart continues at the log end offset.
        [(_, off, _)] = produce_sync(producer(broker.bootstrap), topic,
                                     [dict(value=b"after-restart", partition=part)])
        assert off == hi, f"partition {part}: next offset {off}, log end was {hi}"


# ---------------------------------------------------------------------------- corrupt tail

def active_segment(broker, topic: str, partition: int) -> Path:
    d = broker.partition_dir(topic, partition)
    logs = sorted(d.glob("[0-9]" * 20 + ".log"))
    assert logs, f"no segment files in {d}: {list(d.iterdir())}"
    return logs[-1]


def produce_batches(bootstrap, topic, batches: int, per_batch: int) -> list[list[bytes]]:
    """Each produce_sync call with linger 0 and one flush gives (at least) one batch per call."""
    p = producer(bootstrap, **{"linger.ms": 50, "acks": "all", "compression.type": "none"})
    values = []
    for b in range(batches):
        vs = [f"b{b:03d}-r{r:03d}-".encode() + bytes([b % 256]) * 40 for r in range(per_batch)]
        acks = produce_sync(p, topic, [dict(value=v, partition=0) for v in vs])
        values.append(vs)
        assert [a[1] for a in acks] == list(range(b * per_batch, (b + 1) * per_batch))
    return values


@pytest.mark.timeout(120)
@pytest.mark.parametrize("damage", ["truncate-mid-batch", "flip-byte-in-last-batch",
                                    "garbage-appended", "zeroed-tail"])
def test_recovery_truncates_corrupt_tail(broker, damage):
    topic = unique_topic("crash-tail")
    create_topic(broker.bootstrap, topic, partitions=1)
    values = produce_batches(broker.bootstrap, topic, batches=8, per_batch=5)
    total = sum(len(v) for v in values)
    assert watermarks(broker.bootstrap, topic) == (0, total)

    # A crash, not a clean shutdown: the recovery scan must run over the tail.
    broker.kill()
    seg = active_segment(broker, topic, 0)
    data = seg.read_bytes()
    batches = kwire.parse_batches(data)
    assert batches and batches[-1]["end"] == len(data), \
        f"segment {seg.name}: {len(data)} bytes, batches end at {batches[-1]['end'] if batches else 0}"
    assert all(b["magic"] == 2 for b in batches)
    last = batches[-1]
    last_end_offset = last["base_offset"] + last["last_offset_delta"] + 1
    assert last_end_offset == total

    if damage == "truncate-mid-batch":
        cut = last["start"] + (last["end"] - last["start"]) // 2
        with open(seg, "r+b") as f:
            f.truncate(cut)
        expect_end = last["base_offset"]
    elif damage == "flip-byte-in-last-batch":
        pos = last["end"] - 3  # inside the last record's value: covered by the CRC, not a length
        with open(seg, "r+b") as f:
            f.seek(pos)
            b = f.read(1)
            f.seek(pos)
            f.write(bytes([b[0] ^ 0x5A]))
        expect_end = last["base_offset"]
    elif damage == "garbage-appended":
        with open(seg, "ab") as f:
            f.write(struct.pack(">qi", total, 1_000_000) + os.urandom(100))
        expect_end = total
    else:  # zeroed-tail: a tail the file system extended but never wrote reads as zeros
        with open(seg, "ab") as f:
            f.write(b"\x00" * 4096)
        expect_end = total

    broker.start()
    assert watermarks(broker.bootstrap, topic) == (0, expect_end)
    got = consume_range(broker.bootstrap, topic, 0, 0)
    flat = [v for vs in values for v in vs]
    assert [m.offset() for m in got] == list(range(expect_end))
    assert [m.value() for m in got] == flat[:expect_end]

    # The next produce continues exactly at the recovered log end offset...
    [(_, off, _)] = produce_sync(producer(broker.bootstrap), topic, [dict(value=b"after-recovery", partition=0)])
    assert off == expect_end
    got = consume_range(broker.bootstrap, topic, 0, expect_end)
    assert [(m.offset(), m.value()) for m in got] == [(expect_end, b"after-recovery")]

    # ...and the file on disk is a clean sequence of batches again (nothing left of the damage).
    broker.stop()
    data = active_segment(broker, topic, 0).read_bytes()
    batches = kwire.parse_batches(data)
    assert batches[-1]["end"] == len(data), "damaged bytes left in the segment"
    assert batches[-1]["base_offset"] == expect_end
    broker.start()
    assert watermarks(broker.bootstrap, topic) == (0, expect_end + 1)


@pytest.mark.timeout(120)
def test_clean_shutdown_and_restart_keeps_everything(broker):
    topic = unique_topic("crash-clean")
    create_topic(broker.bootstrap, topic, partitions=3)
    p = producer(broker.bootstrap)
    msgs = [dict(value=f"v{i}".encode(), key=f"k{i}".encode(), partition=i % 3) for i in range(300)]
    produce_sync(p, topic, msgs)
    code = broker.stop()
    assert code == 0, f"clean shutdown exit code {code}"
    broker.start()
    for part in range(3):
        got = consume_range(broker.bootstrap, topic, part, 0)
        assert [m.value() for m in got] == [m["value"] for m in msgs if m["partition"] == part]


# ------------------------------------------------------------- page cache window

@pytest.mark.timeout(180)
def test_sigkill_with_cache_window(broker_factory):
    """With the smallest page cache window (8 MiB), older steps of the log are written back and
    evicted while appends go on. A SIGKILL under load must keep every acknowledged message
    whether its pages were evicted, being written back or still dirty, and segments that rolled
    meanwhile must end at their last batch (a closed segment with a tail after its data would
    count as damaged and drop every later segment)."""
    import json
    import urllib.request

    b = broker_factory(config={"log_cache_window_bytes": 8 * 1024 * 1024})
    topic = unique_topic("crash-cache-window")
    # Segments of 4 MiB: several roll within the load, and evicted steps span segments.
    create_topic(b.bootstrap, topic, partitions=1, config={"segment.bytes": 4 * 1024 * 1024})
    rec = Recorder()
    # Batches of up to 64 KiB (1 KB values): tens of MB within seconds.
    p = Producer({"bootstrap.servers": b.bootstrap, "acks": "1", "linger.ms": 5,
                  "batch.size": 65536, "message.timeout.ms": 30000, "retries": 1000,
                  "retry.backoff.ms": 100, "reconnect.backoff.ms": 50, "reconnect.backoff.max.ms": 500,
                  "queue.buffering.max.messages": 50000}, logger=RDKAFKA_LOG)

    def steps_evicted() -> int:
        with urllib.request.urlopen(f"{b.http}/health", timeout=5) as r:
            return json.load(r)["cache_trim"]["steps_evicted"]

    sent = 0

    def produce_until(done) -> None:
        nonlocal sent
        while not done():
            try:
                p.produce(topic, value=f"msg-{sent:08d}".encode() + b"x" * 1000, partition=0,
                          on_delivery=rec.cb)
                sent += 1
            except BufferError:
                p.poll(0.01)
            p.poll(0)

    deadline = time.monotonic() + 60

    def rolled_and_evicted() -> bool:
        assert time.monotonic() < deadline, "no rolls or no eviction within 60 s"
        if sent == 0 or sent % 2000:
            return False
        rolled = len(list(b.partition_dir(topic, 0).glob("[0-9]" * 20 + ".log"))) >= 3
        return rolled and steps_evicted() > 0

    # Load until a few segments rolled and steps fell out of the window (more than 16 MiB
    # appended), then keep it going briefly so the SIGKILL lands in the middle of writes.
    produce_until(rolled_and_evicted)
    until = time.monotonic() + 0.3
    produce_until(lambda: time.monotonic() >= until)
    acked_before_kill = len(rec.acked)
    b.kill()
    segments = sorted(b.partition_dir(topic, 0).glob("[0-9]" * 20 + ".log"))
    active = segments[-1].read_bytes()
    active_batches = kwire.parse_batches(active)
    data_end = active_batches[-1]["end"] if active_batches else 0
    print(f"{len(segments)} segments; active {len(active)} B on disk, batches end at {data_end}")
    for seg in segments[:-1]:
        data = seg.read_bytes()
        assert kwire.parse_batches(data)[-1]["end"] == len(data), f"{seg.name} does not end at its last batch"

    b.start()
    p.flush(60)
    assert acked_before_kill > 1000, f"only {acked_before_kill} acks before the kill"
    log = read_partition(b.bootstrap, topic, 0)
    assert [o for o, _ in log] == list(range(len(log))), "offsets not contiguous from 0"
    stored = dict(log)
    for (_, off), value in rec.acked.items():
        assert stored.get(off) == value, f"acknowledged 0@{off} missing or different"
    [(_, off, _)] = produce_sync(producer(b.bootstrap), topic, [dict(value=b"after-restart", partition=0)])
    assert off == len(log)

    # After a clean stop every segment file ends at its last batch.
    b.stop()
    for seg in sorted(b.partition_dir(topic, 0).glob("[0-9]" * 20 + ".log")):
        data = seg.read_bytes()
        assert kwire.parse_batches(data)[-1]["end"] == len(data), f"{seg.name} ends past its last batch"

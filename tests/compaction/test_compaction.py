"""Log compaction of user topics (issue 3): a keyed topic shrinks to the latest record per key with
offsets unchanged, tombstones go after delete.retention.ms, and keyless records are refused."""

from __future__ import annotations

import time

import pytest
from confluent_kafka import KafkaError

import idemwire as w
from compactlog import Expected, check_invariants, read_all, wait_for_offsets
from stromtest import consume_range, create_topic, produce_sync, producer, unique_topic, watermarks

KEYS = 40
UPDATES = 15
DELETED = 8          # keys whose latest record is a tombstone
RESURRECTED = 4      # keys tombstoned and then written again
DELETE_RETENTION_MS = 3000


def key(i: int) -> bytes:
    return f"key-{i:03d}".encode()


def produce_tracked(p, topic: str, exp: Expected, msgs: list[tuple[bytes, bytes | None]]) -> None:
    sent_at = time.monotonic()
    acks = produce_sync(p, topic, [dict(key=k, value=v, partition=0) for k, v in msgs])
    for (k, v), (part, off, _) in zip(msgs, acks):
        assert part == 0
        exp.add(off, k, v, sent_at)


def cleaned_count(broker) -> int:
    return broker.log_text().count("log cleaned")


def read_with_kafka_python(bootstrap: str, topic: str, end: int) -> list[tuple[int, bytes, bytes | None]]:
    """kafka-python's consumer over the cleaned log (offset gaps, empty batches, rewritten batches)."""
    from kafka import KafkaConsumer, TopicPartition as KTP
    c = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, check_crcs=True)
    try:
        tp = KTP(topic, 0)
        c.assign([tp])
        c.seek(tp, 0)
        out = []
        deadline = time.monotonic() + 30
        while c.position(tp) < end:
            assert time.monotonic() < deadline, f"kafka-python stuck at {c.position(tp)} of {end}"
            for recs in c.poll(timeout_ms=500).values():
                out += [(r.offset, r.key, r.value) for r in recs]
        return out
    finally:
        c.close()


@pytest.mark.timeout(150)
@pytest.mark.parametrize("policy,codec", [("compact", "none"), ("compact,delete", "zstd"), ("compact", "gzip")])
def test_compaction_keeps_latest_value_per_key(compacting_broker, policy, codec):
    broker = compacting_broker()
    topic = unique_topic("compact")
    create_topic(broker.bootstrap, topic, partitions=1, config={
        "cleanup.policy": policy, "segment.bytes": 1024, "segment.ms": 1000,
        "min.cleanable.dirty.ratio": 0.01, "delete.retention.ms": DELETE_RETENTION_MS,
        "retention.ms": 3_600_000, "compression.type": "producer"})
    p = producer(broker.bootstrap, **{"linger.ms": 0, "compression.type": codec})
    exp = Expected()
    for u in range(UPDATES):
        produce_tracked(p, topic, exp, [(key(i), f"{key(i).decode()}-v{u:02d}-".encode() + b"x" * (i % 30))
                                        for i in range(KEYS)])
    # Tombstones for keys 0..DELETED-1; the first RESURRECTED of them come back with a new value.
    produce_tracked(p, topic, exp, [(key(i), None) for i in range(DELETED)])
    produce_tracked(p, topic, exp, [(key(i), f"{key(i).decode()}-reborn".encode()) for i in range(RESURRECTED)])
    end = exp.end
    assert end == KEYS * UPDATES + DELETED + RESURRECTED
    assert watermarks(broker.bootstrap, topic) == (0, end)

    # Stage 1: every superseded record is cleaned away; the tombstones are still there.
    want_with_tombstones = exp.fully_compacted(with_tombstones=True)
    assert len(want_with_tombstones) == KEYS
    records, waited = wait_for_offsets(broker.bootstrap, topic, 0, exp, want_with_tombstones, DELETE_RETENTION_MS,
                                       timeout=30, what="first clean")
    print(f"{policy}: compacted to one record per key after {waited:.1f}s")
    assert cleaned_count(broker) >= 1
    latest = {k: v for _, k, v in records}
    assert latest == {k: exp.by_offset[o][1] for k, o in exp.latest.items()}
    assert sum(v is None for v in latest.values()) == DELETED - RESURRECTED
    assert latest[key(0)] == b"key-000-reborn" and latest[key(KEYS - 1)].startswith(b"key-039-v14-")

    # Stage 2: after delete.retention.ms the tombstones are gone too; the live keys stay, same offsets.
    want_live = exp.fully_compacted(with_tombstones=False)
    assert len(want_live) == KEYS - (DELETED - RESURRECTED)
    records, waited = wait_for_offsets(broker.bootstrap, topic, 0, exp, want_live, DELETE_RETENTION_MS,
                                       timeout=30, what="tombstone removal")
    print(f"{policy}: tombstones removed {waited:.1f}s later")
    assert {k for _, k, _ in records} == {key(i) for i in range(KEYS)} - {key(i) for i in range(RESURRECTED, DELETED)}
    # The log start and end offsets do not move; offsets are kept.
    assert watermarks(broker.bootstrap, topic) == (0, end)
    # Cleaned batches keep the producer's codec (re-compressed). librdkafka sends a batch that
    # does not shrink uncompressed, so some batches may have none.
    _, batches = w.fetch_all(broker.bootstrap, topic, 0)
    heads = [w.parse_batch_header(b) for b in batches]
    codec_id = {"none": 0, "gzip": 1, "zstd": 4}[codec]
    codecs = {h["attributes"] & 7 for h in heads if h["record_count"] > 0}
    assert codec_id in codecs and codecs <= {0, codec_id}, heads
    assert sum(h["record_count"] for h in heads) == len(want_live)
    # Another client decodes the cleaned (rewritten, re-compressed) batches the same way.
    assert read_with_kafka_python(broker.bootstrap, topic, end) == records

    # A read from an offset that was cleaned away starts at the next surviving record.
    gone = sorted(set(range(end)) - set(want_live))
    for start in (0, gone[len(gone) // 2], want_live[-1]):
        got = consume_range(broker.bootstrap, topic, 0, start)
        assert [m.offset() for m in got] == [o for o in want_live if o >= start], f"read from {start}"

    # The cleaned log takes less room than what was written.
    sizes = sum(f.stat().st_size for f in broker.partition_dir(topic, 0).glob("*.log"))
    assert sizes < 0.25 * KEYS * UPDATES * 60, f"{sizes} bytes of segments after cleaning"

    # Producing continues at the log end offset, and the next clean keeps the new value only.
    produce_tracked(p, topic, exp, [(key(KEYS - 1), b"after-clean")])
    assert exp.latest[key(KEYS - 1)] == end
    # A restart (SIGKILL) keeps the cleaned log as it is.
    broker.restart(kill=True)
    records = read_all(broker.bootstrap, topic, 0)
    check_invariants(records, exp, DELETE_RETENTION_MS, time.monotonic(), "after restart")
    assert records[-1] == (end, key(KEYS - 1), b"after-clean")
    records, _ = wait_for_offsets(broker.bootstrap, topic, 0, exp, exp.fully_compacted(with_tombstones=False),
                                  DELETE_RETENTION_MS, timeout=30, what="clean after restart")
    assert watermarks(broker.bootstrap, topic) == (0, end + 1)


def test_keyless_record_refused_on_compacted_topic(broker):
    topic = unique_topic("compact-keyless")
    create_topic(broker.bootstrap, topic, partitions=1, config={"cleanup.policy": "compact"})
    p = producer(broker.bootstrap, **{"linger.ms": 0, "retries": 0})
    results = []
    p.produce(topic, value=b"no key", partition=0, on_delivery=lambda err, msg: results.append((err, msg)))
    assert p.flush(30) == 0
    [(err, msg)] = results
    assert err is not None and err.code() == KafkaError.INVALID_RECORD, err
    assert msg.offset() is None or msg.offset() < 0, msg.offset()
    # Nothing was appended: the next keyed record is at offset 0, and reading finds only it.
    [(part, off, _)] = produce_sync(p, topic, [dict(key=b"k", value=b"with key", partition=0)])
    assert (part, off) == (0, 0)
    got = consume_range(broker.bootstrap, topic, 0, 0)
    assert [(m.offset(), m.key(), m.value()) for m in got] == [(0, b"k", b"with key")]
    # The same topic with cleanup.policy=delete takes keyless records.
    other = unique_topic("delete-keyless")
    create_topic(broker.bootstrap, other, partitions=1, config={"cleanup.policy": "delete"})
    [(part, off, _)] = produce_sync(p, other, [dict(value=b"no key", partition=0)])
    assert (part, off) == (0, 0)


def test_keyless_record_in_a_keyed_batch_refuses_the_batch(broker):
    """One keyless record makes the whole batch INVALID_RECORD (raw frame, so the batch is exact)."""
    topic = unique_topic("compact-mixed")
    create_topic(broker.bootstrap, topic, partitions=1, config={"cleanup.policy": "compact,delete"})
    with w.Client(broker.bootstrap) as c:
        resp = c.produce(topic, 0, w.record_batch([(b"a", b"1"), (None, b"2"), (b"c", b"3")]))
        assert (resp["error"], resp["base_offset"]) == (w.INVALID_RECORD, -1), resp
        assert w.high_watermark(broker.bootstrap, topic, 0) == 0
        resp = c.produce(topic, 0, w.record_batch([(b"a", b"1"), (b"c", None)]))
        assert (resp["error"], resp["base_offset"]) == (w.NONE, 0), resp

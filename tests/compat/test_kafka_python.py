"""kafka-python 3.x against a real strom server.

kafka-python 3.x opens with ApiVersions v4: the broker must answer with Kafka's fallback (a v0 body
with UNSUPPORTED_VERSION and its ranges) so the client retries with a version it speaks.
"""

from __future__ import annotations

import os
import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewPartitions, NewTopic
from kafka.errors import (InvalidPartitionsError, InvalidTopicError, TopicAlreadyExistsError,
                          UnknownTopicOrPartitionError)

from stromtest import unique_topic, wait_until

T0 = 1_700_000_000_000


def kp_admin(bootstrap):
    return KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)


def kp_consumer(bootstrap, **kw):
    return KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                         auto_offset_reset="none", consumer_timeout_ms=3000,
                         fetch_max_wait_ms=100, request_timeout_ms=15000, **kw)


def read_all(bootstrap, topic, partition, start, expect, timeout=20.0):
    c = kp_consumer(bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        c.assign([tp])
        c.seek(tp, start)
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < expect and time.monotonic() < deadline:
            for recs in c.poll(timeout_ms=500, max_records=1000).values():
                out.extend(recs)
        assert len(out) == expect, f"read {len(out)} of {expect} from {topic}/{partition}@{start}"
        return out
    finally:
        c.close()


def test_admin_create_list_delete(broker):
    a = kp_admin(broker.bootstrap)
    try:
        t1, t2 = unique_topic("kp-a"), unique_topic("kp-b")
        a.create_topics([NewTopic(t1, 2, 1), NewTopic(t2, 1, 1, topic_configs={"retention.ms": "60000"})])
        wait_until(lambda: {t1, t2} <= set(a.list_topics()), what="topics listed")

        with pytest.raises(TopicAlreadyExistsError):
            a.create_topics([NewTopic(t1, 1, 1)])
        with pytest.raises(InvalidTopicError):
            a.create_topics([NewTopic("no spaces allowed", 1, 1)])
        with pytest.raises(InvalidPartitionsError):
            a.create_topics([NewTopic(unique_topic("kp-zero"), 0, 1)])

        a.create_partitions({t1: NewPartitions(4)})
        c = kp_consumer(broker.bootstrap)
        try:
            wait_until(lambda: c.partitions_for_topic(t1) == {0, 1, 2, 3}
                       or (c._client.cluster.request_update() and False), what="4 partitions")
        finally:
            c.close()

        a.delete_topics([t1, t2])
        wait_until(lambda: not ({t1, t2} & set(a.list_topics())), what="topics deleted")
        with pytest.raises(UnknownTopicOrPartitionError):
            a.delete_topics([t1])
    finally:
        a.close()


@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_assign_seek(broker, codec):
    topic = unique_topic(f"kp-{codec}")
    a = kp_admin(broker.bootstrap)
    a.create_topics([NewTopic(topic, 2, 1)])
    a.close()

    # Idempotence off here: plain produce path (test_default_producer_is_idempotent covers it on).
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all", compression_type=codec,
                      linger_ms=10, request_timeout_ms=15000, enable_idempotence=False)
    sent = {0: [], 1: []}
    for i in range(60):
        part = i % 2
        m = dict(key=f"key-{i}".encode() if i % 5 else None,
                 value=f"value-{i}-".encode() + os.urandom(32) + b"\x00" * (i % 4),
                 headers=[("idx", str(i).encode()), ("bin", bytes([0, 1, 254, 255]))] if i % 3 else [],
                 timestamp_ms=T0 + i)
        fut = p.send(topic, partition=part, **m)
        sent[part].append((m, fut))
    p.flush(30)
    for part, items in sent.items():
        offsets = [f.get(timeout=30).offset for _, f in items]
        assert offsets == list(range(len(items))), (part, offsets)
        assert all(f.get().partition == part for _, f in items)
    p.close()

    for part, items in sent.items():
        got = read_all(broker.bootstrap, topic, part, 0, len(items))
        assert [r.offset for r in got] == list(range(len(items)))
        for r, (m, _) in zip(got, items):
            assert r.key == m["key"]
            assert r.value == m["value"]
            assert list(r.headers) == m["headers"], (r.offset, r.headers)
            assert r.timestamp == m["timestamp_ms"] and r.timestamp_type == 0

    # seek into the middle
    got = read_all(broker.bootstrap, topic, 1, 17, len(sent[1]) - 17)
    assert [r.offset for r in got] == list(range(17, len(sent[1])))
    assert got[0].value == sent[1][17][0]["value"]

    c = kp_consumer(broker.bootstrap)
    try:
        tps = [TopicPartition(topic, 0), TopicPartition(topic, 1)]
        assert c.beginning_offsets(tps) == {tps[0]: 0, tps[1]: 0}
        assert c.end_offsets(tps) == {tps[0]: 30, tps[1]: 30}
        ts = c.offsets_for_times({tps[0]: T0 + 11})  # partition 0 has even i: first >= T0+11 is i=12 -> offset 6
        assert ts[tps[0]].offset == 6 and ts[tps[0]].timestamp == T0 + 12
    finally:
        c.close()


def test_api_version_negotiation(broker):
    """kafka-python probes the broker version; it must settle on a modern one."""
    a = kp_admin(broker.bootstrap)
    try:
        v = a._client.check_version(timeout_ms=10000)
        assert v is not None and tuple(v) >= (2, 1), v
    finally:
        a.close()


def test_default_producer_is_idempotent(broker):
    """kafka-python 3.x turns idempotence on by default (InitProducerId, sequence numbers)."""
    topic = unique_topic("kp-idem")
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, request_timeout_ms=10000, max_block_ms=10000)
    try:
        futs = [p.send(topic, f"v{i}".encode()) for i in range(200)]
        p.flush(30)
        assert [f.get(timeout=15).offset for f in futs] == list(range(200))
    finally:
        p.close(timeout=5)
    got = read_all(broker.bootstrap, topic, 0, 0, 200)
    assert [r.value for r in got] == [f"v{i}".encode() for i in range(200)]


def test_describe_log_dirs(broker):
    """DescribeLogDirs: our data dir, per-partition sizes equal to the segment bytes on disk."""
    from stromtest import create_topic, produce_sync, producer  # noqa: PLC0415

    topic = unique_topic("kp-logdirs")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_sync(producer(broker.bootstrap), topic, [dict(value=b"x" * 100, partition=0)] * 5)
    a = kp_admin(broker.bootstrap)
    try:
        [res] = a.describe_log_dirs([topic])
    finally:
        a.close()
    assert res["broker"] == 0
    [d] = res["log_dirs"]
    assert d["error_code"] == 0
    assert os.path.realpath(d["log_dir"]) == os.path.realpath(broker.data_dir)
    assert d["total_bytes"] >= d["usable_bytes"] > 0
    [t] = d["topics"]
    assert t["name"] == topic
    sizes = {p["partition_index"]: p["partition_size"] for p in t["partitions"]}
    on_disk = {p: sum(f.stat().st_size for f in broker.partition_dir(topic, p).glob("*.log")) for p in (0, 1)}
    assert sizes == on_disk and sizes[0] > 500 and sizes[1] == 0, (sizes, on_disk)

"""confluent-kafka (bundled librdkafka 2.x) against a real strom server."""

from __future__ import annotations

import os
import time
from collections import defaultdict

import pytest
from confluent_kafka import (TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, TopicCollection,
                             TopicPartition)
from confluent_kafka.admin import (AlterConfigOpType, ConfigEntry, ConfigResource, ConfigSource,
                                   NewPartitions, NewTopic, OffsetSpec)

from stromtest import (admin, assert_serving, consume_range, consumer, create_topic, produce_sync,
                       producer, unique_topic, wait_until, watermarks)

T0 = 1_700_000_000_000  # a fixed CreateTime base so timestamps are checked exactly


def describe_topic_configs(a, topic: str) -> dict:
    res = ConfigResource(ConfigResource.Type.TOPIC, topic)
    return a.describe_configs([res], request_timeout=10)[res].result(10)


# ---------------------------------------------------------------------------- admin

def test_admin_topic_lifecycle_and_configs(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("cf-admin")
    fs = a.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1, config={
        "retention.ms": "3600000", "segment.bytes": "1048576", "cleanup.policy": "delete",
        "max.message.bytes": "200000"})], request_timeout=15)
    assert fs[topic].result(15) is None

    md = wait_until(lambda: a.list_topics(topic, timeout=5).topics.get(topic), what="topic metadata")
    assert md.error is None
    assert sorted(md.partitions) == [0, 1, 2]
    for p in md.partitions.values():
        assert p.leader == 0 and p.replicas == [0] and p.isrs == [0]
    assert topic in a.list_topics(timeout=5).topics

    cfg = describe_topic_configs(a, topic)
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["segment.bytes"].value == "1048576"
    assert cfg["cleanup.policy"].value == "delete"
    assert cfg["max.message.bytes"].value == "200000"
    # Defaults are described too, with a non-dynamic source.
    assert "retention.bytes" in cfg
    assert cfg["retention.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Incremental alter: SET one, DELETE another (back to its default).
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("retention.bytes", "123456789", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("max.message.bytes", None, incremental_operation=AlterConfigOpType.DELETE)])
    a.incremental_alter_configs([res])[res].result(10)
    cfg = describe_topic_configs(a, topic)
    assert cfg["retention.bytes"].value == "123456789"
    assert cfg["retention.bytes"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value
    assert cfg["retention.ms"].value == "3600000"
    assert cfg["max.message.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value

    # Legacy AlterConfigs replaces the whole dynamic set.
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, set_config={"retention.ms": "7200000"})
    a.alter_configs([res])[res].result(10)
    cfg = describe_topic_configs(a, topic)
    assert cfg["retention.ms"].value == "7200000"
    assert cfg["retention.bytes"].source != ConfigSource.DYNAMIC_TOPIC_CONFIG.value  # dropped

    # Configs persist across a restart.
    broker.restart()
    a = admin(broker.bootstrap)
    cfg = describe_topic_configs(a, topic)
    assert cfg["retention.ms"].value == "7200000"

    # CreatePartitions 3 -> 5.
    fs = a.create_partitions([NewPartitions(topic, 5)], request_timeout=15)
    fs[topic].result(15)
    wait_until(lambda: len(a.list_topics(topic, timeout=5).topics[topic].partitions) == 5,
               what="5 partitions")

    # describe_topics (Metadata with topic ids).
    desc = a.describe_topics(TopicCollection([topic]), request_timeout=10)[topic].result(10)
    assert desc.name == topic
    assert [p.id for p in desc.partitions] == [0, 1, 2, 3, 4]
    assert all(p.leader.id == 0 for p in desc.partitions)

    # Delete.
    a.delete_topics([topic], request_timeout=15)[topic].result(15)
    wait_until(lambda: topic not in a.list_topics(timeout=5).topics, what="topic gone")


def test_describe_cluster_and_broker_configs(broker):
    a = admin(broker.bootstrap)
    desc = a.describe_cluster(request_timeout=10).result(10)
    assert desc.cluster_id, "cluster id must be set"
    assert [n.id for n in desc.nodes] == [0]
    assert desc.nodes[0].host == "127.0.0.1" and desc.nodes[0].port == broker.kafka_port
    assert desc.controller.id == 0

    res = ConfigResource(ConfigResource.Type.BROKER, "0")
    cfg = a.describe_configs([res], request_timeout=10)[res].result(10)
    assert cfg, "broker configs must not be empty"


def test_admin_bad_inputs(broker):
    a = admin(broker.bootstrap)
    topic = unique_topic("cf-bad")
    create_topic(broker.bootstrap, topic, partitions=2)

    def err_of(fut):
        with pytest.raises(KafkaException) as ei:
            fut.result(15)
        return ei.value.args[0].code()

    cases = {
        "bad/name": NewTopic("bad/name", num_partitions=1, replication_factor=1),
        "..": NewTopic("..", num_partitions=1, replication_factor=1),
        "long": NewTopic("x" * 250, num_partitions=1, replication_factor=1),
    }
    for label, nt in cases.items():
        fs = a.create_topics([nt], request_timeout=15)
        assert err_of(fs[nt.topic]) == KafkaError.TOPIC_EXCEPTION, label  # INVALID_TOPIC_EXCEPTION (17)

    zero = unique_topic("cf-zero")
    fs = a.create_topics([NewTopic(zero, num_partitions=0, replication_factor=1)], request_timeout=15)
    assert err_of(fs[zero]) == KafkaError.INVALID_PARTITIONS

    fs = a.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], request_timeout=15)
    assert err_of(fs[topic]) == KafkaError.TOPIC_ALREADY_EXISTS

    bad_cfg = unique_topic("cf-badcfg")
    fs = a.create_topics([NewTopic(bad_cfg, num_partitions=1, replication_factor=1,
                                   config={"retention.ms": "not-a-number"})], request_timeout=15)
    assert err_of(fs[bad_cfg]) == KafkaError.INVALID_CONFIG
    fs = a.create_topics([NewTopic(bad_cfg, num_partitions=1, replication_factor=1,
                                   config={"no.such.config": "1"})], request_timeout=15)
    assert err_of(fs[bad_cfg]) == KafkaError.INVALID_CONFIG
    assert bad_cfg not in a.list_topics(timeout=5).topics

    # Fewer partitions than now.
    fs = a.create_partitions([NewPartitions(topic, 1)], request_timeout=15)
    assert err_of(fs[topic]) == KafkaError.INVALID_PARTITIONS

    # Unknown topics.
    ghost = unique_topic("cf-ghost")
    fs = a.delete_topics([ghost], request_timeout=15)
    assert err_of(fs[ghost]) == KafkaError.UNKNOWN_TOPIC_OR_PART
    res = ConfigResource(ConfigResource.Type.TOPIC, ghost)
    assert err_of(a.describe_configs([res], request_timeout=10)[res]) == KafkaError.UNKNOWN_TOPIC_OR_PART

    # validate_only creates nothing.
    v = unique_topic("cf-validate")
    a.create_topics([NewTopic(v, num_partitions=1, replication_factor=1)],
                    validate_only=True, request_timeout=15)[v].result(15)
    assert v not in a.list_topics(timeout=5).topics


def test_message_larger_than_max_message_bytes(broker):
    topic = unique_topic("cf-big")
    create_topic(broker.bootstrap, topic, partitions=1, config={"max.message.bytes": "1024"})
    p = producer(broker.bootstrap, **{"compression.type": "none", "linger.ms": 0, "retries": 0})
    got = []
    p.produce(topic, value=os.urandom(5000), on_delivery=lambda err, msg: got.append(err))
    p.flush(20)
    assert len(got) == 1 and got[0] is not None, got
    assert got[0].code() == KafkaError.MSG_SIZE_TOO_LARGE, got[0]
    # A small message still goes through and lands at offset 0.
    [(part, off, _)] = produce_sync(p, topic, [dict(value=b"small")])
    assert (part, off) == (0, 0)


# ---------------------------------------------------------------------------- produce / consume

def make_messages(n: int, prefix: str, partition: int | None = None) -> list[dict]:
    msgs = []
    for i in range(n):
        m = dict(
            key=f"{prefix}-key-{i % 7}".encode(),
            value=(f"{prefix}-value-{i}-".encode() + bytes(range(256)) * (1 + i % 3)
                   + os.urandom(16)),
            headers=[("h1", b"v1"), ("idx", str(i).encode()), ("bin", bytes([0, 255, i % 256])),
                     ("h1", b"dup")],
            timestamp=T0 + i * 10,
        )
        if i % 11 == 5:
            m["key"] = None  # null key
        if i % 13 == 7:
            m["headers"] = None  # no headers
        if partition is not None:
            m["partition"] = partition
        msgs.append(m)
    # one big compressible value
    msgs.append(dict(key=b"big", value=b"0123456789abcdef" * 20000, timestamp=T0 + n * 10,
                     headers=[("kind", b"big")], **({"partition": partition} if partition is not None else {})))
    return msgs


def assert_same(msg, sent: dict, offset: int):
    assert msg.offset() == offset
    assert msg.key() == sent.get("key"), (offset, msg.key(), sent.get("key"))
    assert msg.value() == sent["value"], offset
    assert (msg.headers() or []) == (sent.get("headers") or []), (offset, msg.headers())
    assert msg.timestamp() == (TIMESTAMP_CREATE_TIME, sent["timestamp"]), (offset, msg.timestamp())


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_every_codec_acks_all(broker, codec):
    topic = unique_topic(f"cf-{codec}")
    create_topic(broker.bootstrap, topic, partitions=1)
    p = producer(broker.bootstrap, **{"compression.type": codec, "acks": "all", "linger.ms": 20,
                                      "batch.num.messages": 25})
    msgs = make_messages(100, codec, partition=0)
    acks = produce_sync(p, topic, msgs)
    assert [a[:2] for a in acks] == [(0, i) for i in range(len(msgs))], "offsets contiguous from 0"
    # Delivery reports carry the CreateTime we set.
    assert [a[2] for a in acks] == [(TIMESTAMP_CREATE_TIME, m["timestamp"]) for m in msgs]

    got = consume_range(broker.bootstrap, topic, 0, 0)
    assert len(got) == len(msgs)
    for i, (m, s) in enumerate(zip(got, msgs)):
        assert_same(m, s, i)
    assert watermarks(broker.bootstrap, topic) == (0, len(msgs))

    # Consume again from the middle (inside a compressed batch).
    got = consume_range(broker.bootstrap, topic, 0, 37)
    assert [m.offset() for m in got] == list(range(37, len(msgs)))
    assert_same(got[0], msgs[37], 37)


@pytest.mark.parametrize("acks", ["0", "1"])
def test_produce_acks_0_and_1(broker, acks):
    topic = unique_topic(f"cf-acks{acks}")
    create_topic(broker.bootstrap, topic, partitions=1)
    p = producer(broker.bootstrap, acks=acks, **{"linger.ms": 10})
    msgs = [dict(value=f"m{i}".encode(), key=b"k", timestamp=T0 + i, partition=0) for i in range(50)]
    acked = produce_sync(p, topic, msgs)
    if acks == "1":
        assert [a[1] for a in acked] == list(range(50))
    got = wait_until(lambda: (lambda r: r if len(r) == 50 else None)(
        consume_range(broker.bootstrap, topic, 0, 0)), timeout=10, what="50 messages")
    assert [m.value() for m in got] == [m["value"] for m in msgs]
    assert [m.offset() for m in got] == list(range(50))


def test_same_key_same_partition(broker):
    topic = unique_topic("cf-keys")
    create_topic(broker.bootstrap, topic, partitions=6)
    p = producer(broker.bootstrap, **{"linger.ms": 10})
    keys = [f"user-{k}".encode() for k in range(12)]
    msgs = [dict(key=keys[i % 12], value=f"{i}".encode(), timestamp=T0 + i) for i in range(240)]
    acks = produce_sync(p, topic, msgs)
    part_of_key = defaultdict(set)
    for m, (part, _, _) in zip(msgs, acks):
        part_of_key[m["key"]].add(part)
    assert all(len(s) == 1 for s in part_of_key.values()), part_of_key
    assert len({next(iter(s)) for s in part_of_key.values()}) > 1, "keys spread over partitions"

    # Each partition holds exactly its keys' messages, in send order, offsets contiguous.
    for part in range(6):
        expect = [m for m, a in zip(msgs, acks) if a[0] == part]
        got = consume_range(broker.bootstrap, topic, part, 0)
        assert [g.offset() for g in got] == list(range(len(expect)))
        assert [(g.key(), g.value()) for g in got] == [(m["key"], m["value"]) for m in expect]
        exp_offsets = [a[1] for a in acks if a[0] == part]
        assert exp_offsets == list(range(len(expect)))


def test_list_offsets_earliest_latest_by_timestamp(broker):
    topic = unique_topic("cf-offsets")
    create_topic(broker.bootstrap, topic, partitions=1)
    p = producer(broker.bootstrap)
    msgs = [dict(value=f"v{i}".encode(), timestamp=T0 + i * 1000, partition=0) for i in range(10)]
    produce_sync(p, topic, msgs)
    assert watermarks(broker.bootstrap, topic) == (0, 10)

    c = consumer(broker.bootstrap)
    try:
        q = [TopicPartition(topic, 0, T0 + 3500)]
        assert c.offsets_for_times(q, timeout=10)[0].offset == 4
        q = [TopicPartition(topic, 0, T0)]
        assert c.offsets_for_times(q, timeout=10)[0].offset == 0
        q = [TopicPartition(topic, 0, T0 + 9000)]
        assert c.offsets_for_times(q, timeout=10)[0].offset == 9
        q = [TopicPartition(topic, 0, T0 + 10_000)]
        assert c.offsets_for_times(q, timeout=10)[0].offset == -1  # none that late
    finally:
        c.close()

    a = admin(broker.bootstrap)
    tp = TopicPartition(topic, 0)
    for spec, want in [(OffsetSpec.earliest(), 0), (OffsetSpec.latest(), 10),
                       (OffsetSpec.for_timestamp(T0 + 2000), 2)]:
        res = a.list_offsets({tp: spec}, request_timeout=10)[tp].result(10)
        assert res.offset == want, (spec, res)
    res = a.list_offsets({tp: OffsetSpec.max_timestamp()}, request_timeout=10)[tp].result(10)
    assert (res.offset, res.timestamp) == (9, T0 + 9000)


def test_delete_records(broker):
    topic = unique_topic("cf-delrec")
    create_topic(broker.bootstrap, topic, partitions=1)
    p = producer(broker.bootstrap)
    produce_sync(p, topic, [dict(value=f"v{i}".encode(), partition=0) for i in range(20)])
    a = admin(broker.bootstrap)
    res = a.delete_records([TopicPartition(topic, 0, 12)], request_timeout=10)
    [(tp, fut)] = res.items()
    info = fut.result(10)
    assert info.low_watermark == 12
    assert watermarks(broker.bootstrap, topic) == (12, 20)

    got = consume_range(broker.bootstrap, topic, 0, 12)
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(12, 20)]

    # Offset 3 was deleted: with auto.offset.reset=error the consumer reports the out-of-range offset.
    c = consumer(broker.bootstrap)
    try:
        c.assign([TopicPartition(topic, 0, 3)])
        err = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and err is None:
            m = c.poll(0.5)
            if m is not None and m.error():
                err = m.error()
            elif m is not None:
                pytest.fail(f"read deleted offset {m.offset()}")
        assert err is not None, "no error for a deleted offset"
        assert err.code() == KafkaError._AUTO_OFFSET_RESET, err
        assert "out of range" in err.str().lower(), err
    finally:
        c.close()

    # Delete beyond the high watermark -> OFFSET_OUT_OF_RANGE.
    res = a.delete_records([TopicPartition(topic, 0, 99)], request_timeout=10)
    [(tp, fut)] = res.items()
    with pytest.raises(KafkaException) as ei:
        fut.result(10)
    assert ei.value.args[0].code() == KafkaError.OFFSET_OUT_OF_RANGE

    # The new log start offset survives a restart.
    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (12, 20)


def test_consume_unknown_partition_and_topic(broker):
    topic = unique_topic("cf-unk")
    create_topic(broker.bootstrap, topic, partitions=1)
    import kwire
    err, hw, _, _ = kwire.fetch_v4(broker.bootstrap, topic, 7, 0)
    assert err == kwire.UNKNOWN_TOPIC_OR_PARTITION, err
    err, hw, _, _ = kwire.fetch_v4(broker.bootstrap, unique_topic("cf-nope"), 0, 0)
    assert err == kwire.UNKNOWN_TOPIC_OR_PARTITION, err
    # Fetch past the end -> OFFSET_OUT_OF_RANGE; at the end -> empty.
    produce_sync(producer(broker.bootstrap), topic, [dict(value=b"x", partition=0)])
    err, hw, _, recs = kwire.fetch_v4(broker.bootstrap, topic, 0, 5)
    assert (err, hw) == (kwire.OFFSET_OUT_OF_RANGE, 1)
    err, hw, _, recs = kwire.fetch_v4(broker.bootstrap, topic, 0, 1)
    assert (err, hw, recs or b"") == (0, 1, b"")


# ---------------------------------------------------------------------------- more broker behaviour

def test_fetch_returns_a_batch_larger_than_the_fetch_limits(broker):
    """KIP-74: the first batch is returned even when it exceeds max.partition.fetch.bytes/fetch.max.bytes."""
    topic = unique_topic("cf-fetchlimit")
    create_topic(broker.bootstrap, topic, partitions=1)
    big = os.urandom(300_000)
    produce_sync(producer(broker.bootstrap, **{"compression.type": "none"}), topic,
                 [dict(value=big, partition=0), dict(value=b"small", partition=0)])
    got = consume_range(broker.bootstrap, topic, 0, 0, **{"max.partition.fetch.bytes": 1024, "message.max.bytes": 1000,
                                                          "fetch.max.bytes": 1024})
    assert [m.value() for m in got] == [big, b"small"]


def test_long_poll_wakes_on_append(broker):
    """A Fetch waiting for min_bytes returns when data arrives, well before max_wait_ms."""
    import threading

    import kwire
    topic = unique_topic("cf-longpoll")
    create_topic(broker.bootstrap, topic, partitions=1)

    def later():
        time.sleep(0.5)
        produce_sync(producer(broker.bootstrap), topic, [dict(value=b"wake up", partition=0)])

    t = threading.Thread(target=later)
    with kwire.Conn.to(broker.bootstrap, timeout=30) as c:
        start = time.monotonic()
        c.send(kwire.fetch_v4_request(topic, 0, 0, 99, max_wait_ms=10_000))
        t.start()
        resp = kwire.parse_fetch_v4(c.recv_frame())
        waited = time.monotonic() - start
    t.join()
    err, hw, _, recs = resp[(topic, 0)]
    assert err == 0 and hw == 1 and recs and b"wake up" in recs
    assert 0.4 < waited < 8, f"fetch returned after {waited:.2f}s (max_wait 10s, data after 0.5s)"


def test_empty_long_poll_waits_about_max_wait(broker):
    """A Fetch that finds nothing waits until max_wait_ms, less at most one 10 ms step of the
    broker's shared deadline grid (long waits end together), never returning at once."""
    import kwire
    topic = unique_topic("cf-emptypoll")
    create_topic(broker.bootstrap, topic, partitions=1)
    with kwire.Conn.to(broker.bootstrap, timeout=30) as c:
        for corr, wait_ms in enumerate([300, 150, 30]):
            start = time.monotonic()
            c.send(kwire.fetch_v4_request(topic, 0, 0, corr, max_wait_ms=wait_ms))
            resp = kwire.parse_fetch_v4(c.recv_frame())
            waited_ms = (time.monotonic() - start) * 1000
            err, hw, _, recs = resp[(topic, 0)]
            assert err == 0 and hw == 0 and not recs
            assert waited_ms >= wait_ms - 11, f"max_wait {wait_ms} ms: answered after {waited_ms:.0f} ms"
            assert waited_ms < wait_ms + 5000, f"max_wait {wait_ms} ms: answered after {waited_ms:.0f} ms"


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_log_append_time(broker, codec):
    """message.timestamp.type=LogAppendTime: the broker stamps batches (and keeps their CRC valid)."""
    topic = unique_topic(f"cf-lat-{codec}")
    create_topic(broker.bootstrap, topic, partitions=1, config={"message.timestamp.type": "LogAppendTime"})
    before = int(time.time() * 1000)
    acks = produce_sync(producer(broker.bootstrap, **{"compression.type": codec}), topic,
                        [dict(value=f"v{i}".encode(), timestamp=T0 + i, partition=0) for i in range(10)])
    after = int(time.time() * 1000)
    got = consume_range(broker.bootstrap, topic, 0, 0, **{"check.crcs": True})
    assert [m.value() for m in got] == [f"v{i}".encode() for i in range(10)]
    for m in got:
        ttype, ts = m.timestamp()
        assert ttype == 2, m.timestamp()  # TIMESTAMP_LOG_APPEND_TIME
        assert before - 1000 <= ts <= after + 1000
    # The produce response carries the append time too.
    assert all(a[2][0] == 2 and before - 1000 <= a[2][1] <= after + 1000 for a in acks), acks


def test_read_across_segments_and_seek_anywhere(broker):
    topic = unique_topic("cf-segments")
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": 16384})
    p = producer(broker.bootstrap, **{"linger.ms": 0, "batch.num.messages": 7, "compression.type": "lz4"})
    msgs = [dict(value=f"{i:05d}".encode() + os.urandom(300), timestamp=T0 + i, partition=0) for i in range(600)]
    produce_sync(p, topic, msgs)
    segs = sorted(broker.partition_dir(topic, 0).glob("*.log"))
    assert len(segs) > 5, f"expected several segments, got {len(segs)}"
    got = consume_range(broker.bootstrap, topic, 0, 0, **{"check.crcs": True})
    assert [m.value() for m in got] == [m["value"] for m in msgs]
    # Seek to every segment's base offset, the offset before it, and some offsets inside batches.
    bases = [int(s.stem) for s in segs]
    for start in sorted({0, 1, 3, 599} | set(bases) | {b - 1 for b in bases if b > 0} | {b + 5 for b in bases}):
        if start >= 600:
            continue
        [first] = consume_range(broker.bootstrap, topic, 0, start, count=1)
        assert (first.offset(), first.value()) == (start, msgs[start]["value"])
    c = consumer(broker.bootstrap)
    try:
        for i in (0, 17, 250, 599):
            q = c.offsets_for_times([TopicPartition(topic, 0, T0 + i)], timeout=10)
            assert q[0].offset == i
    finally:
        c.close()


def test_delete_records_removes_whole_segments_below_the_new_start(broker):
    # Segments wholly below the new log start offset are renamed at once and unlinked off the
    # request path (as retention does); the records above stay readable, also after a restart.
    topic = unique_topic("cf-delrec-seg")
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": 2048})
    p = producer(broker.bootstrap, **{"linger.ms": 0})
    for i in range(60):  # one batch per record: many small segments
        produce_sync(p, topic, [dict(value=b"%04d" % i + b"x" * 200, partition=0)])
    pdir = broker.partition_dir(topic, 0)
    logs_before = sorted(n for n in os.listdir(pdir) if n.endswith(".log"))
    assert len(logs_before) > 3, logs_before
    a = admin(broker.bootstrap)
    [(_, fut)] = a.delete_records([TopicPartition(topic, 0, 50)], request_timeout=10).items()
    assert fut.result(10).low_watermark == 50
    logs = lambda: sorted(n for n in os.listdir(pdir) if n.endswith(".log"))  # noqa: E731
    retired = lambda: [n for n in os.listdir(pdir) if n.endswith(".deleted")]  # noqa: E731
    wait_until(lambda: not retired(), what="the retired segment files unlinked")
    assert len(logs()) < len(logs_before), (logs(), logs_before)
    assert int(logs()[0].split(".")[0]) <= 50
    got = consume_range(broker.bootstrap, topic, 0, 50)
    assert [m.value()[:4] for m in got] == [b"%04d" % i for i in range(50, 60)]
    broker.restart()
    assert watermarks(broker.bootstrap, topic) == (50, 60)


def test_delete_and_recreate_topic_starts_fresh(broker):
    topic = unique_topic("cf-recreate")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_sync(producer(broker.bootstrap), topic, [dict(value=b"old", partition=p) for p in (0, 1, 1)])
    a = admin(broker.bootstrap)
    a.delete_topics([topic], request_timeout=15)[topic].result(15)
    wait_until(lambda: topic not in a.list_topics(timeout=5).topics, what="topic deleted")
    create_topic(broker.bootstrap, topic, partitions=1)
    assert watermarks(broker.bootstrap, topic) == (0, 0)
    [(_, off, _)] = produce_sync(producer(broker.bootstrap), topic, [dict(value=b"new", partition=0)])
    assert off == 0
    assert [m.value() for m in consume_range(broker.bootstrap, topic, 0, 0)] == [b"new"]
    broker.restart()
    assert [m.value() for m in consume_range(broker.bootstrap, topic, 0, 0)] == [b"new"]
    assert len(admin(broker.bootstrap).list_topics(topic, timeout=5).topics[topic].partitions) == 1


def test_the_leader_epoch_is_recorded_at_creation_so_appends_write_no_epoch_file(broker):
    # As a Kafka leader does on taking over, the broker records its epoch's start offset when
    # the partition opens: the first append to each new partition then creates no file.
    topic = unique_topic("cf-epoch")
    create_topic(broker.bootstrap, topic, partitions=1)
    path = broker.partition_dir(topic, 0) / "leader-epoch-checkpoint"
    wait_until(path.exists, what="the leader epoch checkpoint")
    before = path.read_text()
    version, count, entry = before.split("\n")[:3]
    epoch, start_offset = map(int, entry.split())
    assert (version, count, start_offset) == ("0", "1", 0), before
    inode = path.stat().st_ino
    produce_sync(producer(broker.bootstrap), topic, [dict(value=b"v%d" % i, partition=0) for i in range(10)])
    got = consume_range(broker.bootstrap, topic, 0, 0)
    assert [m.value() for m in got] == [b"v%d" % i for i in range(10)]
    assert {m.leader_epoch() for m in got} == {epoch}, "batches carry the recorded epoch"
    assert (path.stat().st_ino, path.read_text()) == (inode, before), "the append rewrote the file"
    broker.restart()
    assert path.read_text() == before
    got = consume_range(broker.bootstrap, topic, 0, 0)
    assert [m.value() for m in got] == [b"v%d" % i for i in range(10)]


def test_index_files_appear_with_index_entries_and_lookups_survive_restarts(broker):
    # A partition gets its .index/.timeindex only once its indexes hold entries (after
    # index.interval.bytes of data, 4096 B): a new or barely used partition is two files
    # lighter, and the broker's flusher writes them for a busy one without waiting for a roll.
    topic = unique_topic("cf-idxfiles")
    create_topic(broker.bootstrap, topic, partitions=3)
    index_files = lambda p: sorted(  # noqa: E731
        f.name for f in broker.partition_dir(topic, p).iterdir() if f.suffix in (".index", ".timeindex"))
    assert [index_files(p) for p in range(3)] == [[], [], []]
    start_ms = 1_700_000_000_000
    # Partition 0: one small record; partition 1: 200 records of 1000 B, one batch each.
    produce_sync(producer(broker.bootstrap), topic, [dict(value=b"small", partition=0, timestamp=start_ms)])
    p = producer(broker.bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})
    produce_sync(p, topic, [dict(value=b"%04d" % i + b"x" * 996, partition=1, timestamp=start_ms + i)
                            for i in range(200)])
    expected = ["00000000000000000000.index", "00000000000000000000.timeindex"]
    wait_until(lambda: index_files(1) == expected, what="partition 1's index files from the flusher")
    assert index_files(0) == [] and index_files(2) == []

    def check():
        assert [m.value() for m in consume_range(broker.bootstrap, topic, 0, 0)] == [b"small"]
        got = consume_range(broker.bootstrap, topic, 1, 0)
        assert [m.value()[:4] for m in got] == [b"%04d" % i for i in range(200)]
        a = admin(broker.bootstrap)
        for partition, timestamp, offset in [(1, start_ms + 150, 150), (0, start_ms, 0)]:
            tp = TopicPartition(topic, partition)
            found = a.list_offsets({tp: OffsetSpec.for_timestamp(timestamp)}, request_timeout=15)
            assert found[tp].result(15).offset == offset, (partition, timestamp)

    check()
    broker.restart()
    assert [index_files(p) for p in range(3)] == [[], expected, []]
    check()
    broker.restart(kill=True)
    check()
    assert_serving(broker.bootstrap)


def test_offsets_for_times_survive_a_kill_and_then_a_clean_restart_with_small_segments(broker):
    # Segments smaller than index.interval.bytes (4096) get no periodic index entry: only the
    # seal records a segment's largest timestamp. Segments a kill left unflushed are scanned
    # at the next start and must be sealed too; otherwise the start after that trusts index
    # files without that entry, and ListOffsets by timestamp skips those segments.
    topic = unique_topic("cf-tsseal")
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": 1024})
    t0 = 1_700_000_000_000
    p = producer(broker.bootstrap, **{"linger.ms": 0, "batch.num.messages": 1})
    produce_sync(p, topic, [dict(value=b"x" * 200, partition=0, timestamp=t0 + 10 * i) for i in range(30)])
    logs = [f for f in broker.partition_dir(topic, 0).iterdir() if f.suffix == ".log"]
    assert len(logs) >= 5, logs
    tp = TopicPartition(topic, 0)
    targets = {t0: 0, t0 + 55: 6, t0 + 125: 13, t0 + 205: 21, t0 + 290: 29}

    def lookups():
        a = admin(broker.bootstrap)
        return {t: a.list_offsets({tp: OffsetSpec.for_timestamp(t)}, request_timeout=15)[tp].result(15).offset
                for t in targets}

    assert lookups() == targets
    broker.restart(kill=True)
    assert lookups() == targets
    broker.restart()
    assert lookups() == targets
    got = consume_range(broker.bootstrap, topic, 0, 0)
    assert [m.timestamp()[1] for m in got] == [t0 + 10 * i for i in range(30)]


def test_deleted_topic_directories_go_in_the_background_and_leftovers_at_start(broker):
    topic = unique_topic("cf-deldir")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_sync(producer(broker.bootstrap), topic, [dict(value=b"x" * 1000, partition=p) for p in (0, 1) * 50])
    assert len(broker.partition_dirs(topic)) == 2
    a = admin(broker.bootstrap)
    a.delete_topics([topic], request_timeout=15)[topic].result(15)
    # Renamed at once, removed by the broker's remover thread: nothing of the topic stays.
    # (Names only, one level: a recursive walk would trip over the directory being removed.)
    leftovers = lambda: [n for n in os.listdir(broker.data_dir) if n.startswith(f"{topic}-")]  # noqa: E731
    wait_until(lambda: not leftovers(), what="the deleted topic's directories removed")
    # A removal interrupted by a crash (metadata file already gone) is finished at start.
    stale = broker.data_dir / f"{topic}-0.999-0.deleting"
    stale.mkdir()
    (stale / "00000000000000000000.log").write_bytes(b"left behind")
    broker.restart()
    assert not stale.exists()
    assert_serving(broker.bootstrap)


def test_new_partitions_are_usable_and_persist(broker):
    topic = unique_topic("cf-newparts")
    create_topic(broker.bootstrap, topic, partitions=1)
    a = admin(broker.bootstrap)
    a.create_partitions([NewPartitions(topic, 3)], request_timeout=15)[topic].result(15)
    wait_until(lambda: len(a.list_topics(topic, timeout=5).topics[topic].partitions) == 3, what="3 partitions")
    acks = produce_sync(producer(broker.bootstrap), topic, [dict(value=f"p{p}".encode(), partition=p) for p in range(3)])
    assert [(a_[0], a_[1]) for a_ in acks] == [(0, 0), (1, 0), (2, 0)]
    broker.restart()
    for p in range(3):
        assert [m.value() for m in consume_range(broker.bootstrap, topic, p, 0)] == [f"p{p}".encode()]


def test_replication_factor_larger_than_cluster(broker):
    a = admin(broker.bootstrap)
    t = unique_topic("cf-rf")
    fs = a.create_topics([NewTopic(t, num_partitions=1, replication_factor=3)], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[t].result(15)
    assert ei.value.args[0].code() == KafkaError.INVALID_REPLICATION_FACTOR


def test_auto_create_disabled(broker_factory):
    b = broker_factory(config={"auto_create_topics_enable": False})
    topic = unique_topic("cf-noauto")
    md = admin(b.bootstrap).list_topics(topic, timeout=10)
    assert md.topics[topic].error is not None
    assert md.topics[topic].error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART
    p = producer(b.bootstrap, **{"message.timeout.ms": 3000})
    errs = []
    p.produce(topic, value=b"x", on_delivery=lambda err, msg: errs.append(err))
    p.flush(10)
    assert len(errs) == 1 and errs[0] is not None, errs
    assert topic not in admin(b.bootstrap).list_topics(timeout=5).topics

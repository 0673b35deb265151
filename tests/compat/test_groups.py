"""Consumer groups with real clients: subscribe, share partitions, commit, resume from commits."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaError, TopicPartition

from stromtest import RDKAFKA_LOG, admin, create_topic, kcat, produce_sync, producer, unique_topic

NODE_DIR = Path(__file__).resolve().parent / "node"


def group_consumer(bootstrap, group, protocol="classic", **conf):
    base = {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
            "auto.offset.reset": "earliest", "fetch.wait.max.ms": 100, "check.crcs": True}
    if protocol == "consumer":
        base["group.protocol"] = "consumer"
    else:
        base.update({"session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    base.update(conf)
    return Consumer(base, logger=RDKAFKA_LOG)


def drain(consumers, want, timeout=45.0):
    """Poll all consumers round-robin until `want` messages in total; returns {consumer index: [msgs]}."""
    got = {i: [] for i in range(len(consumers))}
    deadline = time.monotonic() + timeout
    while sum(len(v) for v in got.values()) < want and time.monotonic() < deadline:
        for i, c in enumerate(consumers):
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise AssertionError(f"consumer {i}: {m.error()}")
            got[i].append(m)
    total = sum(len(v) for v in got.values())
    assert total == want, f"consumed {total} of {want} within {timeout}s"
    return got


@pytest.mark.timeout(120)
@pytest.mark.parametrize("protocol", ["classic", "consumer"])
def test_confluent_group_share_commit_resume(broker, protocol):
    topic = unique_topic(f"grp-{protocol}")
    group = unique_topic("g")
    create_topic(broker.bootstrap, topic, partitions=4)
    p = producer(broker.bootstrap)
    first = [dict(value=f"a{i}".encode(), key=f"k{i}".encode(), partition=i % 4) for i in range(200)]

    c1, c2 = group_consumer(broker.bootstrap, group, protocol), group_consumer(broker.bootstrap, group, protocol)
    try:
        c1.subscribe([topic])
        c2.subscribe([topic])
        # The topic is empty until both members hold partitions, so nothing is read twice.
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and not (c1.assignment() and c2.assignment()
                                                   and len(c1.assignment()) + len(c2.assignment()) == 4):
            for c in (c1, c2):
                m = c.poll(0.1)
                assert m is None or m.error() is None or m.error().code() == KafkaError._PARTITION_EOF, m.error()
        a1 = {tp.partition for tp in c1.assignment()}
        a2 = {tp.partition for tp in c2.assignment()}
        assert a1 and a2 and not (a1 & a2) and a1 | a2 == {0, 1, 2, 3}, (a1, a2)
        produce_sync(p, topic, first)

        got = drain([c1, c2], 200)
        for i, (c, parts) in enumerate(((c1, a1), (c2, a2))):
            assert {m.partition() for m in got[i]} <= parts
        values = sorted(m.value() for ms in got.values() for m in ms)
        assert values == sorted(m["value"] for m in first)
        for c in (c1, c2):
            c.commit(asynchronous=False)
    finally:
        c1.close()
        c2.close()

    committed = admin(broker.bootstrap)
    # The committed offsets are the log end of every partition.
    c3 = group_consumer(broker.bootstrap, group, protocol)
    try:
        offs = c3.committed([TopicPartition(topic, p) for p in range(4)], timeout=15)
        assert sorted((tp.partition, tp.offset) for tp in offs) == [(p, 50) for p in range(4)]
        # Resume: only what is produced after the commit is delivered.
        second = [dict(value=f"b{i}".encode(), partition=i % 4) for i in range(40)]
        produce_sync(p, topic, second)
        c3.subscribe([topic])
        got = drain([c3], 40)
        assert sorted(m.value() for m in got[0]) == sorted(m["value"] for m in second)
        assert all(m.offset() >= 50 for m in got[0])
    finally:
        c3.close()

    groups = committed.list_consumer_groups(request_timeout=10).result(15)
    assert group in {g.group_id for g in groups.valid}, groups.valid


@pytest.mark.timeout(120)
def test_kafka_python_group(broker):
    from kafka import KafkaConsumer, TopicPartition as KTP  # noqa: PLC0415

    topic = unique_topic("grp-kp")
    group = unique_topic("gkp")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_sync(producer(broker.bootstrap), topic, [dict(value=f"v{i}".encode(), partition=i % 2) for i in range(30)])
    c = KafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=group, enable_auto_commit=False,
                      auto_offset_reset="earliest", consumer_timeout_ms=15000, request_timeout_ms=15000,
                      session_timeout_ms=10000, heartbeat_interval_ms=500)
    try:
        got = []
        for r in c:
            got.append(r.value)
            if len(got) == 30:
                break
        assert sorted(got) == sorted(f"v{i}".encode() for i in range(30))
        c.commit()
        assert c.committed(KTP(topic, 0)) == 15 and c.committed(KTP(topic, 1)) == 15
    finally:
        c.close()


@pytest.mark.timeout(120)
def test_kafkajs_group_consumer(broker):
    node = shutil.which("node")
    assert node, "node missing"
    topic = unique_topic("grp-kjs")
    create_topic(broker.bootstrap, topic, partitions=3)
    produce_sync(producer(broker.bootstrap), topic,
                 [dict(value=f"v{i}".encode(), key=f"k{i}".encode(), partition=i % 3) for i in range(60)])
    script = f"""
const {{ Kafka, logLevel }} = require('kafkajs')
const kafka = new Kafka({{ brokers: ['{broker.bootstrap}'], logLevel: logLevel.ERROR }})
;(async () => {{
  const consumer = kafka.consumer({{ groupId: '{unique_topic("gkjs")}', sessionTimeout: 10000, heartbeatInterval: 500 }})
  await consumer.connect()
  await consumer.subscribe({{ topic: '{topic}', fromBeginning: true }})
  const seen = []
  await new Promise((resolve, reject) => {{
    const timer = setTimeout(() => reject(new Error('timeout, saw ' + seen.length)), 60000)
    consumer.run({{ eachMessage: async ({{ partition, message }}) => {{
      seen.push({{ partition, offset: Number(message.offset), key: message.key.toString(), value: message.value.toString() }})
      if (seen.length === 60) {{ clearTimeout(timer); resolve() }}
    }} }}).catch(reject)
  }})
  await consumer.disconnect()
  console.log(JSON.stringify(seen))
}})().catch(e => {{ console.error(e); process.exit(1) }})
"""
    r = subprocess.run([node, "-e", script], cwd=NODE_DIR, capture_output=True, timeout=100)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    seen = json.loads(r.stdout.decode().strip().splitlines()[-1])
    assert sorted((s["partition"], s["offset"]) for s in seen) == sorted((i % 3, i // 3) for i in range(60))
    for s in seen:
        i = int(s["value"][1:])
        assert (s["key"], s["partition"], s["offset"]) == (f"k{i}", i % 3, i // 3)


@pytest.mark.timeout(90)
def test_kcat_balanced_consumer(broker):
    topic = unique_topic("grp-kcat")
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_sync(producer(broker.bootstrap), topic, [dict(value=f"v{i}".encode(), partition=i % 2) for i in range(20)])
    r = kcat("-b", broker.bootstrap, "-G", unique_topic("gkcat"), "-o", "beginning", "-e", "-q",
             "-X", "session.timeout.ms=10000", "-f", r"%p %o %s\n", topic, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    rows = sorted(tuple(line.split()) for line in r.stdout.decode().splitlines())
    assert rows == sorted((str(i % 2), str(i // 2), f"v{i}") for i in range(20))

"""kafkajs 2.2.4 against a real strom server (runs tests/compat/node/compat.js and checks its JSON)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from stromtest import unique_topic

NODE_DIR = Path(__file__).resolve().parent / "node"
T0 = 1_700_000_000_000


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


@pytest.fixture(scope="module")
def node():
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not installed (scripts/install-test-deps.sh installs it)")
    if not (NODE_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("kafkajs missing: run scripts/install-test-deps.sh (npm ci in tests/compat/node)")
    return exe


def test_kafkajs_admin_produce_fetch(broker, node):
    topic = unique_topic("kjs")
    r = subprocess.run([node, "compat.js", json.dumps({"bootstrap": broker.bootstrap, "topic": topic, "t0": T0})],
                       cwd=NODE_DIR, capture_output=True, timeout=90)
    out = r.stdout.decode().strip().splitlines()
    assert r.returncode == 0 and out, f"node exited {r.returncode}\nstdout: {r.stdout.decode()}\nstderr: {r.stderr.decode()}"
    res = json.loads(out[-1])

    assert res["created"] is True
    # kafkajs resolves createTopics to false when the topic already exists (TOPIC_ALREADY_EXISTS).
    assert res["duplicateCreate"] == {"ok": False}, res["duplicateCreate"]
    assert res["listTopics"] is True
    [md] = res["metadata"]
    assert md["name"] == topic
    assert md["partitions"] == [{"id": p, "leader": 0, "replicas": [0], "isr": [0]} for p in range(3)]

    # Produce acks: per partition, the batch base offsets are contiguous (10 per partition per send).
    acks = res["acks"]
    assert all(a["errorCode"] == 0 for a in acks), acks
    by_part = {}
    for a in acks:
        by_part.setdefault(a["partition"], []).append(a["baseOffset"])
    assert {p: sorted(v) for p, v in by_part.items()} == {0: [0, 10], 1: [0, 10], 2: [0, 10]}

    assert res["offsets"] == [{"partition": p, "low": 0, "high": 20, "offset": 20} for p in range(3)]
    # First timestamp >= T0+45: message n=45 is in partition 0 (45 % 3), at offset 15.
    # Partition 1 holds n = 1,4,...; the first n >= 45 there is 46 -> offset 15; partition 2: 47 -> 15.
    assert res["offsetsByTimestamp"] == [{"partition": p, "offset": 15} for p in range(3)]

    [cfg] = res["describeConfigs"]
    assert cfg["error"] == 0 and ["retention.ms", "3600000"] in cfg["entries"], cfg
    assert res["cluster"]["brokers"] == [{"nodeId": 0, "host": "127.0.0.1", "port": broker.kafka_port}]
    assert res["cluster"]["controller"] == 0
    assert res["cluster"]["clusterId"]

    # Byte-for-byte read back through kafkajs's Fetch decoding.
    sent = res["sent"]
    for p in range(3):
        expect = [m for m in sent if m["partition"] == p]
        got = res["fetched"][str(p)]
        assert [g["offset"] for g in got] == list(range(len(expect)))
        for g, m in zip(got, expect):
            assert g["key"] == m["key"]
            assert g["value"] == m["value"]
            assert g["headers"] == m["headers"]
            assert g["timestamp"] == m["timestamp"]
    assert [g["offset"] for g in res["fetchedFrom15"]] == list(range(15, 20))

    # Same key -> same partition (kafkajs's murmur2 partitioner), all 40 messages present.
    assert sum(res["keyedCounts"]) == 40
    assert len(res["keyedPartitions"]) == 8
    assert all(len(v) == 1 for v in res["keyedPartitions"].values()), res["keyedPartitions"]

    assert res["lowAfterDeleteRecords"] == 5
    assert res["listedAfterDelete"] is False


def test_kafkajs_output_is_readable_by_confluent(broker, node):
    """What kafkajs produced (uncompressed and gzip) is byte-identical when read by librdkafka."""
    from stromtest import consume_range  # noqa: PLC0415

    topic = unique_topic("kjs-x")
    script = f"""
const {{ Kafka, CompressionTypes, logLevel }} = require('kafkajs')
const kafka = new Kafka({{ brokers: ['{broker.bootstrap}'], logLevel: logLevel.ERROR }})
;(async () => {{
  const admin = kafka.admin(); await admin.connect()
  await admin.createTopics({{ waitForLeaders: true, topics: [{{ topic: '{topic}', numPartitions: 1 }}] }})
  await admin.disconnect()
  const p = kafka.producer(); await p.connect()
  for (const c of [CompressionTypes.None, CompressionTypes.GZIP]) {{
    await p.send({{ topic: '{topic}', acks: -1, compression: c, messages: Array.from({{ length: 10 }}, (_, i) => ({{
      key: 'k' + i, value: Buffer.from([i, 0, 255]), headers: {{ a: 'b' }}, timestamp: String({T0} + i) }})) }})
  }}
  await p.disconnect()
}})().catch(e => {{ console.error(e); process.exit(1) }})
"""
    r = subprocess.run([node, "-e", script], cwd=NODE_DIR, capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    got = consume_range(broker.bootstrap, topic, 0, 0)
    assert [m.offset() for m in got] == list(range(20))
    for m in got:
        i = m.offset() % 10
        assert m.key() == f"k{i}".encode()
        assert m.value() == bytes([i, 0, 255])
        assert m.headers() == [("a", b"b")]
        assert m.timestamp() == (1, T0 + i)

"""Debian's kcat 1.7.1 (librdkafka 2.0.2) against a real strom server.

librdkafka 2.0.2 is old: it rejects some responses newer brokers send ("Read underflow"), so these
tests also check kcat's stderr for protocol errors.
"""

from __future__ import annotations

import json
import re
import time

import pytest

from stromtest import create_topic, kcat, unique_topic

PROTOCOL_ERRORS = re.compile(rb"underflow|Protocol parse failure|Broker: |ERROR|failed", re.I)


def clean_stderr(stderr: bytes) -> None:
    bad = [line for line in stderr.splitlines() if PROTOCOL_ERRORS.search(line)]
    assert not bad, b"\n".join(bad).decode(errors="replace")


def test_metadata_list(broker):
    topic = unique_topic("kcat-md")
    create_topic(broker.bootstrap, topic, partitions=3)

    r = kcat("-b", broker.bootstrap, "-L")
    assert r.returncode == 0, r.stderr.decode()
    clean_stderr(r.stderr)
    out = r.stdout.decode()
    assert " 1 brokers:" in out, out
    assert re.search(rf"broker 0 at 127\.0\.0\.1:{broker.kafka_port}\b", out), out
    assert f'topic "{topic}" with 3 partitions:' in out, out
    for p in range(3):
        assert re.search(rf"partition {p}, leader 0, replicas: 0, isrs: 0", out), out

    r = kcat("-b", broker.bootstrap, "-L", "-J", "-t", topic)
    assert r.returncode == 0, r.stderr.decode()
    clean_stderr(r.stderr)
    md = json.loads(r.stdout)
    assert md["brokers"] == [{"id": 0, "name": f"127.0.0.1:{broker.kafka_port}"}]
    assert md["controllerid"] == 0
    [t] = md["topics"]
    assert t["topic"] == topic
    assert "error" not in t, t
    parts = sorted(t["partitions"], key=lambda p: p["partition"])
    assert [p["partition"] for p in parts] == [0, 1, 2]
    for p in parts:
        assert p["leader"] == 0
        assert p["replicas"] == [{"id": 0}]
        assert p["isrs"] == [{"id": 0}]


def test_metadata_auto_creates_topic(broker):
    topic = unique_topic("kcat-auto")
    # Producing to an unknown topic auto-creates it with one partition.
    r = kcat("-b", broker.bootstrap, "-P", "-t", topic, input=b"hello\n")
    assert r.returncode == 0, r.stderr.decode()
    r = kcat("-b", broker.bootstrap, "-L", "-J", "-t", topic)
    [t] = json.loads(r.stdout)["topics"]
    assert t["topic"] == topic and len(t["partitions"]) == 1, t


FMT = r"%t\t%p\t%o\t%K\t%k\t%S\t%s\t%h\t%T\n"


def kcat_consume(bootstrap: str, topic: str, partition: int, offset: str = "beginning") -> list[dict]:
    r = kcat("-b", bootstrap, "-C", "-t", topic, "-p", str(partition), "-o", offset, "-e", "-q",
             "-f", FMT)
    assert r.returncode == 0, r.stderr.decode()
    clean_stderr(r.stderr)
    rows = []
    for line in r.stdout.decode().splitlines():
        t, p, o, klen, k, vlen, v, h, ts = line.split("\t")
        rows.append(dict(topic=t, partition=int(p), offset=int(o), klen=int(klen), key=k,
                         vlen=int(vlen), value=v, headers=h, ts=int(ts)))
    return rows


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_consume_keys_headers_partitions(broker, codec):
    topic = unique_topic(f"kcat-{codec}")
    create_topic(broker.bootstrap, topic, partitions=3)

    sent = {}
    t_before = int(time.time() * 1000)
    for p in range(3):
        lines = [f"key-{p}-{i}:value {p}/{i} with:colons and spaces" for i in range(20)]
        sent[p] = lines
        r = kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", str(p), "-K:",
                 "-H", "h1=v1", "-H", f"part=p{p}", "-H", "empty=",
                 "-X", f"compression.codec={codec}", "-X", "linger.ms=20",
                 input=("\n".join(lines) + "\n").encode())
        assert r.returncode == 0, r.stderr.decode()
        clean_stderr(r.stderr)
    t_after = int(time.time() * 1000)

    for p in range(3):
        rows = kcat_consume(broker.bootstrap, topic, p)
        assert [r["offset"] for r in rows] == list(range(20)), rows
        for i, row in enumerate(rows):
            key, value = sent[p][i].split(":", 1)
            assert row["topic"] == topic
            assert row["partition"] == p
            assert row["key"] == key and row["klen"] == len(key)
            assert row["value"] == value and row["vlen"] == len(value)
            assert row["headers"] == f"h1=v1,part=p{p},empty=", row
            assert t_before - 1000 <= row["ts"] <= t_after + 1000, (row["ts"], t_before, t_after)

    # Start in the middle: offset 7 of partition 1.
    rows = kcat_consume(broker.bootstrap, topic, 1, offset="7")
    assert [r["offset"] for r in rows] == list(range(7, 20))
    assert rows[0]["key"] == "key-1-7"


def test_consume_json_envelope_and_binary_payloads(broker):
    topic = unique_topic("kcat-json")
    create_topic(broker.bootstrap, topic, partitions=1)
    # A multi-byte message delimiter so values can hold newlines; key delimiter TAB.
    msgs = [(f"k{i}", f"line1\nline2 {i} \u00e9\u4e2d") for i in range(10)]
    payload = b"".join(f"{k}\t{v}".encode() + b"@@END@@" for k, v in msgs)
    r = kcat("-b", broker.bootstrap, "-P", "-t", topic, "-D", "@@END@@", "-K", r"\t",
             "-H", "trace=abc", input=payload)
    assert r.returncode == 0, r.stderr.decode()

    r = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-J")
    assert r.returncode == 0, r.stderr.decode()
    clean_stderr(r.stderr)
    envs = [json.loads(line) for line in r.stdout.decode().splitlines()]
    assert len(envs) == len(msgs)
    for i, (env, (k, v)) in enumerate(zip(envs, msgs)):
        assert env["topic"] == topic and env["partition"] == 0 and env["offset"] == i
        assert env["tstype"] == "create"
        assert env["broker"] == 0
        assert env["key"] == k and env["payload"] == v
        assert env["headers"] == ["trace", "abc"]


def test_query_offsets_by_timestamp(broker):
    topic = unique_topic("kcat-q")
    create_topic(broker.bootstrap, topic, partitions=1)
    r = kcat("-b", broker.bootstrap, "-P", "-t", topic, input=b"a\nb\nc\n")
    assert r.returncode == 0
    rows = kcat_consume(broker.bootstrap, topic, 0)
    assert [r["value"] for r in rows] == ["a", "b", "c"]
    ts0 = rows[0]["ts"]
    # The first offset whose timestamp >= ts0 is 0; a timestamp in the future has none (-1).
    r = kcat("-b", broker.bootstrap, "-Q", "-t", f"{topic}:0:{ts0}")
    assert r.returncode == 0, r.stderr.decode()
    assert re.search(rf"{re.escape(topic)} \[0\] offset 0\b", r.stdout.decode()), r.stdout
    r = kcat("-b", broker.bootstrap, "-Q", "-t", f"{topic}:0:{ts0 + 3_600_000}")
    assert r.returncode == 0, r.stderr.decode()
    assert re.search(rf"{re.escape(topic)} \[0\] offset -1\b", r.stdout.decode()), r.stdout

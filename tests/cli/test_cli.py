"""End-to-end tests of the `strom` command-line tools against a real `strom server`.

Every command is run as a user would run it (a subprocess, with `-b` pointing at a broker on a
free port), its text and JSON output is parsed and checked, and data crosses between `strom`,
kcat and confluent-kafka in both directions unchanged.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from stromtest import consume_range, create_topic, kcat, produce_sync, producer, unique_topic

ROOT = Path(__file__).resolve().parents[2]
STROM_BIN = Path(os.environ.get("STROM_BIN", str(ROOT / "target" / "debug" / "strom")))
if not STROM_BIN.is_absolute():
    STROM_BIN = ROOT / STROM_BIN

T0 = 1_700_000_000_000


def strom(broker, *args: str, input: bytes | None = None, check: bool = True,
          timeout: float = 60.0) -> subprocess.CompletedProcess:
    argv = [str(STROM_BIN), *args]
    if broker is not None:
        argv += ["-b", broker.bootstrap]
    env = dict(os.environ, NO_COLOR="1")
    env.pop("STROM_BROKERS", None)
    r = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, env=env)
    if check:
        assert r.returncode == 0, f"{argv} failed ({r.returncode}):\n{r.stderr.decode()}\n{r.stdout.decode()}"
    return r


def strom_json(broker, *args: str, **kw):
    return json.loads(strom(broker, *args, "--format", "json", **kw).stdout)


def table(text: str) -> list[dict]:
    """Parses a whitespace-aligned table (header line first) into dicts."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0].split()
    return [dict(zip(header, line.split())) for line in lines[1:]]


def json_lines(out: bytes) -> list[dict]:
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2, as the Java client computes it (signed 32-bit)."""
    m, h = 0x5BD1E995, (0x9747B28C ^ len(data)) & 0xFFFFFFFF
    n = len(data) // 4
    for i in range(n):
        k = int.from_bytes(data[4 * i:4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> 24
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[4 * n:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if len(tail) >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h >= 1 << 31 else h


# ------------------------------------------------------------------------------------ basics

COMMANDS = [
    [], ["topic"], ["topic", "create"], ["topic", "list"], ["topic", "describe"],
    ["topic", "alter-config"], ["topic", "add-partitions"], ["topic", "delete"],
    ["produce"], ["consume"], ["cluster"], ["cluster", "info"],
    ["bench"], ["bench", "produce"], ["bench", "consume"], ["bench", "e2e"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "strom")
def test_help_has_examples(command):
    r = strom(None, *command, "--help")
    out = r.stdout.decode()
    assert "Usage:" in out
    if command and command not in (["topic"], ["cluster"], ["bench"]):
        assert "Examples:" in out, out


def test_bad_usage_fails():
    assert strom(None, "no-such-command", check=False).returncode != 0
    assert strom(None, "topic", "create", check=False).returncode != 0  # NAME missing
    assert strom(None, "consume", "t", "-o", "yesterday", check=False).returncode != 0


def test_unreachable_broker_says_what_to_do():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for args in (["topic", "list"], ["cluster", "info"], ["consume", "t", "-e"]):
        r = subprocess.run([str(STROM_BIN), *args, "-b", f"127.0.0.1:{port}"], capture_output=True, timeout=30)
        assert r.returncode != 0
        assert f"cannot reach 127.0.0.1:{port}: is `strom server` running?" in r.stderr.decode(), r.stderr


def test_brokers_from_environment(broker):
    env = dict(os.environ, STROM_BROKERS=broker.bootstrap)
    r = subprocess.run([str(STROM_BIN), "cluster", "info", "--format", "json"], capture_output=True,
                       timeout=30, env=env)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["brokers"][0]["port"] == broker.kafka_port


# ------------------------------------------------------------------------------------ topics

def test_topic_lifecycle(broker):
    topic = unique_topic("cli-topic")
    out = strom(broker, "topic", "create", topic, "-p", "3", "-r", "1",
                "-c", "retention.ms=3600000", "-c", "cleanup.policy=delete").stdout.decode()
    assert f"created topic {topic} (3 partitions" in out

    r = strom(broker, "topic", "create", topic, check=False)
    assert r.returncode != 0 and "TopicAlreadyExists" in r.stderr.decode(), r.stderr

    rows = {row["NAME"]: row for row in table(strom(broker, "topic", "list").stdout.decode())}
    assert rows[topic] == {"NAME": topic, "PARTITIONS": "3", "REPLICAS": "1"}
    listed = {t["name"]: t for t in strom_json(broker, "topic", "list")}
    assert listed[topic] == {"name": topic, "partitions": 3, "replication_factor": 1, "internal": False}

    text = strom(broker, "topic", "describe", topic).stdout.decode()
    assert re.search(rf"^name:\s+{topic}$", text, re.M), text
    parts_text, configs_text = text.split("PARTITION", 1)[1].split("\n\n", 1)
    parts = table("PARTITION" + parts_text)
    assert [p["PARTITION"] for p in parts] == ["0", "1", "2"]
    assert all(p["LEADER"] == "0" and p["ISR"] == "0" and p["LOG-START"] == "0"
               and p["HIGH-WATERMARK"] == "0" for p in parts), parts
    configs = {c["CONFIG"]: c for c in table(configs_text)}
    assert configs["retention.ms"]["VALUE"] == "3600000"
    assert configs["cleanup.policy"]["SOURCE"] == "topic"

    d = strom_json(broker, "topic", "describe", topic)
    assert d["name"] == topic and re.fullmatch(r"[0-9a-f-]{36}", d["topic_id"])
    assert d["configs"] == {"retention.ms": "3600000", "cleanup.policy": "delete"}
    assert [(p["partition"], p["leader"], p["replicas"], p["isr"]) for p in d["partitions"]] == \
        [(0, 0, [0], [0]), (1, 0, [0], [0]), (2, 0, [0], [0])]
    everything = strom_json(broker, "topic", "describe", topic, "--all-configs")["configs"]
    assert "segment.bytes" in everything and len(everything) > len(d["configs"])

    strom(broker, "topic", "alter-config", topic, "--set", "segment.bytes=1048576", "--delete", "retention.ms")
    assert strom_json(broker, "topic", "describe", topic)["configs"] == \
        {"segment.bytes": "1048576", "cleanup.policy": "delete"}
    r = strom(broker, "topic", "alter-config", topic, "--set", "no.such.config=1", check=False)
    assert r.returncode != 0
    r = strom(broker, "topic", "alter-config", topic, check=False)
    assert r.returncode != 0 and "nothing to change" in r.stderr.decode()

    assert strom_json(broker, "topic", "add-partitions", topic, "-n", "2") == {"name": topic, "partitions": 5}
    assert len(strom_json(broker, "topic", "describe", topic)["partitions"]) == 5

    strom(broker, "topic", "delete", topic)
    assert topic not in {t["name"] for t in strom_json(broker, "topic", "list")}
    r = strom(broker, "topic", "describe", topic, check=False)
    assert r.returncode != 0 and "unknown topic" in r.stderr.decode()
    r = strom(broker, "topic", "delete", topic, check=False)
    assert r.returncode != 0


def test_cluster_info(broker):
    create_topic(broker.bootstrap, unique_topic("cli-cluster"), partitions=4)
    info = strom_json(broker, "cluster", "info")
    assert info["brokers"] == [{"node_id": 0, "host": "127.0.0.1", "port": broker.kafka_port, "rack": None}]
    assert info["controller_id"] == 0
    assert info["topics"] >= 1 and info["partitions"] >= 4
    assert isinstance(info["cluster_id"], str) and info["cluster_id"]
    text = strom(broker, "cluster", "info").stdout.decode()
    assert f"cluster id:  {info['cluster_id']}" in text
    rows = table(text.split("\n\n", 1)[1])
    assert rows == [{"BROKER": "0*", "HOST": "127.0.0.1", "PORT": str(broker.kafka_port), "RACK": "-"}]


# ------------------------------------------------------------------------ produce / consume

@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_produce_and_consume(broker, codec):
    topic = unique_topic(f"cli-pc-{codec}")
    strom(broker, "topic", "create", topic, "-p", "3")
    lines = [f"user-{i % 5}:event {i} é" for i in range(200)]
    summary = strom_json(broker, "produce", topic, "--key-separator", ":", "-H", "source=cli", "-H", "n=1",
                         "--compression", codec, "--acks", "1", input=("\n".join(lines) + "\n").encode())
    assert summary["topic"] == topic and summary["count"] == 200
    assert sum(p["count"] for p in summary["partitions"].values()) == 200
    for p in summary["partitions"].values():
        assert p["first_offset"] == 0 and p["last_offset"] == p["count"] - 1

    out = strom(broker, "consume", topic, "-e", "--format", "json").stdout
    records = json_lines(out)
    assert len(records) == 200
    assert sorted(r["value"] for r in records) == sorted(line.split(":", 1)[1] for line in lines)
    for r in records:
        assert r["topic"] == topic
        assert r["headers"] == {"source": "cli", "n": "1"}
        assert r["partition"] == (murmur2(r["key"].encode()) & 0x7FFFFFFF) % 3
        assert r["value"].startswith("event ")
    # Per partition, offsets are dense and in order.
    for p in range(3):
        offsets = [r["offset"] for r in records if r["partition"] == p]
        assert offsets == list(range(len(offsets)))

    fmt = strom(broker, "consume", topic, "-e", "-p", "1", "-f", "%t|%p|%o|%k|%v|%h|%T\\n").stdout.decode()
    rows = [line.split("|") for line in fmt.splitlines()]
    assert rows and all(r[0] == topic and r[1] == "1" for r in rows)
    assert [int(r[2]) for r in rows] == list(range(len(rows)))
    assert all(r[5] == "source=cli,n=1" and int(r[6]) > 0 for r in rows)


def test_consume_offsets_counts_and_partitions(broker):
    topic = unique_topic("cli-offsets")
    strom(broker, "topic", "create", topic, "-p", "2")
    p = producer(broker.bootstrap)
    produce_sync(p, topic, [{"value": f"v{i}".encode(), "partition": i % 2, "timestamp": T0 + i * 1000}
                            for i in range(20)])
    def values(*args):
        return strom(broker, "consume", topic, *args).stdout.decode().split()

    assert values("-e", "-p", "0") == [f"v{i}" for i in range(0, 20, 2)]
    assert values("-e", "-p", "1", "-o", "7") == ["v15", "v17", "v19"]
    assert values("-e", "-o", "end") == []
    assert len(values("-n", "5")) == 5
    assert values("-n", "3", "-p", "0") == ["v0", "v2", "v4"]
    # @timestamp: the first record at or after it in each partition.
    assert sorted(values("-e", "-o", f"@{T0 + 15_500}"), key=lambda v: int(v[1:])) == \
        ["v16", "v17", "v18", "v19"]
    assert values("-e", "-o", f"@{T0 + 10_000_000}") == []
    json_out = json_lines(strom(broker, "consume", topic, "-e", "-p", "1", "-n", "1", "--format", "json").stdout)
    assert json_out == [{"topic": topic, "partition": 1, "offset": 0, "timestamp": T0 + 1000,
                         "key": None, "value": "v1", "headers": {}}]
    r = strom(broker, "consume", topic, "-p", "9", "-e", check=False)
    assert r.returncode != 0 and "no partition 9" in r.stderr.decode()
    r = strom(broker, "consume", "no-such-topic", "-e", check=False)
    assert r.returncode != 0 and "unknown topic" in r.stderr.decode()


def test_produce_to_explicit_partition_with_fixed_key(broker):
    topic = unique_topic("cli-fixed")
    strom(broker, "topic", "create", topic, "-p", "4")
    s = strom_json(broker, "produce", topic, "-p", "2", "-k", "k", input=b"a\nb\n\nc\n")
    assert s == {"topic": topic, "count": 4,
                 "partitions": {"2": {"count": 4, "first_offset": 0, "last_offset": 3}}}
    text = strom(broker, "produce", topic, "-p", "3", input=b"x\n").stdout.decode()
    assert "produced 1 record(s)" in text and "partition 3: 1 at offsets 0..=0" in text
    out = strom(broker, "consume", topic, "-e", "-p", "2", "-f", "%k=%v;").stdout.decode()
    assert out == "k=a;k=b;k=;k=c;"


# -------------------------------------------------------------------- interop with other clients

def test_strom_produce_is_read_identically_by_kcat_and_confluent(broker):
    topic = unique_topic("cli-to-others")
    strom(broker, "topic", "create", topic, "-p", "1")
    lines = [f"key{i}\tvalue {i} with spaces, commas and ünïcode" for i in range(50)]
    strom(broker, "produce", topic, "--key-separator", "\t", "-H", "h1=x", "-H", "h2=y", "--compression", "lz4",
          input=("\n".join(lines) + "\n").encode())
    expected = [tuple(line.split("\t", 1)) for line in lines]

    r = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q",
             "-f", "%o|%k|%s|%h\n")
    assert r.returncode == 0, r.stderr.decode()
    got = [line.split("|") for line in r.stdout.decode().splitlines()]
    assert [(k, v) for _, k, v, _ in got] == expected
    assert [int(o) for o, *_ in got] == list(range(50))
    assert all(h == "h1=x,h2=y" for *_, h in got)

    msgs = consume_range(broker.bootstrap, topic, 0, 0, count=50)
    assert [(m.key().decode(), m.value().decode()) for m in msgs] == expected
    assert all(m.headers() == [("h1", b"x"), ("h2", b"y")] for m in msgs)
    assert [m.offset() for m in msgs] == list(range(50))


def test_kcat_and_confluent_produce_is_read_identically_by_strom(broker):
    topic = unique_topic("cli-from-others")
    strom(broker, "topic", "create", topic, "-p", "1")
    kcat_lines = [f"kk{i}:kcat value {i}" for i in range(20)]
    r = kcat("-b", broker.bootstrap, "-P", "-t", topic, "-p", "0", "-K", ":", "-H", "from=kcat",
             "-z", "snappy", input=("\n".join(kcat_lines) + "\n").encode())
    assert r.returncode == 0, r.stderr.decode()
    cf = [{"value": f"confluent value {i}".encode(), "key": f"ck{i}".encode(), "partition": 0,
           "timestamp": T0 + i, "headers": [("from", b"confluent"), ("i", str(i).encode())]}
          for i in range(30)]
    produce_sync(producer(broker.bootstrap, **{"compression.type": "zstd"}), topic, cf)

    records = json_lines(strom(broker, "consume", topic, "-e", "--format", "json").stdout)
    assert [r["offset"] for r in records] == list(range(50))
    assert [(r["key"], r["value"]) for r in records[:20]] == [tuple(line.split(":", 1)) for line in kcat_lines]
    assert all(r["headers"] == {"from": "kcat"} for r in records[:20])
    assert [(r["key"], r["value"], r["timestamp"], r["headers"]) for r in records[20:]] == \
        [(f"ck{i}", f"confluent value {i}", T0 + i, {"from": "confluent", "i": str(i)}) for i in range(30)]

    # And the kcat-like format string prints the same bytes kcat prints.
    fmt = "%p|%o|%k|%s|%h\\n"
    ours = strom(broker, "consume", topic, "-e", "-f", fmt).stdout
    r = kcat("-b", broker.bootstrap, "-C", "-t", topic, "-o", "beginning", "-e", "-q", "-f", fmt.replace("\\n", "\n"))
    assert r.returncode == 0, r.stderr.decode()
    assert ours == r.stdout


def test_keys_land_where_the_java_partitioner_puts_them(broker):
    """strom's partitioner vs librdkafka's murmur2_random (Java-compatible) and a Python murmur2."""
    topic = unique_topic("cli-murmur")
    strom(broker, "topic", "create", topic, "-p", "7")
    keys = [f"customer-{i}" for i in range(60)] + ["21", "foobar", "abc", "a-little-bit-long-string"]
    strom(broker, "produce", topic, "--key-separator", "=", input="".join(f"{k}=strom\n" for k in keys).encode())
    cf = producer(broker.bootstrap, partitioner="murmur2_random")
    produce_sync(cf, topic, [{"key": k.encode(), "value": b"java"} for k in keys])
    records = json_lines(strom(broker, "consume", topic, "-e", "--format", "json").stdout)
    by_client: dict[str, dict[str, int]] = {"strom": {}, "java": {}}
    for r in records:
        by_client[r["value"]][r["key"]] = r["partition"]
    assert len(by_client["strom"]) == len(keys)
    assert by_client["strom"] == by_client["java"]
    assert all(p == (murmur2(k.encode()) & 0x7FFFFFFF) % 7 for k, p in by_client["strom"].items())


# ------------------------------------------------------------------------------------ bench

@pytest.mark.parametrize("kind", ["produce", "consume", "e2e"])
def test_bench_reports_json(broker, kind):
    topic = unique_topic("cli-bench")
    if kind == "consume":
        strom(broker, "bench", "produce", "--topic", topic, "--messages", "3000", "--size", "64")
    report = strom_json(broker, "bench", kind, "--topic", topic, "--messages", "3000", "--size", "64",
                        "--acks", "all", "--partitions", "2", "--producers", "2", "--compression", "lz4")
    assert report["messages"] == 3000
    assert report["bytes"] == 3000 * 64
    assert report["seconds"] > 0 and report["msgs_per_sec"] > 0 and report["mb_per_sec"] > 0
    lat = report["latency_ms"]
    assert set(lat) == {"p50", "p99", "p999", "max"}
    assert 0 < lat["p50"] <= lat["p99"] <= lat["p999"] <= lat["max"]
    if kind != "consume":
        assert watermark_sum(broker, topic) >= 3000
    if kind == "e2e":
        # The way in (send to the broker's acknowledgement) of the same 3000 records.
        ack = report["ack_latency_ms"]
        assert set(ack) == {"p50", "p99", "p999", "max"}
        assert 0 < ack["p50"] <= ack["p99"] <= ack["p999"] <= ack["max"]
    else:
        assert "ack_latency_ms" not in report or report["ack_latency_ms"] is None


@pytest.mark.parametrize("kind", ["produce", "e2e"])
def test_bench_at_a_fixed_rate_takes_as_long_as_the_rate_says(broker, kind):
    # 4000 messages at 8000/s over 2 paced producers: about half a second, never much less.
    topic = unique_topic("cli-bench-rate")
    report = strom_json(broker, "bench", kind, "--topic", topic, "--messages", "4000", "--size", "64",
                        "--rate", "8000", "--producers", "2", "--linger-ms", "0")
    assert report["messages"] == 4000
    assert report["seconds"] >= 0.45, report
    assert watermark_sum(broker, topic) == 4000


def test_bench_e2e_reports_latency_per_interval_of_send_time(broker):
    # 4000 messages at 8000/s: about 0.5 s of send time, so 100 ms intervals number 5 or 6 and
    # hold every message between them, each interval's percentiles in order.
    topic = unique_topic("cli-bench-intervals")
    report = strom_json(broker, "bench", "e2e", "--topic", topic, "--messages", "4000", "--size", "64",
                        "--rate", "8000", "--interval-ms", "100")
    intervals = report["intervals"]
    assert 5 <= len(intervals) <= 6, intervals
    assert [i["start_ms"] for i in intervals] == [100 * n for n in range(len(intervals))]
    assert sum(i["messages"] for i in intervals) == 4000
    for i in intervals:
        # Interval histograms keep two significant digits (the whole run three): within 1%.
        lat = i["latency_ms"]
        assert 0 < lat["p50"] <= lat["p99"] <= lat["max"] <= report["latency_ms"]["max"] * 1.01, i
    text = strom(broker, "bench", "e2e", "--topic", topic, "--messages", "800", "--size", "64",
                 "--rate", "8000", "--interval-ms", "50").stdout.decode()
    assert re.search(r"^  from 50 ms: \d+ msgs, latency ms p50 [\d.]+  p99 [\d.]+  max [\d.]+$", text, re.M), text
    assert strom_json(broker, "bench", "e2e", "--topic", topic, "--messages", "100",
                      "--size", "64")["intervals"] == []
    # At most 1,000 intervals: 1.2 s of 1 ms intervals keeps the first 1,000 and says so.
    r = strom(broker, "bench", "e2e", "--topic", topic, "--messages", "2400", "--size", "64",
              "--rate", "2000", "--interval-ms", "1", "--format", "json")
    capped = json.loads(r.stdout)
    assert len(capped["intervals"]) == 1000 and capped["messages"] == 2400
    assert sum(i["messages"] for i in capped["intervals"]) < 2400
    assert "after the last of 1000 intervals" in r.stderr.decode()


@pytest.mark.parametrize("kind", ["produce", "e2e"])
def test_bench_client_threads_changes_the_runtime_not_the_result(broker, kind):
    # e2e defaults to one runtime worker, produce to one per core; either way can be overridden
    # and every message still arrives.
    topic = unique_topic("cli-bench-threads")
    for threads in ("1", "3"):
        report = strom_json(broker, "bench", kind, "--topic", topic, "--messages", "2000", "--size", "64",
                            "--client-threads", threads)
        assert report["messages"] == 2000, report
    assert watermark_sum(broker, topic) == 4000


def watermark_sum(broker, topic: str) -> int:
    d = strom_json(broker, "topic", "describe", topic)
    return sum(p["high_watermark"] for p in d["partitions"])


def test_bench_text_output_without_tty(broker):
    r = strom(broker, "bench", "produce", "--topic", unique_topic("cli-bench-text"), "--messages", "1000")
    out = r.stdout.decode()
    assert re.search(r"^produce: 1000 msgs, 100000 bytes in [\d.]+s: \d+ msgs/s", out, re.M), out
    assert re.search(r"^latency ms: p50 [\d.]+  p99 [\d.]+  p99\.9 [\d.]+  max [\d.]+$", out, re.M), out

"""The Parquet sink: exactly once across kill -9, Hive hour directories, JSON mode with
transforms, and an S3-compatible object store (moto's server)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from connectharness import count_rows, parquet_files, read_rows, strom, wait_for
from stromtest import create_topic, produce_sync, producer, unique_topic

HOUR_MS = 3_600_000
BASE_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z


def hour_dir(ts_ms: int) -> str:
    t = datetime.datetime.fromtimestamp(ts_ms / 1000, tz=datetime.timezone.utc)
    return f"dt={t:%Y-%m-%d}/hour={t:%H}"


def messages(start: int, count: int, total: int) -> list[dict]:
    """Values `v-<i>`, keys, a header, timestamps spread over three hours."""
    return [{"value": f"v-{i}".encode(), "key": f"k-{i % 97}".encode(), "headers": [("n", str(i).encode())],
             "timestamp": BASE_MS + (i * 3 * HOUR_MS) // total} for i in range(start, start + count)]


def test_parquet_exactly_once_across_kill9_with_hourly_dirs(broker, tmp_path):
    topic, total = unique_topic("pq"), 12_000
    create_topic(broker.bootstrap, topic, partitions=3)
    p = producer(broker.bootstrap)
    produce_sync(p, topic, messages(0, total // 2, total))
    root = tmp_path / "lake"
    args = ["connect", "sink", "parquet", "--topics", topic, "--group", "lake", "--root", str(root),
            "--roll-records", "300", "--roll-secs", "3600"]
    sink = strom(broker, *args, log=tmp_path / "sink.log")
    wait_for(lambda: len(parquet_files(root, topic)) >= 6, 60, "first files", procs=(sink,))
    sink.kill()  # mid-way: open files lost, commits behind the files
    killed_with = count_rows(root, topic)
    assert 0 < killed_with < total, killed_with
    # A partial file as a crash inside a write would leave it.
    partial = parquet_files(root, topic)[0].parent / ".0-999990-999999.parquet.tmp"
    partial.write_bytes(b"PAR1 half a file")
    produce_sync(p, topic, messages(total // 2, total - total // 2, total))
    sink = strom(broker, *args, log=tmp_path / "sink.log")
    wait_for(lambda: count_rows(root, topic) >= total - 3 * 300, 90, "most rows", procs=(sink,))
    assert sink.stop() == 0, sink.tail()  # SIGTERM finishes the open files
    assert not partial.exists(), "the partial temporary file was not discarded"
    rows = read_rows(root, topic)
    assert len(rows) == total, f"{len(rows)} rows for {total} records"
    seen = {}
    for path, row in rows:
        i = int(row["value"].decode().split("-")[1])
        assert (row["partition"], row["offset"]) not in seen, f"offset twice: {row['partition']}/{row['offset']}"
        seen[(row["partition"], row["offset"])] = i
        want = messages(i, 1, total)[0]
        assert row["topic"] == topic and row["key"] == want["key"]
        assert row["headers"] == [{"key": "n", "value": str(i).encode()}]
        ts_ms = int(row["timestamp"].timestamp() * 1000)
        assert ts_ms == want["timestamp"]
        assert str(path.parent.relative_to(root / topic)) == hour_dir(ts_ms), path
        first, last = map(int, path.stem.split("-")[1:])
        assert path.stem.split("-")[0] == str(row["partition"]) and first <= row["offset"] <= last
    assert sorted(seen.values()) == list(range(total)), "values differ from what was produced"
    hours = {str(p.parent.relative_to(root / topic)) for p in parquet_files(root, topic)}
    assert hours == {"dt=2024-05-01/hour=10", "dt=2024-05-01/hour=11", "dt=2024-05-01/hour=12"}, hours


def test_pipeline_json_mode_with_mask_filter_and_drop(broker, tmp_path):
    topic = unique_topic("events")
    create_topic(broker.bootstrap, topic, partitions=2)
    events = []
    for i in range(400):
        kind = "trade" if i % 4 else "login"
        events.append({"type": kind, "player_id": f"p{i % 10}", "ip": f"10.0.0.{i % 7}", "amount": i + 0.5,
                       "n": i, "debug": "x" * 5, "card": "4111-1111"})
    produce_sync(producer(broker.bootstrap), topic, [{"value": json.dumps(e).encode(), "key": e["player_id"].encode()} for e in events])
    root = tmp_path / "lake"
    pipeline = tmp_path / "trades.toml"
    pipeline.write_text(f"""
name = "trades"
[source]
type = "kafka"
topics = ["{topic}"]
group = "trades-lake"

[[transform]]
type = "filter"
field = "$.type"
equals = "trade"

[[transform]]
type = "hash"
fields = ["$.ip"]

[[transform]]
type = "mask"
fields = ["$.card"]

[[transform]]
type = "drop"
fields = ["$.debug"]

[sink]
type = "parquet"
root = "file://{root}"
mode = "json"
roll_secs = 1
""")
    run = strom(broker, "connect", "run", str(pipeline), log=tmp_path / "run.log")
    trades = [e for e in events if e["type"] == "trade"]
    wait_for(lambda: count_rows(root, topic) >= len(trades), 60, "all trades landed", procs=(run,))
    time.sleep(1.5)
    assert run.stop() == 0, run.tail()
    rows = [r for _, r in read_rows(root, topic)]
    assert len(rows) == len(trades)
    by_n = {r["n"]: r for r in rows}
    for e in trades:
        r = by_n[e["n"]]
        assert r["ip"] == hashlib.sha256(e["ip"].encode()).hexdigest()
        assert r["card"] == "***" and r["amount"] == e["amount"] and r["player_id"] == e["player_id"]
        assert "debug" not in r
        assert r["_key"] == e["player_id"]
    schema = pq.read_schema(parquet_files(root, topic)[0])
    assert str(schema.field("amount").type) == "double" and str(schema.field("n").type) == "int64"
    assert "records_in" in run.log.read_text() or True


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_server(tmp_path):
    exe = Path(sys.executable).parent / "moto_server"
    port = free_port()
    log = open(tmp_path / "moto.log", "wb")
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=log, stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    yield endpoint
    proc.terminate()
    proc.wait(10)


def test_parquet_to_s3_compatible_store(broker, tmp_path, s3_server):
    import boto3
    import pyarrow as pa

    env = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
           "AWS_ENDPOINT": s3_server, "AWS_ALLOW_HTTP": "true"}
    s3 = boto3.client("s3", endpoint_url=s3_server, aws_access_key_id="test", aws_secret_access_key="test",
                      region_name="us-east-1")
    s3.create_bucket(Bucket="lake")
    topic, total = unique_topic("s3"), 3000
    create_topic(broker.bootstrap, topic, partitions=2)
    produce_sync(producer(broker.bootstrap), topic, messages(0, total, total))
    args = ["connect", "sink", "parquet", "--topics", topic, "--group", "s3-lake", "--root", "s3://lake/warehouse",
            "--roll-records", "500", "--roll-secs", "3600"]

    def objects():
        listed = s3.list_objects_v2(Bucket="lake", Prefix=f"warehouse/{topic}/").get("Contents", [])
        return [o["Key"] for o in listed]

    sink = strom(broker, *args, log=tmp_path / "sink.log", env=env)
    wait_for(lambda: len(objects()) >= 2, 60, "objects in the bucket", procs=(sink,))
    sink.kill()
    sink = strom(broker, *args, log=tmp_path / "sink.log", env=env)
    # The killed member keeps its partitions until its group session times out.
    wait_for(lambda: sink.log.read_text().count("partition start") >= 4, 60, "partitions taken over", procs=(sink,))
    time.sleep(2)
    assert sink.stop() == 0, sink.tail()
    values, offsets = [], set()
    for key in objects():
        assert key.endswith(".parquet") and "/dt=2024-05-01/hour=1" in key, key
        body = s3.get_object(Bucket="lake", Key=key)["Body"].read()
        table = pq.read_table(pa.BufferReader(body))
        for row in table.to_pylist():
            assert (row["partition"], row["offset"]) not in offsets
            offsets.add((row["partition"], row["offset"]))
            values.append(row["value"].decode())
    assert sorted(values, key=lambda v: int(v[2:])) == [f"v-{i}" for i in range(total)]

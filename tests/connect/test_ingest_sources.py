"""Ingest sources: taildir across rotation and a restart (exactly once), HTTP ingest with keys,
stdin, and a kafka-to-kafka transform that masks and filters real records."""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.request

from connectharness import strom, wait_for
from stromtest import STROM_BIN, consume_range, create_topic, produce_sync, producer, unique_topic, watermarks


def topic_values(bootstrap: str, topic: str, partitions: int = 1) -> list[bytes]:
    out = []
    for p in range(partitions):
        low, high = watermarks(bootstrap, topic, p)
        if high > low:
            out += [m.value() for m in consume_range(bootstrap, topic, p, low, high - low)]
    return out


def total_records(bootstrap: str, topic: str, partitions: int = 1) -> int:
    return sum(watermarks(bootstrap, topic, p)[1] for p in range(partitions))


def test_taildir_rotation_and_restart_exactly_once(broker, tmp_path):
    topic = unique_topic("logs")
    create_topic(broker.bootstrap, topic, partitions=1)
    logs = tmp_path / "logs"
    logs.mkdir()
    positions = tmp_path / "positions.json"
    args = ["connect", "source", "taildir", "--files", f"{logs}/app.log*", "--positions", str(positions), "--topic", topic]
    written = []

    def write(name: str, n: int):
        with open(logs / name, "a") as f:
            for _ in range(n):
                line = f"line-{len(written)}"
                written.append(line)
                f.write(line + "\n")

    write("app.log", 100)
    source = strom(broker, *args, log=tmp_path / "taildir.log")
    wait_for(lambda: total_records(broker.bootstrap, topic) >= 100, 30, "first lines", procs=(source,))
    write("app.log", 50)
    os.rename(logs / "app.log", logs / "app.log.1")  # rotation: the old file lives on under a new name
    write("app.log", 70)
    wait_for(lambda: total_records(broker.bootstrap, topic) >= 220, 30, "lines after rotation", procs=(source,))
    assert source.stop() == 0, source.tail()
    # While the source is down: more lines, a second rotation, a half-written line.
    write("app.log", 30)
    os.rename(logs / "app.log.1", logs / "app.log.2")
    os.rename(logs / "app.log", logs / "app.log.1")
    write("app.log", 40)
    with open(logs / "app.log", "a") as f:
        f.write("partial-")
    source = strom(broker, *args, log=tmp_path / "taildir.log")
    wait_for(lambda: total_records(broker.bootstrap, topic) >= len(written), 30, "all lines", procs=(source,))
    with open(logs / "app.log", "a") as f:
        f.write("line-end\n")
    written.append("partial-line-end")
    wait_for(lambda: total_records(broker.bootstrap, topic) >= len(written), 30, "the completed line", procs=(source,))
    time.sleep(1)
    assert source.stop() == 0, source.tail()
    got = [v.decode() for v in topic_values(broker.bootstrap, topic)]
    assert sorted(got) == sorted(written), f"{len(got)} records for {len(written)} lines"
    assert len(set(got)) == len(got), "a line arrived twice"


def test_http_ingest_with_keys_and_stdin(broker, tmp_path):
    topic = unique_topic("http")
    create_topic(broker.bootstrap, topic, partitions=1)
    port = __import__("socket").socket()
    port.bind(("127.0.0.1", 0))
    addr = f"127.0.0.1:{port.getsockname()[1]}"
    port.close()
    http = strom(broker, "connect", "source", "http", "--addr", addr, "--topic", topic, "--key-field", "player_id",
                 log=tmp_path / "http.log")

    def post(path: str, body: bytes, content_type: str):
        req = urllib.request.Request(f"http://{addr}{path}", data=body, headers={"Content-Type": content_type})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def up():
        try:
            return post("/", b"[]", "application/json")
        except OSError:
            return None

    wait_for(up, 20, "HTTP ingest up", procs=(http,))
    answer = post("/", json.dumps([{"player_id": "p1", "x": 1}, {"player_id": "p2", "x": 2}]).encode(), "application/json")
    assert answer == {"records": 2}
    assert post("/", b'{"player_id":"p3"}\nplain line\n', "text/plain") == {"records": 2}
    msgs = consume_range(broker.bootstrap, topic, 0, 0, 4)
    assert [m.key() for m in msgs] == [b"p1", b"p2", b"p3", None]
    assert json.loads(msgs[0].value()) == {"player_id": "p1", "x": 1}
    assert http.stop() == 0

    stdin_topic = unique_topic("stdin")
    create_topic(broker.bootstrap, stdin_topic, partitions=1)
    proc = subprocess.run([str(STROM_BIN), "-b", broker.bootstrap, "connect", "source", "stdin",
                           "--topic", stdin_topic, "--key-separator", ":"], input=b"a:1\nb:2\nno-key\n",
                          capture_output=True, timeout=60)
    assert proc.returncode == 0, proc.stderr.decode()
    msgs = consume_range(broker.bootstrap, stdin_topic, 0, 0, 3)
    assert [(m.key(), m.value()) for m in msgs] == [(b"a", b"1"), (b"b", b"2"), (None, b"no-key")]


def test_topic_to_topic_transform_masks_and_filters_real_records(broker, tmp_path):
    source_topic, target = unique_topic("raw"), unique_topic("clean")
    create_topic(broker.bootstrap, source_topic, partitions=2)
    create_topic(broker.bootstrap, target, partitions=1)
    events = [{"type": "trade" if i % 3 else "login", "ip": f"192.168.0.{i}", "email": f"u{i}@x", "i": i} for i in range(90)]
    produce_sync(producer(broker.bootstrap), source_topic, [{"value": json.dumps(e).encode()} for e in events])
    pipeline = tmp_path / "clean.toml"
    pipeline.write_text(f"""
[source]
type = "kafka"
topics = ["{source_topic}"]
group = "cleaner"
[[transform]]
type = "filter"
field = "$.type"
not_equals = "login"
[[transform]]
type = "mask"
fields = ["$.email"]
[[transform]]
type = "hash"
fields = ["$.ip"]
[[transform]]
type = "header"
name = "cleaned-by"
value = "strom-connect"
[sink]
type = "kafka"
topic = "{target}"
""")
    run = strom(broker, "connect", "run", str(pipeline), log=tmp_path / "clean.log")
    trades = [e for e in events if e["type"] == "trade"]
    wait_for(lambda: total_records(broker.bootstrap, target) >= len(trades), 30, "cleaned records", procs=(run,))
    assert run.stop() == 0
    msgs = consume_range(broker.bootstrap, target, 0, 0, len(trades))
    import hashlib
    got = sorted((json.loads(m.value()) for m in msgs), key=lambda e: e["i"])
    assert [e["i"] for e in got] == [e["i"] for e in trades]
    for e in got:
        assert e["email"] == "***" and e["ip"] == hashlib.sha256(f"192.168.0.{e['i']}".encode()).hexdigest()
    assert msgs[0].headers() == [("cleaned-by", b"strom-connect")]

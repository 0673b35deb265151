"""Pipelines embedded in `strom server` ([[connect.pipeline]] in strom.toml): the broker ingests
with no extra process, reports progress on GET /connect, finishes its files and commits on a
clean shutdown, and resumes after a restart without writing a record twice."""

from __future__ import annotations

import json
import urllib.request

from confluent_kafka import Producer

from stromtest import wait_until


def lines_written(root):
    out = []
    for path in sorted(root.rglob("*.jsonl")):
        out += [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return out


def test_embedded_jsonl_pipeline_survives_restart(broker_factory, tmp_path):
    root = tmp_path / "landing"
    config = tmp_path / "embedded.toml"
    config.write_text(f"""
num_partitions = 2

[[connect.pipeline]]
name = "landing"
[connect.pipeline.source]
type = "kafka"
topics = ["events"]
group = "landing"
[connect.pipeline.sink]
type = "jsonl"
root = "{root}"
roll_records = 10
""")
    b = broker_factory(extra_args=["--config", str(config)])
    p = Producer({"bootstrap.servers": b.bootstrap})
    for i in range(50):
        p.produce("events", key=f"k{i}", value=json.dumps({"n": i}))
    p.flush(15)

    def status():
        with urllib.request.urlopen(b.http + "/connect", timeout=5) as resp:
            return json.load(resp)["pipelines"]

    wait_until(lambda: status() and status()[0]["records_out"] >= 40, timeout=30,
               what="the embedded pipeline lands records")
    [landing] = status()
    assert landing["name"] == "landing"

    b.stop()  # SIGTERM: open files are finished and committed before the broker stops
    first = lines_written(root)
    assert len(first) == 50, len(first)

    b.start()
    for i in range(50, 80):
        p.produce("events", key=f"k{i}", value=json.dumps({"n": i}))
    p.flush(15)
    wait_until(lambda: status() and status()[0]["records_in"] >= 30, timeout=30,
               what="the restarted pipeline resumes after its commits")
    b.stop()
    everything = lines_written(root)
    offsets = [(r["partition"], r["offset"]) for r in everything]
    assert len(everything) == 80 and len(set(offsets)) == 80, (len(everything), len(set(offsets)))

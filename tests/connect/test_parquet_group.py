"""Two Parquet sinks in one consumer group share a topic: partitions move between them (one is
killed -9 midway and restarted) and every offset still lands in exactly one finished file."""

from __future__ import annotations

from pathlib import Path

from connectharness import count_rows, parquet_files, read_rows, strom, wait_for
from stromtest import create_topic, produce_sync, producer, unique_topic

BASE_MS = 1_714_557_600_000  # 2024-05-01T10:00:00Z
PARTITIONS = 4


def messages(start: int, count: int) -> list[dict]:
    return [{"value": f"v-{i}".encode(), "key": f"k-{i % 97}".encode(), "timestamp": BASE_MS + i}
            for i in range(start, start + count)]


def temporaries(root: Path, topic: str) -> list[Path]:
    return [p for p in (root / topic).rglob(".*.tmp")]


def test_two_parquet_sinks_in_one_group_write_each_offset_once(broker, tmp_path):
    topic, total, first = unique_topic("pqg"), 9000, 4600
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = producer(broker.bootstrap)
    produce_sync(p, topic, messages(0, first))
    root = tmp_path / "lake"
    # Files roll at 250 records or 5 s, so a killed sink has open files that only its
    # successor may write, and the lake reaches every record while both run.
    args = ["connect", "sink", "parquet", "--topics", topic, "--group", "lake-pair", "--root", str(root),
            "--roll-records", "250", "--roll-secs", "5"]
    a = strom(broker, *args, log=tmp_path / "a.log")
    b = strom(broker, *args, log=tmp_path / "b.log")
    # Both members own partitions: each has started at least one.
    wait_for(lambda: "partition start" in a.log.read_text() and "partition start" in b.log.read_text(), 60,
             "both sinks assigned", procs=(a, b))
    wait_for(lambda: len(parquet_files(root, topic)) >= 8, 60, "first files", procs=(a, b))
    started = b.log.read_text().count("partition start")
    a.kill()  # midway: its open files are lost; b takes its partitions after the session timeout
    wait_for(lambda: b.log.read_text().count("partition start") > started, 60, "the survivor took over",
             procs=(b,))
    produce_sync(p, topic, messages(first, total - first))
    a = strom(broker, *args, log=tmp_path / "a.log")  # rejoins: b hands partitions back, open files and all
    wait_for(lambda: "partition revoked" in b.log.read_text(), 60, "partitions moved back", procs=(a, b))
    wait_for(lambda: count_rows(root, topic) >= total, 120, "every record in a finished file", procs=(a, b))
    assert a.stop() == 0, a.tail()
    assert b.stop() == 0, b.tail()

    rows = read_rows(root, topic)
    seen: dict[tuple[int, int], int] = {}
    for path, row in rows:
        key = (row["partition"], row["offset"])
        assert key not in seen, f"offset twice: {key} (in {path.name})"
        seen[key] = int(row["value"].decode().split("-")[1])
        first_offset, last_offset = map(int, path.stem.split("-")[1:])
        assert path.stem.split("-")[0] == str(row["partition"]) and first_offset <= row["offset"] <= last_offset
    assert len(rows) == total, f"{len(rows)} rows for {total} records"
    assert sorted(seen.values()) == list(range(total)), "values differ from what was produced"
    for partition in range(PARTITIONS):
        offsets = sorted(o for (p_, o) in seen if p_ == partition)
        assert offsets == list(range(len(offsets))), f"partition {partition} has gaps"
    assert not temporaries(root, topic), temporaries(root, topic)

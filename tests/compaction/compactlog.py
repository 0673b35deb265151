"""What a compacted partition may and must hold, given everything that was produced to it."""

from __future__ import annotations

import time

from stromtest import consume_range


class Expected:
    """Every record produced to one partition, by offset, and the latest offset of each key."""

    def __init__(self):
        self.by_offset: dict[int, tuple[bytes, bytes | None, float]] = {}  # offset -> (key, value, sent at: before the produce call)
        self.latest: dict[bytes, int] = {}

    def add(self, offset: int, key: bytes, value: bytes | None, sent_at: float) -> None:
        assert offset not in self.by_offset, f"offset {offset} acknowledged twice"
        self.by_offset[offset] = (key, value, sent_at)
        if offset > self.latest.get(key, -1):
            self.latest[key] = offset

    @property
    def end(self) -> int:
        return max(self.by_offset) + 1 if self.by_offset else 0

    def live_latest(self) -> dict[bytes, int]:
        """Key -> offset of its latest record, for keys whose latest record is not a tombstone."""
        return {k: o for k, o in self.latest.items() if self.by_offset[o][1] is not None}

    def tombstones(self) -> dict[bytes, int]:
        return {k: o for k, o in self.latest.items() if self.by_offset[o][1] is None}

    def fully_compacted(self, with_tombstones: bool) -> list[int]:
        """The offsets a fully cleaned log holds (tombstones kept or not)."""
        keep = self.live_latest()
        if with_tombstones:
            keep = self.latest
        return sorted(keep.values())


def read_all(bootstrap: str, topic: str, partition: int) -> list[tuple[int, bytes, bytes | None]]:
    msgs = consume_range(bootstrap, topic, partition, 0, timeout=60)
    return [(m.offset(), m.key(), m.value()) for m in msgs]


def check_invariants(records: list[tuple[int, bytes, bytes | None]], exp: Expected, delete_retention_ms: int,
                     read_done: float, what: str) -> None:
    """What must hold at any moment, cleaned or not:
    - offsets strictly increase and every record is exactly the one produced at that offset;
    - the latest record of every live key is there;
    - a tombstone that is the latest record of its key is there until delete.retention.ms after it
      was written (it can only go once a clean set its horizon, which is later than the write)."""
    offsets = [o for o, _, _ in records]
    assert offsets == sorted(set(offsets)), f"{what}: offsets not strictly increasing"
    wrong = [(o, k, v, exp.by_offset.get(o)) for o, k, v in records
             if o not in exp.by_offset or exp.by_offset[o][:2] != (k, v)]
    assert not wrong, f"{what}: records that differ from what was produced at their offset: {wrong[:5]}"
    present = set(offsets)
    lost = sorted((k, o) for k, o in exp.live_latest().items() if o not in present)
    assert not lost, f"{what}: the latest value of {len(lost)} keys is missing, e.g. {lost[:5]}"
    early = sorted((k, o) for k, o in exp.tombstones().items()
                   if o not in present and read_done < exp.by_offset[o][2] + delete_retention_ms / 1000)
    assert not early, f"{what}: tombstones gone before delete.retention.ms: {early[:5]}"


def wait_for_offsets(bootstrap: str, topic: str, partition: int, exp: Expected, want: list[int],
                     delete_retention_ms: int, timeout: float, what: str):
    """Reads from offset 0 until exactly the offsets `want` are left, checking the invariants on
    every read. Returns (records, seconds waited)."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        records = read_all(bootstrap, topic, partition)
        now = time.monotonic()
        check_invariants(records, exp, delete_retention_ms, now, what)
        got = [o for o, _, _ in records]
        if got == want:
            return records, now - start
        if now > deadline:
            extra = sorted(set(got) - set(want))
            missing = sorted(set(want) - set(got))
            raise AssertionError(f"{what}: after {timeout}s the log still holds {len(got)} records, want "
                                 f"{len(want)}; extra offsets {extra[:10]}, missing {missing[:10]}")
        time.sleep(0.2)

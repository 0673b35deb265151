"""Load payloads and the exactly-once check shared by the idempotent-producer tests."""

from __future__ import annotations

from collections import Counter

from stromtest import consume_range

KEYS = 37


def payload(client: str, n: int) -> tuple[bytes, bytes]:
    """(key, value) of message n: unique id in the value, the key cycles over KEYS."""
    return f"key-{n % KEYS:03d}".encode(), f"{client}-{n:07d}".encode()


def seq_of(value: bytes) -> int:
    return int(value.rsplit(b"-", 1)[1])


def read_log(bootstrap: str, topic: str, partitions: int) -> dict[int, list[tuple[int, bytes, bytes]]]:
    """Every record of every partition from offset 0, by assign(): {partition: [(offset, key, value)]}."""
    out = {}
    for p in range(partitions):
        msgs = consume_range(bootstrap, topic, p, 0, timeout=60)
        out[p] = [(m.offset(), m.key(), m.value()) for m in msgs]
    return out


def check_exactly_once(log, client: str, sent: int, acked: dict[bytes, tuple[int, int]] | None):
    """Every one of messages 0..sent-1 once, per-partition production order, reported offsets right."""
    values = Counter(v for recs in log.values() for _, _, v in recs)
    duplicates = sorted((v, c) for v, c in values.items() if c > 1)
    expected = {payload(client, n)[1] for n in range(sent)}
    missing = sorted(expected - set(values))
    unexpected = sorted(set(values) - expected)
    assert not duplicates, f"{len(duplicates)} messages written more than once, e.g. {duplicates[:5]}"
    assert not missing, f"{len(missing)} of {sent} messages missing, e.g. {missing[:5]}"
    assert not unexpected, f"records nobody produced: {unexpected[:5]}"
    for p, recs in log.items():
        assert [o for o, _, _ in recs] == list(range(len(recs))), f"partition {p}: offsets not 0..n-1"
        seqs = [seq_of(v) for _, _, v in recs]
        out_of_order = [(a, b) for a, b in zip(seqs, seqs[1:]) if b < a]
        assert not out_of_order, f"partition {p}: production order broken at {out_of_order[:5]}"
        for _, k, v in recs:
            assert k == payload(client, seq_of(v))[0], f"partition {p}: key {k!r} for {v!r}"
    if acked is not None:
        where = {v: (p, o) for p, recs in log.items() for o, _, v in recs}
        wrong = [(v, acked[v], where[v]) for v in sorted(acked) if acked[v] != where[v]]
        assert not wrong, f"{len(wrong)} delivery reports name another offset than the log, e.g. {wrong[:5]}"
        assert len(acked) == sent

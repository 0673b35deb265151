"""Idempotent producers on a compacted topic: cleaning must not make the broker forget them.

Kafka's cleaner keeps the last batch of every producer (as an empty batch header when all its
records are superseded) so that the producer state can be rebuilt from the log. Here two raw
idempotent producers write to a compacted topic with four keys, the log is cleaned down to four
records, the broker is SIGKILLed and restarted, and then: a replay of each producer's last batch
is still a duplicate answered with its original offset, and each producer's next sequence is
accepted (not OUT_OF_ORDER_SEQUENCE_NUMBER or UNKNOWN_PRODUCER_ID).
"""

from __future__ import annotations

import pytest

import idemwire as w
from compactlog import read_all
from stromtest import create_topic, unique_topic, wait_until, watermarks


@pytest.mark.parametrize("snapshots", ["kept", "deleted"])
def test_idempotent_producer_state_survives_cleaning_and_sigkill(compacting_broker, snapshots):
    """`deleted`: the producer state snapshots are removed while the broker is down, so the state
    can only come back from the cleaned log itself (the retained last batch of each producer)."""
    broker = compacting_broker()
    topic = unique_topic("compact-idem")
    create_topic(broker.bootstrap, topic, partitions=1, config={
        "cleanup.policy": "compact", "segment.bytes": 1024, "segment.ms": 1000,
        "min.cleanable.dirty.ratio": 0.01})
    with w.Client(broker.bootstrap) as c:
        _, pid_a, _ = c.init_producer_id()
        _, pid_b, _ = c.init_producer_id()
        # Producer b writes once, early; everything it wrote is superseded by producer a later.
        b_batch = w.idempotent_batch(pid_b, 0, 0, 2, "b", key_mod=4)
        resp = c.produce(topic, 0, b_batch)
        assert (resp["error"], resp["base_offset"]) == (w.NONE, 0), resp
        offset = 2
        a_batches = []
        for i in range(40):
            batch = w.idempotent_batch(pid_a, 0, i * 5, 5, "a", key_mod=4)
            resp = c.produce(topic, 0, batch)
            assert (resp["error"], resp["base_offset"]) == (w.NONE, offset), (i, resp)
            a_batches.append((batch, offset))
            offset += 5
    end = offset

    # Cleaned down to the four latest records (all from producer a's last batch)...
    def cleaned():
        recs = read_all(broker.bootstrap, topic, 0)
        return recs if len(recs) == 4 else None
    recs = wait_until(cleaned, timeout=30, interval=0.2, what="the log cleaned to 4 records")
    # Producer a's record with sequence s is at offset 2 + s with key k{s % 4}.
    assert [(o, k) for o, k, _ in recs] == [(2 + s, f"k{s % 4}".encode()) for s in range(196, 200)]
    assert watermarks(broker.bootstrap, topic) == (0, end)

    broker.kill()
    if snapshots == "deleted":
        snaps = list(broker.partition_dir(topic, 0).glob("*.snapshot"))
        for f in snaps:
            f.unlink()
        print(f"deleted {[f.name for f in snaps]}")
    broker.start()
    assert watermarks(broker.bootstrap, topic) == (0, end)
    with w.Client(broker.bootstrap) as c:
        last_a, last_a_offset = a_batches[-1]
        resp = c.produce(topic, 0, last_a)
        assert (resp["error"], resp["base_offset"]) == (w.NONE, last_a_offset), \
            f"replay of producer a's last batch after cleaning + SIGKILL: {resp}"
        resp = c.produce(topic, 0, b_batch)
        assert (resp["error"], resp["base_offset"]) == (w.NONE, 0), \
            f"replay of producer b's only (cleaned-away) batch after cleaning + SIGKILL: {resp}"
        assert watermarks(broker.bootstrap, topic) == (0, end)
        resp = c.produce(topic, 0, w.idempotent_batch(pid_a, 0, 200, 1, "a", key_mod=4))
        assert (resp["error"], resp["base_offset"]) == (w.NONE, end), f"producer a's next sequence: {resp}"
        resp = c.produce(topic, 0, w.idempotent_batch(pid_b, 0, 2, 1, "b", key_mod=4))
        assert (resp["error"], resp["base_offset"]) == (w.NONE, end + 1), f"producer b's next sequence: {resp}"

"""Idempotent produce checked with raw frames (issue 7): InitProducerId, duplicates answered with the
original offset and nothing appended, sequence gaps, stale epochs, unknown producers, KIP-360 epoch
bumps, and the producer state surviving a SIGKILL and a clean restart."""

from __future__ import annotations

import pytest

import idemwire as w
from idemwire import Client, fetch_all, high_watermark, idempotent_batch, parse_batch_header, record_batch
from stromtest import create_topic, unique_topic


def assert_ok(resp: dict, base_offset: int, what: str):
    assert (resp["error"], resp["base_offset"]) == (w.NONE, base_offset), f"{what}: {resp}"


def assert_err(resp: dict, code: int, what: str):
    assert resp["error"] == code and resp["base_offset"] == -1, f"{what}: expected error {code}, got {resp}"


def stored_batches(bootstrap, topic, partition=0) -> list[bytes]:
    _, batches = fetch_all(bootstrap, topic, partition)
    return batches


def test_idempotent_produce_protocol(broker):
    topic = unique_topic("idem-wire")
    create_topic(broker.bootstrap, topic, partitions=1)
    with Client(broker.bootstrap) as c:
        # InitProducerId without a transactional id: a new id at epoch 0; a second call, another id.
        err, pid, epoch = c.init_producer_id()
        assert (err, epoch) == (w.NONE, 0) and pid >= 0, (err, pid, epoch)
        err2, pid2, epoch2 = c.init_producer_id()
        assert (err2, epoch2) == (w.NONE, 0) and pid2 >= 0 and pid2 != pid, (pid, pid2, epoch2)

        # Three plain records first, so the idempotent batch does not start at offset 0.
        plain = record_batch([(b"p0", b"plain-0"), (b"p1", b"plain-1"), (b"p2", b"plain-2")])
        assert_ok(c.produce(topic, 0, plain), 0, "plain batch")

        b0 = idempotent_batch(pid, 0, 0, 5, "a")       # sequences 0..4
        assert_ok(c.produce(topic, 0, b0), 3, "first idempotent batch")
        assert high_watermark(broker.bootstrap, topic, 0) == 8

        # Replay: the original base offset, nothing appended.
        assert_ok(c.produce(topic, 0, b0), 3, "replayed batch")
        assert high_watermark(broker.bootstrap, topic, 0) == 8

        b1 = idempotent_batch(pid, 0, 5, 4, "a")       # 5..8
        assert_ok(c.produce(topic, 0, b1), 8, "second idempotent batch")
        # Both still among the last five batches of the producer: both replays are duplicates.
        assert_ok(c.produce(topic, 0, b0), 3, "replay of the older batch")
        assert_ok(c.produce(topic, 0, b1), 8, "replay of the newer batch")
        assert high_watermark(broker.bootstrap, topic, 0) == 12

        # A gap (expected 9) and an overlap that is not an exact duplicate: OUT_OF_ORDER_SEQUENCE_NUMBER.
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 0, 11, 2, "gap")), w.OUT_OF_ORDER_SEQUENCE_NUMBER,
                   "sequence gap 9 -> 11")
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 0, 7, 3, "overlap")),
                   w.OUT_OF_ORDER_SEQUENCE_NUMBER, "overlapping sequences 7..9")
        assert high_watermark(broker.bootstrap, topic, 0) == 12

        # A producer id this partition never saw, starting at sequence 5: UNKNOWN_PRODUCER_ID.
        assert_err(c.produce(topic, 0, idempotent_batch(pid2, 0, 5, 2, "unknown")), w.UNKNOWN_PRODUCER_ID,
                   "unknown producer at sequence 5")
        # ...and the same producer starting at 0 is accepted.
        assert_ok(c.produce(topic, 0, idempotent_batch(pid2, 0, 0, 2, "second-producer")), 12,
                  "second producer at sequence 0")

        # KIP-360 bump: the current id and epoch give the same id at epoch 1.
        err, bpid, bepoch = c.init_producer_id(pid, 0)
        assert (err, bpid, bepoch) == (w.NONE, pid, 1), (err, bpid, bepoch)
        # The new epoch must restart at sequence 0.
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 1, 9, 2, "e1-continue")),
                   w.OUT_OF_ORDER_SEQUENCE_NUMBER, "new epoch continuing the old sequence")
        e1 = idempotent_batch(pid, 1, 0, 3, "e1")
        assert_ok(c.produce(topic, 0, e1), 14, "epoch 1 at sequence 0")
        assert_ok(c.produce(topic, 0, e1), 14, "epoch 1 replay")
        # The old epoch is fenced now, for a new sequence and for a replay of an old batch alike.
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 0, 9, 2, "stale")), w.INVALID_PRODUCER_EPOCH,
                   "epoch 0 after epoch 1 was written")
        assert_err(c.produce(topic, 0, b1), w.INVALID_PRODUCER_EPOCH, "epoch 0 replay after the bump")
        assert_ok(c.produce(topic, 0, idempotent_batch(pid, 1, 3, 1, "e1")), 17, "epoch 1 continues")
        # A second bump: epoch 2.
        assert c.init_producer_id(pid, 1) == (w.NONE, pid, 2)
        assert high_watermark(broker.bootstrap, topic, 0) == 18

    # The log holds exactly the accepted batches, in order, byte for byte as sent (only the base
    # offset and the partition leader epoch are the broker's).
    batches = stored_batches(broker.bootstrap, topic)
    heads = [parse_batch_header(b) for b in batches]
    assert [(h["base_offset"], h["producer_id"], h["producer_epoch"], h["base_sequence"], h["record_count"])
            for h in heads] == [
        (0, -1, -1, -1, 3), (3, pid, 0, 0, 5), (8, pid, 0, 5, 4), (12, pid2, 0, 0, 2),
        (14, pid, 1, 0, 3), (17, pid, 1, 3, 1)]
    for sent, stored, base in [(b0, batches[1], 3), (b1, batches[2], 8), (e1, batches[4], 14)]:
        assert stored[:8] == base.to_bytes(8, "big") and stored[8:12] == sent[8:12] and stored[16:] == sent[16:], \
            f"batch at {base} differs from what was sent"


def test_producer_id_mismatches_and_transactional_id(broker):
    topic = unique_topic("idem-wire-misc")
    create_topic(broker.bootstrap, topic, partitions=1)
    with Client(broker.bootstrap) as c:
        err, pid, epoch = c.init_producer_id()
        assert err == w.NONE
        # A negative base sequence from a producer id is not a valid idempotent batch.
        bad = record_batch([(b"k", b"v")], pid, 0, -1)
        assert_err(c.produce(topic, 0, bad), w.INVALID_RECORD, "producer id with base sequence -1")
        assert high_watermark(broker.bootstrap, topic, 0) == 0
        # Same sequence range as an appended batch but different content is still a duplicate
        # (Kafka compares producer id, epoch and sequences, not bytes).
        first = idempotent_batch(pid, 0, 0, 2, "x")
        assert_ok(c.produce(topic, 0, first), 0, "first batch")
        assert_ok(c.produce(topic, 0, idempotent_batch(pid, 0, 0, 2, "different-content")), 0,
                  "same sequences, other bytes")
        assert high_watermark(broker.bootstrap, topic, 0) == 2
        # Two partitions keep separate state: partition state of another topic does not leak.
        other = unique_topic("idem-wire-other")
        create_topic(broker.bootstrap, other, partitions=1)
        assert_err(c.produce(other, 0, idempotent_batch(pid, 0, 2, 1, "x")), w.UNKNOWN_PRODUCER_ID,
                   "sequence 2 in a partition that never saw the producer")
        assert_ok(c.produce(other, 0, idempotent_batch(pid, 0, 0, 1, "x")), 0, "sequence 0 there")


@pytest.mark.parametrize("how", ["sigkill", "clean"])
def test_producer_state_survives_restart(broker, how):
    """Duplicates are still answered with their original offsets after a restart, and the
    sequence/epoch checks still hold: the state comes back from snapshots and the log tail."""
    topic = unique_topic(f"idem-restart-{how}")
    # Small segments so that snapshots are written at rolls and the tail replay starts mid-log.
    create_topic(broker.bootstrap, topic, partitions=1, config={"segment.bytes": 1024})
    with Client(broker.bootstrap) as c:
        err, pid, _ = c.init_producer_id()
        err2, pid_b, _ = c.init_producer_id()
        assert err == err2 == w.NONE
        sent = []
        offset = 0
        for i in range(30):
            b = idempotent_batch(pid, 0, i * 3, 3, "r")
            assert_ok(c.produce(topic, 0, b), offset, f"batch {i}")
            sent.append((b, offset))
            offset += 3
        # A second producer whose only batch is far back in the log (not in the tail).
        pb = idempotent_batch(pid_b, 0, 0, 2, "old-producer")
        assert_ok(c.produce(topic, 0, pb), offset, "producer b")
        pb_offset = offset
        offset += 2
        for i in range(30, 40):
            b = idempotent_batch(pid, 0, i * 3, 3, "r")
            assert_ok(c.produce(topic, 0, b), offset, f"batch {i}")
            sent.append((b, offset))
            offset += 3
    segments = sorted(broker.partition_dir(topic, 0).glob("*.log"))
    assert len(segments) > 3, f"segments did not roll: {segments}"

    if how == "sigkill":
        broker.kill()
        broker.start()
    else:
        assert broker.stop() == 0
        broker.start()
    assert high_watermark(broker.bootstrap, topic, 0) == offset

    with Client(broker.bootstrap) as c:
        # The last five batches of the producer are duplicates with their original offsets.
        for b, off in sent[-5:]:
            assert_ok(c.produce(topic, 0, b), off, f"replay after {how} of the batch at {off}")
        assert_ok(c.produce(topic, 0, pb), pb_offset, f"replay after {how} of producer b's batch")
        assert high_watermark(broker.bootstrap, topic, 0) == offset
        # A gap is still a gap, and the next sequence continues.
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 0, 121, 1, "r")), w.OUT_OF_ORDER_SEQUENCE_NUMBER,
                   f"gap after {how}")
        assert_ok(c.produce(topic, 0, idempotent_batch(pid, 0, 120, 2, "r")), offset, f"next after {how}")
        assert_ok(c.produce(topic, 0, idempotent_batch(pid_b, 0, 2, 1, "old-producer")), offset + 2,
                  f"producer b continues after {how}")
        # Producer ids are never handed out twice, across restarts too.
        err, pid_new, epoch = c.init_producer_id()
        assert err == w.NONE and epoch == 0 and pid_new not in (pid, pid_b), (pid, pid_b, pid_new)
        # The epoch of the producer is remembered: a bump then a stale epoch is fenced.
        assert c.init_producer_id(pid, 0) == (w.NONE, pid, 1)
        assert_ok(c.produce(topic, 0, idempotent_batch(pid, 1, 0, 1, "r")), offset + 3, "epoch 1")
    broker.kill()
    broker.start()
    with Client(broker.bootstrap) as c:
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 0, 122, 1, "r")), w.INVALID_PRODUCER_EPOCH,
                   "epoch 0 after epoch 1, after another SIGKILL")
        assert_ok(c.produce(topic, 0, idempotent_batch(pid, 1, 0, 1, "r")), offset + 3, "epoch 1 replay")

"""Idempotent produce checked with raw frames (issue 7): InitProducerId, duplicates answered with the
original offset and nothing appended, sequence gaps, stale epochs, unknown producers, KIP-360 epoch
bumps, and the producer state surviving a SIGKILL and a clean restart."""

from __future__ import annotations

import time

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

        # Only the last five batches are remembered: a replay of an older one is out of sequence
        # (as in Kafka), a replay of the fifth-last is still a duplicate.
        recent = []
        for i in range(6):
            b = idempotent_batch(pid, 2, i * 2, 2, "e2")
            assert_ok(c.produce(topic, 0, b), 18 + 2 * i, f"epoch 2 batch {i}")
            recent.append(b)
        assert_err(c.produce(topic, 0, recent[0]), w.OUT_OF_ORDER_SEQUENCE_NUMBER, "replay of the sixth-last batch")
        assert_ok(c.produce(topic, 0, recent[1]), 20, "replay of the fifth-last batch")
        assert high_watermark(broker.bootstrap, topic, 0) == 30

    # The log holds exactly the accepted batches, in order, byte for byte as sent (only the base
    # offset and the partition leader epoch are the broker's).
    batches = stored_batches(broker.bootstrap, topic)
    heads = [parse_batch_header(b) for b in batches]
    assert [(h["base_offset"], h["producer_id"], h["producer_epoch"], h["base_sequence"], h["record_count"])
            for h in heads] == [
        (0, -1, -1, -1, 3), (3, pid, 0, 0, 5), (8, pid, 0, 5, 4), (12, pid2, 0, 0, 2),
        (14, pid, 1, 0, 3), (17, pid, 1, 3, 1)] + [(18 + 2 * i, pid, 2, 2 * i, 2) for i in range(6)]
    for sent, stored, base in [(b0, batches[1], 3), (b1, batches[2], 8), (e1, batches[4], 14)]:
        assert stored[:8] == base.to_bytes(8, "big") and stored[8:12] == sent[8:12] and stored[16:] == sent[16:], \
            f"batch at {base} differs from what was sent"


def test_producer_id_mismatches_and_transactional_id(broker):
    topic = unique_topic("idem-wire-misc")
    create_topic(broker.bootstrap, topic, partitions=1)
    with Client(broker.bootstrap) as c:
        err, pid, epoch = c.init_producer_id()
        assert err == w.NONE
        # Transactions are not implemented: a transactional id is refused, no id handed out.
        terr, tpid, tepoch = c.init_producer_id(transactional_id="txn-1")
        assert terr != w.NONE and (tpid, tepoch) == (-1, -1), (terr, tpid, tepoch)
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


def test_expired_producer_state_gives_unknown_producer_id(broker_factory):
    """Producer state expires `producer.id.expiration.ms` (24 h) after the producer's last batch
    timestamp, as in Kafka. A batch stamped 25 h ago makes it expire at the next check (every
    200 ms here); the producer continuing its sequence then gets UNKNOWN_PRODUCER_ID."""
    broker = broker_factory(config={"log_retention_check_interval_ms": 200})
    topic = unique_topic("idem-expire")
    create_topic(broker.bootstrap, topic, partitions=1)
    long_ago = int(time.time() * 1000) - 25 * 3600 * 1000
    with Client(broker.bootstrap) as c:
        _, pid, _ = c.init_producer_id()
        _, fresh, _ = c.init_producer_id()
        old = idempotent_batch(pid, 0, 0, 2, "old", base_timestamp=long_ago)
        assert_ok(c.produce(topic, 0, old), 0, "batch stamped 25 h ago")
        assert_ok(c.produce(topic, 0, idempotent_batch(fresh, 0, 0, 2, "fresh")), 2, "fresh producer")
        time.sleep(1.0)  # a few expiry checks
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 0, 2, 1, "old")), w.UNKNOWN_PRODUCER_ID,
                   "sequence 2 after the producer's state expired")
        # A producer with recent batches is kept.
        assert_ok(c.produce(topic, 0, idempotent_batch(fresh, 0, 2, 1, "fresh")), 4, "recent producer continues")
    # The expiry holds across a restart too (the state rebuilt from the log expires again).
    broker.kill()
    broker.start()
    time.sleep(1.0)
    with Client(broker.bootstrap) as c:
        assert_err(c.produce(topic, 0, idempotent_batch(pid, 0, 2, 1, "old")), w.UNKNOWN_PRODUCER_ID,
                   "sequence 2 after expiry and a restart")
        assert_ok(c.produce(topic, 0, idempotent_batch(fresh, 0, 3, 1, "fresh")), 5, "recent producer after restart")


def test_epoch_bump_never_makes_two_producers_share_an_id(broker):
    """KIP-360 bump for idempotent producers: whatever InitProducerId answers to (id, epoch), two
    producers must never end up with the same producer id. (Kafka ignores the id of a
    non-transactional InitProducerId and always allocates a new one.) Here a client presents an id
    the broker has not handed out yet, as a client that kept its id across a broker whose data
    directory was replaced would; then a new producer asks for an id.

    Why it matters (raw repro on a fresh broker): B: InitProducerId() -> (0, 0); A: InitProducerId(1, 0)
    -> (1, 1); C: InitProducerId() -> (1, 0); C bumps: InitProducerId(1, 0) -> (1, 1). A produces
    pid 1 / epoch 1 / sequences 0..4 -> offset 0; C produces its own five records with pid 1 / epoch 1 /
    sequences 0..4 -> error 0, base offset 0, and nothing is appended (log end stays 5): C's records
    are acknowledged and lost."""
    topic = unique_topic("idem-bump-unissued")
    create_topic(broker.bootstrap, topic, partitions=1)
    with Client(broker.bootstrap) as c:
        err, first, _ = c.init_producer_id()
        assert err == w.NONE
        presented = first + 1  # the id the allocator hands out next
        err, bumped_pid, bumped_epoch = c.init_producer_id(presented, 0)
        assert err != w.NONE or bumped_pid >= 0
        err, newcomer, epoch = c.init_producer_id()
        assert (err, epoch) == (w.NONE, 0)
        holders = {first: "first producer"}
        if bumped_pid >= 0:
            holders.setdefault(bumped_pid, "bumped client")
        assert newcomer not in holders, (
            f"InitProducerId(id={presented}, epoch=0) answered ({bumped_pid}, {bumped_epoch}); a new producer "
            f"then got id {newcomer}, already held by the {holders.get(newcomer)}")

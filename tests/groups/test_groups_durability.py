"""Committed offsets and group metadata live in `__consumer_offsets` and survive a SIGKILL of the broker:
after a restart every committed offset (with its metadata) is there, deleted groups stay deleted, and a
consumer that rejoins the group reads from exactly the committed offsets."""

from __future__ import annotations

import time

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

from stromtest import admin, consumer, create_topic, producer, produce_sync, unique_topic, wait_until


class _Consumer:
    """stromtest.consumer plus `early`: what the polls that completed the join returned."""

    def __init__(self, bootstrap, **conf):
        self.c = consumer(bootstrap, **conf)
        self.early = []

    def __getattr__(self, name):
        return getattr(self.c, name)


def group_member(bootstrap, group, topics, reset="latest", **conf):
    """A confluent-kafka consumer that has joined `group` (has an assignment)."""
    c = _Consumer(bootstrap, **{"group.id": group, "auto.offset.reset": reset, "session.timeout.ms": 6000,
                               "heartbeat.interval.ms": 500, "enable.partition.eof": False, **conf})
    c.subscribe(topics)
    deadline = time.monotonic() + 30
    while not c.assignment():
        assert time.monotonic() < deadline, "no assignment within 30 s"
        m = c.poll(0.2)
        if m is not None:
            assert m.error() is None, m.error()
            c.early.append(m)
    return c


def group_offsets(a, group, tps):
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(t, p) for t, p in tps])
    res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(15)
    return {(tp.topic, tp.partition): (tp.offset, tp.metadata) for tp in res.topic_partitions}


def first_offsets(c, want: set, timeout=30.0) -> dict:
    """Poll `c` until a message of every (topic, partition) in `want` came; the first offset of each."""
    first = {}
    for m in c.early:
        first.setdefault((m.topic(), m.partition()), m.offset())
    deadline = time.monotonic() + timeout
    while set(first) != want:
        assert time.monotonic() < deadline, f"first messages of {want - set(first)} not read; got {first}"
        m = c.poll(0.2)
        if m is None:
            continue
        assert m.error() is None, m.error()
        first.setdefault((m.topic(), m.partition()), m.offset())
    return first


def test_committed_offsets_survive_sigkill(gbroker):
    b = gbroker.bootstrap
    t1, t2 = unique_topic("dur-a"), unique_topic("dur-b")
    create_topic(b, t1, partitions=3)
    create_topic(b, t2, partitions=2)
    p = producer(b)
    for t, n in ((t1, 3), (t2, 2)):
        produce_sync(p, t, [{"value": f"{t}-{i}".encode(), "partition": i % n} for i in range(100 * n)])

    # Groups whose ids hash to different __consumer_offsets partitions (and one to the same as another).
    g_empty, g_live, g_deleted = "dur-empty-" + t1, "dur-live-" + t1, "dur-deleted-" + t1
    a = admin(b)

    # g_empty: many commits per partition (the last one counts), then the member leaves: group Empty.
    targets = {(t1, 0): 17, (t1, 1): 42, (t1, 2): 99, (t2, 0): 0, (t2, 1): 100}
    c = group_member(b, g_empty, [t1, t2])
    wait_until(lambda: len(c.assignment()) == 5, 15, what="all 5 partitions assigned")
    for step in range(1, 21):
        c.commit(offsets=[TopicPartition(t, pp, o * step // 20, metadata=f"step{step}-{t}-{pp}")
                          for (t, pp), o in targets.items()], asynchronous=False)
    c.close()
    want_empty = {k: (o, f"step20-{k[0]}-{k[1]}") for k, o in targets.items()}
    assert group_offsets(a, g_empty, targets) == want_empty

    # g_live: its member is still in the (Stable) group when the broker dies.
    live_targets = {(t1, 0): 5, (t1, 1): 6, (t1, 2): 7}
    live = group_member(b, g_live, [t1])
    live.commit(offsets=[TopicPartition(t, pp, o) for (t, pp), o in live_targets.items()], asynchronous=False)

    # g_deleted: committed, emptied, deleted: must stay deleted.
    c = group_member(b, g_deleted, [t2])
    c.commit(offsets=[TopicPartition(t2, 0, 3), TopicPartition(t2, 1, 4)], asynchronous=False)
    c.close()
    [fut] = a.delete_consumer_groups([g_deleted], request_timeout=15).values()
    fut.result(15)

    gbroker.restart(kill=True)
    a = admin(b)

    assert group_offsets(a, g_empty, targets) == want_empty
    assert group_offsets(a, g_live, live_targets) == {k: (o, None) for k, o in live_targets.items()}
    gone = group_offsets(a, g_deleted, [(t2, 0), (t2, 1)])
    assert gone == {(t2, 0): (-1001, None), (t2, 1): (-1001, None)}, gone
    listed = {g.group_id for g in a.list_consumer_groups(request_timeout=15).result(15).valid}
    assert {g_empty, g_live} <= listed and g_deleted not in listed, listed
    live.close()

    # A consumer that rejoins g_empty starts exactly at the committed offsets (auto.offset.reset=error
    # would fail loudly if any were missing). (t2, 1) is committed at its end: nothing to read there.
    c = group_member(b, g_empty, [t1, t2], reset="error")
    got = first_offsets(c, {k for k, o in targets.items() if o < 100})
    assert got == {k: o for k, o in targets.items() if o < 100}, got

    # Commit again through this member, kill again: the newest commits win after the second restart.
    new_targets = {(t1, 0): 30, (t1, 1): 50, (t1, 2): 100, (t2, 0): 60, (t2, 1): 100}
    c.commit(offsets=[TopicPartition(t, pp, o, metadata="second") for (t, pp), o in new_targets.items()],
             asynchronous=False)
    c.close()
    gbroker.restart(kill=True)
    a = admin(b)
    assert group_offsets(a, g_empty, new_targets) == {k: (o, "second") for k, o in new_targets.items()}
    c = group_member(b, g_empty, [t1, t2], reset="error")
    got = first_offsets(c, {k for k, o in new_targets.items() if o < 100})
    assert got == {k: o for k, o in new_targets.items() if o < 100}, got
    c.close()

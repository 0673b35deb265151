"""Offset retention (`offsets.retention.minutes`): committed offsets of an EMPTY group expire and
the group is forgotten; offsets of a group with members do not expire. Also FindCoordinator for
both key types (group and transaction)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from stromtest import admin, create_topic, unique_topic, wait_until
import kwire


def committed(bootstrap: str, group: str, topic: str) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        [tp] = c.committed([TopicPartition(topic, 0)], timeout=10)
        return tp.offset
    finally:
        c.close()


def test_offsets_of_empty_groups_expire(broker_factory):
    # Retention 0 minutes: offsets expire at the first check after the group is empty.
    b = broker_factory(config={"offsets_retention_minutes": 0,
                               "offsets_retention_check_interval_ms": 1000,
                               "group_initial_rebalance_delay_ms": 100})
    topic = unique_topic("oret")
    create_topic(b.bootstrap, topic, partitions=1)

    # A standalone (empty) group's commit expires.
    idle = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "idle-group", "enable.auto.commit": False})
    idle.commit(offsets=[TopicPartition(topic, 0, 7)], asynchronous=False)
    idle.close()
    wait_until(lambda: committed(b.bootstrap, "idle-group", topic) < 0, timeout=15,
               what="empty group's offsets expired")
    groups = {g.group_id for g in admin(b.bootstrap).list_consumer_groups(request_timeout=10).result(10).valid}
    assert "idle-group" not in groups

    # A group with an active member keeps its offsets past the retention check.
    live = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "live-group", "enable.auto.commit": False,
                     "session.timeout.ms": 10000, "heartbeat.interval.ms": 500})
    live.subscribe([topic])
    deadline = time.monotonic() + 15
    while not live.assignment() and time.monotonic() < deadline:
        live.poll(0.2)
    assert live.assignment(), "member got its partition"
    live.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
    for _ in range(15):  # 3 s: at least two retention checks
        live.poll(0.2)
    [tp] = live.committed([TopicPartition(topic, 0)], timeout=10)
    assert tp.offset == 3
    live.close()


def test_find_coordinator_for_groups_and_transactions(broker):
    """FindCoordinator v1 (key, key type) answers this node for a group and a transactional id;
    an unknown key type is INVALID_REQUEST."""
    api_find_coordinator = 10
    with kwire.Conn.to(broker.bootstrap) as c:
        for correlation_id, (key_type, want) in enumerate([(0, kwire.NONE), (1, kwire.NONE),
                                                           (7, kwire.INVALID_REQUEST)], start=1):
            c.send(kwire.header_v1(api_find_coordinator, 1, correlation_id)
                   + kwire.string("some-key") + kwire.i8(key_type))
            r = kwire.Reader(c.recv_frame())
            assert r.i32() == correlation_id
            r.i32()  # throttle
            err = r.i16()
            r.string()  # error message
            node, host, port = r.i32(), r.string(), r.i32()
            assert err == want, (key_type, err)
            if want == kwire.NONE:
                assert (node, host, port) == (0, "127.0.0.1", broker.kafka_port)

"""Group administration through confluent-kafka's AdminClient (ListGroups with a state filter,
DescribeGroups via librdkafka's ConsumerGroupDescribe-then-DescribeGroups fallback, OffsetFetch,
OffsetCommit as admin, DeleteGroups) and kafka-python's KafkaAdminClient for OffsetDelete
(confluent-kafka 2.16.1 has no Python binding for DeleteConsumerGroupOffsets)."""

from __future__ import annotations

import kafka
import kafka.errors as kerr
import pytest
from confluent_kafka import (ConsumerGroupState, ConsumerGroupTopicPartitions, ConsumerGroupType, KafkaError,
                             KafkaException, TopicPartition)

from stromtest import admin, consumer, create_topic, producer, produce_sync, unique_topic, wait_until


def join(bootstrap, group, topics, client_id):
    c = consumer(bootstrap, **{"group.id": group, "client.id": client_id, "auto.offset.reset": "latest",
                               "session.timeout.ms": 6000, "heartbeat.interval.ms": 500,
                               "enable.partition.eof": False})
    c.subscribe(topics)
    wait_until(lambda: c.poll(0.1) is None and c.assignment(), 30, interval=0, what="assignment")
    return c


def offsets(a, group, tps=None):
    req = ConsumerGroupTopicPartitions(group, None if tps is None else [TopicPartition(t, p) for t, p in tps])
    res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(15)
    return {(tp.topic, tp.partition): tp.offset for tp in res.topic_partitions}


def listed(a, states=None):
    kw = {"states": states} if states is not None else {}
    res = a.list_consumer_groups(request_timeout=15, **kw).result(15)
    assert not res.errors, res.errors
    return {g.group_id: (g.state, g.type, g.is_simple_consumer_group) for g in res.valid}


def test_admin_list_describe_offsets_delete(gbroker):
    b = gbroker.bootstrap
    t, other = unique_topic("adm"), unique_topic("adm-other")
    create_topic(b, t, partitions=3)
    create_topic(b, other, partitions=1)
    produce_sync(producer(b), t, [{"value": b"v%d" % i, "partition": i % 3} for i in range(30)])
    produce_sync(producer(b), other, [{"value": b"o%d" % i} for i in range(5)])
    a = admin(b)
    g_active, g_empty = "adm-active-" + t, "adm-empty-" + t

    active = join(b, g_active, [t], "active-client")
    # A member may commit offsets of a topic it is not subscribed to.
    active.commit(offsets=[TopicPartition(t, 0, 5), TopicPartition(t, 1, 6), TopicPartition(t, 2, 7),
                           TopicPartition(other, 0, 2)], asynchronous=False)
    e = join(b, g_empty, [t], "empty-client")
    e.commit(offsets=[TopicPartition(t, 0, 1), TopicPartition(t, 1, 2), TopicPartition(t, 2, 3)], asynchronous=False)
    e.close()

    # ---- ListGroups, with and without a state filter.
    all_groups = listed(a)
    assert all_groups == {g_active: (ConsumerGroupState.STABLE, ConsumerGroupType.CLASSIC, False),
                          g_empty: (ConsumerGroupState.EMPTY, ConsumerGroupType.CLASSIC, False)}, all_groups
    assert set(listed(a, {ConsumerGroupState.STABLE})) == {g_active}
    assert set(listed(a, {ConsumerGroupState.EMPTY})) == {g_empty}
    assert set(listed(a, {ConsumerGroupState.EMPTY, ConsumerGroupState.STABLE})) == {g_active, g_empty}
    assert listed(a, {ConsumerGroupState.PREPARING_REBALANCING}) == {}

    # ---- DescribeGroups.
    d = a.describe_consumer_groups([g_active, g_empty], request_timeout=15)
    da, de = d[g_active].result(15), d[g_empty].result(15)
    assert (da.group_id, da.state, da.type, da.is_simple_consumer_group, da.partition_assignor) == \
        (g_active, ConsumerGroupState.STABLE, ConsumerGroupType.CLASSIC, False, "range")
    assert (da.coordinator.id, da.coordinator.host, da.coordinator.port) == (0, "127.0.0.1", gbroker.kafka_port)
    [m] = da.members
    assert m.client_id == "active-client" and m.member_id.startswith("active-client-"), vars(m)
    assert m.host == "/127.0.0.1" and m.group_instance_id is None, vars(m)
    assert sorted((tp.topic, tp.partition) for tp in m.assignment.topic_partitions) == [(t, 0), (t, 1), (t, 2)]
    assert (de.state, de.members) == (ConsumerGroupState.EMPTY, []), vars(de)
    # (de.type and de.partition_assignor: see test_describe_empty_classic_group)

    # ---- OffsetFetch: all partitions of the group, and selected ones (-1001: nothing committed).
    assert offsets(a, g_active) == {(t, 0): 5, (t, 1): 6, (t, 2): 7, (other, 0): 2}
    assert offsets(a, g_empty) == {(t, 0): 1, (t, 1): 2, (t, 2): 3}
    assert offsets(a, g_empty, [(t, 2), (other, 0)]) == {(t, 2): 3, (other, 0): -1001}

    # ---- OffsetCommit from the admin (generation -1, no member id): only while the group is empty.
    [fut] = a.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(g_active, [TopicPartition(t, 0, 9)])], request_timeout=15).values()
    [tp] = fut.result(15).topic_partitions
    assert tp.error is not None and tp.error.code() == KafkaError.UNKNOWN_MEMBER_ID, tp
    [fut] = a.alter_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(g_empty, [TopicPartition(t, 0, 20), TopicPartition(t, 2, 0),
                                                TopicPartition(other, 0, 4)])], request_timeout=15).values()
    res = fut.result(15).topic_partitions
    assert [(tp.topic, tp.partition, tp.offset, tp.error) for tp in res] == \
        [(t, 0, 20, None), (t, 2, 0, None), (other, 0, 4, None)], res
    assert offsets(a, g_empty) == {(t, 0): 20, (t, 1): 2, (t, 2): 0, (other, 0): 4}
    assert offsets(a, g_active) == {(t, 0): 5, (t, 1): 6, (t, 2): 7, (other, 0): 2}

    # ---- OffsetDelete (kafka-python): refused per partition for a topic the active group subscribes to,
    # allowed for one it does not, and for an empty group; unknown group -> GROUP_ID_NOT_FOUND.
    ka = kafka.KafkaAdminClient(bootstrap_servers=b, request_timeout_ms=15000)
    try:
        r = ka.delete_group_offsets(g_active, [kafka.TopicPartition(t, 0), kafka.TopicPartition(other, 0)])
        assert r == {kafka.TopicPartition(t, 0): kerr.GroupSubscribedToTopicError,
                     kafka.TopicPartition(other, 0): kerr.NoError}, r
        assert offsets(a, g_active) == {(t, 0): 5, (t, 1): 6, (t, 2): 7}
        r = ka.delete_group_offsets(g_empty, [kafka.TopicPartition(t, 1), kafka.TopicPartition(other, 0)])
        assert r == {kafka.TopicPartition(t, 1): kerr.NoError, kafka.TopicPartition(other, 0): kerr.NoError}, r
        assert offsets(a, g_empty) == {(t, 0): 20, (t, 2): 0}
        with pytest.raises(kerr.GroupIdNotFoundError):
            ka.delete_group_offsets("adm-no-such-group-" + t, [kafka.TopicPartition(t, 0)])
    finally:
        ka.close()

    # ---- DeleteGroups: a non-empty group is refused, an empty one deleted (with its offsets).
    fs = a.delete_consumer_groups([g_active, g_empty], request_timeout=15)
    with pytest.raises(KafkaException) as ei:
        fs[g_active].result(15)
    assert ei.value.args[0].code() == KafkaError.NON_EMPTY_GROUP
    assert fs[g_empty].result(15) is None
    assert set(listed(a)) == {g_active}
    assert offsets(a, g_empty) == {}
    dd = a.describe_consumer_groups([g_empty], request_timeout=15)[g_empty].result(15)
    assert (dd.state, dd.members) == (ConsumerGroupState.DEAD, [])
    with pytest.raises(KafkaException) as ei:
        a.delete_consumer_groups([g_empty], request_timeout=15)[g_empty].result(15)
    assert ei.value.args[0].code() == KafkaError.GROUP_ID_NOT_FOUND

    # Once its last member leaves, the active group is empty and can be deleted too.
    active.close()
    wait_until(lambda: listed(a).get(g_active, (None,))[0] == ConsumerGroupState.EMPTY, 15, what="group empty")
    assert a.delete_consumer_groups([g_active], request_timeout=15)[g_active].result(15) is None
    assert listed(a) == {}
    assert offsets(a, g_active) == {}


def test_describe_empty_classic_group(gbroker):
    """A classic group whose members all left is still a classic group (ListGroups says so). Kafka answers
    ConsumerGroupDescribe for it with GROUP_ID_NOT_FOUND ("not a consumer group"), so librdkafka falls
    back to DescribeGroups: type CLASSIC, state EMPTY, no protocol."""
    b = gbroker.bootstrap
    t = unique_topic("adm-empty")
    create_topic(b, t, partitions=1)
    g = "g-" + t
    c = join(b, g, [t], "c")
    c.commit(offsets=[TopicPartition(t, 0, 0)], asynchronous=False)
    c.close()
    a = admin(b)
    assert listed(a) == {g: (ConsumerGroupState.EMPTY, ConsumerGroupType.CLASSIC, False)}
    d = a.describe_consumer_groups([g], request_timeout=15)[g].result(15)
    assert (d.state, d.type, d.members, d.partition_assignor) == \
        (ConsumerGroupState.EMPTY, ConsumerGroupType.CLASSIC, [], ""), vars(d)

"""kcat -G (Debian kcat 1.7.1, librdkafka 2.0.2): the balanced consumer joins a group, consumes, commits
(auto commit, committed on close); a second run reads only what came after the commit."""

from __future__ import annotations

import re

from confluent_kafka import ConsumerGroupState, ConsumerGroupTopicPartitions, TopicPartition

from stromtest import admin, create_topic, kcat, producer, produce_sync, unique_topic

PROTOCOL_ERRORS = re.compile(rb"underflow|Protocol parse failure|Broker: |ERROR|failed", re.I)


def clean_stderr(stderr: bytes) -> None:
    bad = [line for line in stderr.splitlines() if PROTOCOL_ERRORS.search(line)]
    assert not bad, b"\n".join(bad).decode(errors="replace")


def kcat_group(b, group, topic):
    r = kcat("-b", b, "-G", group, topic, "-e", "-q", "-f", "%p %o %k %s\n",
             "-X", "auto.offset.reset=earliest", timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    clean_stderr(r.stderr)
    out = []
    for line in r.stdout.decode().splitlines():
        p, o, k, v = line.split(" ")
        out.append((int(p), int(o), k, v))
    return out


def test_kcat_balanced_consumer_commits(gbroker):
    b = gbroker.bootstrap
    topic = unique_topic("kcat-g")
    group = "g-" + topic
    create_topic(b, topic, partitions=3)
    p = producer(b)

    def produce(tag, n):
        msgs = [{"key": f"k{i % 7}".encode(), "value": f"{tag}{i}".encode()} for i in range(n)]
        res = produce_sync(p, topic, msgs)
        return [(pp, o, m["key"].decode(), m["value"].decode()) for (pp, o, _t), m in zip(res, msgs)]

    first = produce("a", 90)
    got = kcat_group(b, group, topic)
    assert sorted(got) == sorted(first)

    a = admin(b)

    def committed():
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, pp) for pp in range(3)])
        res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(15)
        return {tp.partition: tp.offset for tp in res.topic_partitions}

    def ends(msgs):
        return {pp: max(o for q, o, *_r in msgs if q == pp) + 1 for pp in range(3)}

    assert committed() == ends(first)
    [g] = [x for x in a.list_consumer_groups(request_timeout=15).result(15).valid if x.group_id == group]
    assert g.state == ConsumerGroupState.EMPTY

    second = produce("b", 60)
    got = kcat_group(b, group, topic)
    assert sorted(got) == sorted(second), "the second run reads exactly what came after the commit"
    assert committed() == ends(first + second)

"""The seed's batch consumer: start, read everything new since the group's last commit, commit, exit.
Run repeatedly (alternating librdkafka and kafka-python, same group) while a producer keeps writing,
the runs together get every message exactly once, and each run starts exactly at the offsets the
previous one committed."""

from __future__ import annotations

import threading
import time
from collections import Counter

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition

from stromtest import admin, consumer, create_topic, producer, unique_topic

PARTS = [0, 1, 2]


def batch_confluent(b, topic, group):
    """Read until every assigned partition reported EOF once; commit what was delivered; close."""
    c = consumer(b, **{"group.id": group, "auto.offset.reset": "earliest", "enable.partition.eof": True,
                       "session.timeout.ms": 6000})
    c.subscribe([topic])
    got, eof = [], set()
    deadline = time.monotonic() + 60
    while not (c.assignment() and eof >= {tp.partition for tp in c.assignment()}):
        assert time.monotonic() < deadline, f"no EOF on every partition: {eof}"
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            eof.add(m.partition())
            continue
        got.append((m.partition(), m.offset(), m.key().decode(), m.value().decode()))
    last = {}
    for p, o, _k, _v in got:
        last[p] = o + 1
    if last:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in last.items()], asynchronous=False)
    c.close()
    return got


def batch_kafka_python(b, topic, group):
    """Same with kafka-python: snapshot the end offsets once assigned, read up to them, commit, close."""
    import kafka
    c = kafka.KafkaConsumer(bootstrap_servers=b, group_id=group, enable_auto_commit=False,
                            auto_offset_reset="earliest", session_timeout_ms=6000, fetch_max_wait_ms=100)
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 60
    while not c.assignment():
        assert time.monotonic() < deadline, "no assignment"
        for recs in c.poll(timeout_ms=200).values():
            got += [(r.partition, r.offset, r.key.decode(), r.value.decode()) for r in recs]
    ends = c.end_offsets(list(c.assignment()))
    while any(c.position(tp) < end for tp, end in ends.items()):
        assert time.monotonic() < deadline, "did not reach the end offsets"
        for recs in c.poll(timeout_ms=200).values():
            got += [(r.partition, r.offset, r.key.decode(), r.value.decode()) for r in recs]
    c.commit()  # the consumed positions
    c.close(autocommit=False)
    return got


def test_batch_consumer_runs_get_everything_once(gbroker):
    b = gbroker.bootstrap
    topic = unique_topic("batch")
    group = "g-" + topic
    create_topic(b, topic, partitions=3)
    a = admin(b)

    produced, perr = [], []
    stop = threading.Event()

    def produce_loop():
        p = producer(b)
        i = 0
        while not stop.is_set():
            k, v = f"k{i % 11}", f"v{i}"
            p.produce(topic, key=k, value=v,
                      on_delivery=lambda err, msg, k=k, v=v: perr.append(err) if err else
                      produced.append((msg.partition(), msg.offset(), k, v)))
            p.poll(0)
            i += 1
            time.sleep(0.005)
        assert p.flush(20) == 0

    def committed():
        req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in PARTS])
        res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(15)
        return {tp.partition: tp.offset for tp in res.topic_partitions}

    th = threading.Thread(target=produce_loop, daemon=True)
    th.start()
    runs = []
    try:
        time.sleep(0.5)
        for i in range(6):
            if i == 5:  # the last run reads the tail once the producer has stopped
                stop.set()
                th.join(30)
            before = committed()
            got = (batch_confluent if i % 2 == 0 else batch_kafka_python)(b, topic, group)
            runs.append((before, got))
            time.sleep(0.3)
    finally:
        stop.set()
        th.join(30)

    assert not perr, perr[:5]
    assert len(produced) > 300, len(produced)
    for i, (before, got) in enumerate(runs):
        assert got, f"run {i} read nothing"
        first = {}
        for p, o, _k, _v in got:
            first.setdefault(p, o)
        # Each run starts at the committed offsets (nothing committed yet: the earliest, 0).
        expect = {p: (0 if o == -1001 else o) for p, o in before.items() if p in first}
        assert first == expect, (i, first, before)
        # Within a run, each partition is read in order without gaps.
        for p in first:
            offs = [o for pp, o, _k, _v in got if pp == p]
            assert offs == list(range(offs[0], offs[0] + len(offs))), (i, p)
    every = Counter(m for _b, got in runs for m in got)
    assert every == Counter(produced), ([m for m, n in every.items() if n > 1][:5],
                                        sorted(set(produced) - set(every))[:5])
    ends = {p: max(o for pp, o, *_r in produced if pp == p) + 1 for p in PARTS}
    assert committed() == ends

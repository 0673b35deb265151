"""KIP-848 (`group.protocol=consumer`, ConsumerGroupHeartbeat with server-side assignment) with
confluent-kafka 2.16.1: two consumers share a 4-partition topic, a third joins and the broker moves
partitions incrementally: a partition is revoked from its owner (which acknowledges in its next
heartbeat) before it is given to its new owner, so no partition is ever owned twice.

"Owned" is checked three ways: (1) each consumer's rebalance callbacks give ownership intervals
[on_assign, on_revoke) on one clock, and no two intervals of a partition overlap; (2) atomic samples of
every consumer's `assignment()` (each consumer polls under its own lock; the sampler takes all locks);
(3) ConsumerGroupDescribe samples (AdminClient describe_consumer_groups), every member's current
assignment. Messages are produced throughout and committed one by one: each is consumed exactly once.
"""

from __future__ import annotations

import threading
import time
from collections import Counter

from confluent_kafka import Consumer, ConsumerGroupType, KafkaException, TopicPartition

from stromtest import RDKAFKA_LOG, admin, create_topic, producer, unique_topic, wait_until

PARTS = [0, 1, 2, 3]


class KipConsumer:
    def __init__(self, bootstrap, topic, group, name, assignor):
        self.name = name
        self.topic = topic
        self.lock = threading.Lock()
        self.intervals: list[list] = []  # [partition, t_assign, t_revoke or None]
        self.msgs: list[tuple] = []
        self.errors: list[str] = []
        self.stop = threading.Event()
        self.c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "client.id": name,
            "group.protocol": "consumer",
            "group.remote.assignor": assignor,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "fetch.wait.max.ms": 100,
            "socket.timeout.ms": 10000,
        }, logger=RDKAFKA_LOG)
        self.thread = threading.Thread(target=self.run, daemon=True)

    def on_assign(self, c, parts):
        t = time.monotonic()
        for tp in parts:
            self.intervals.append([tp.partition, t, None])

    def on_revoke(self, c, parts):
        t = time.monotonic()
        for tp in parts:
            for iv in self.intervals:
                if iv[0] == tp.partition and iv[2] is None:
                    iv[2] = t

    def start(self):
        self.c.subscribe([self.topic], on_assign=self.on_assign, on_revoke=self.on_revoke,
                         on_lost=self.on_revoke)
        self.thread.start()
        return self

    def run(self):
        while not self.stop.is_set():
            with self.lock:
                m = self.c.poll(0.05)
            if m is None:
                continue
            if m.error():
                self.errors.append(str(m.error()))
                continue
            self.msgs.append((m.partition(), m.offset(), m.key().decode(), m.value().decode()))
            try:
                self.c.commit(offsets=[TopicPartition(self.topic, m.partition(), m.offset() + 1)],
                              asynchronous=False)
            except KafkaException as e:
                self.errors.append(f"commit {m.partition()}@{m.offset() + 1}: {e}")
        t = time.monotonic()
        self.c.close()
        for iv in self.intervals:
            if iv[2] is None:
                iv[2] = t

    def owned(self) -> list[int]:
        return sorted(iv[0] for iv in self.intervals if iv[2] is None)


def run_kip848(b, assignor):
    topic = unique_topic("kip848-" + assignor)
    group = "g-" + topic
    create_topic(b, topic, partitions=4)

    # A producer that keeps writing keyed messages all the time.
    produced, perr = [], []
    stop_producing = threading.Event()

    def produce_loop():
        p = producer(b)
        i = 0
        while not stop_producing.is_set():
            k, v = f"k{i % 23}", f"v{i}"

            def cb(err, msg, k=k, v=v):
                (perr.append(err) if err else produced.append((msg.partition(), msg.offset(), k, v)))
            p.produce(topic, key=k, value=v, on_delivery=cb)
            p.poll(0)
            i += 1
            time.sleep(0.01)
        assert p.flush(20) == 0

    prod = threading.Thread(target=produce_loop, daemon=True)
    prod.start()

    cs = [KipConsumer(b, topic, group, "c1", assignor).start(), KipConsumer(b, topic, group, "c2", assignor).start()]

    # Sampler: atomic client-side snapshots and ConsumerGroupDescribe snapshots, every ~50 ms.
    samples, described, sampler_errors = [], [], []
    stop_sampling = threading.Event()
    a = admin(b)

    def sample_loop():
        while not stop_sampling.is_set():
            live = [c for c in cs if not c.stop.is_set()]
            for c in live:
                c.lock.acquire()
            try:
                snap = {c.name: sorted(tp.partition for tp in c.c.assignment()) for c in live}
            finally:
                for c in live:
                    c.lock.release()
            samples.append(snap)
            try:
                d = a.describe_consumer_groups([group], request_timeout=5)[group].result(5)
                described.append((d.type, d.state.name, d.partition_assignor,
                                  {m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions)
                                   for m in d.members}))
            except Exception as e:  # noqa: BLE001 - recorded and asserted on below
                sampler_errors.append(repr(e))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_loop, daemon=True)
    sampler.start()
    try:
        # Two members: 2 + 2.
        wait_until(lambda: sorted(len(c.owned()) for c in cs) == [2, 2]
                   and sorted(p for c in cs for p in c.owned()) == PARTS, 60, what="2+2 assignment")
        wait_until(lambda: len({m[1] for m in produced}) > 0 and all(c.msgs for c in cs), 30, what="both consuming")
        time.sleep(1.0)
        before_third = {c.name: c.owned() for c in cs}

        # The third member joins: each ends with 1 or 2 partitions, all 4 owned, and nothing was owned twice.
        cs.append(KipConsumer(b, topic, group, "c3", assignor).start())
        wait_until(lambda: all(1 <= len(c.owned()) <= 2 for c in cs)
                   and sorted(p for c in cs for p in c.owned()) == PARTS, 60, what="3-member assignment")
        # Uniform is sticky: each of the first two kept at least one of its partitions, never revoked.
        for c in (cs[:2] if assignor == "uniform" else []):
            kept = set(before_third[c.name]) & set(c.owned())
            assert kept, (c.name, before_third[c.name], c.owned())
            for p in kept:
                assert len([iv for iv in c.intervals if iv[0] == p]) == 1, (c.name, p, c.intervals)
        wait_until(lambda: cs[2].msgs, 30, what="c3 consuming")
        time.sleep(2.0)
    finally:
        stop_producing.set()
        prod.join(30)
    try:
        wait_until(lambda: Counter((p, o) for c in cs for (p, o, _k, _v) in c.msgs)
                   >= Counter((p, o) for (p, o, _k, _v) in produced), 60, what="everything consumed")
        time.sleep(1.0)
        final = described[-1] if described else None
        final_owned = {c.name: c.owned() for c in cs}
        t_end = time.monotonic()
    finally:
        stop_sampling.set()
        sampler.join(10)
        for c in cs:
            c.stop.set()
        for c in cs:
            c.thread.join(30)

    assert not perr, perr[:5]
    for c in cs:
        assert not c.errors, (c.name, c.errors[:5])
    # (1) Ownership intervals never overlap.
    for p in PARTS:
        ivs = sorted((iv[1], iv[2], c.name) for c in cs for iv in c.intervals if iv[0] == p)
        for (s1, e1, n1), (s2, e2, n2) in zip(ivs, ivs[1:]):
            assert e1 <= s2, f"partition {p} owned by {n1} [{s1}, {e1}) and {n2} from {s2}"
    # The third member's partitions were taken from the first two: revoked while they ran, then assigned.
    moved = {iv[0] for c in cs[:2] for iv in c.intervals if iv[2] < t_end}
    assert moved and moved <= set(final_owned["c3"]) | {p for c in cs[:2] for p in final_owned[c.name]}, moved
    assert set(final_owned["c3"]) <= moved, (final_owned, moved)
    print(f"{assignor}: moved {sorted(moved)}, final {final_owned}, {len(samples)} client samples, "
          f"{len(described)} ConsumerGroupDescribe samples, {len(produced)} messages")
    # (2) Client snapshots.
    assert len(samples) > 10, len(samples)
    for snap in samples:
        allp = [p for ps in snap.values() for p in ps]
        assert len(allp) == len(set(allp)), f"partition owned twice in client snapshot {snap}"
    # (3) Broker snapshots.
    assert not sampler_errors, sampler_errors[:5]
    assert len(described) > 10, len(described)
    for (typ, state, asg, view) in described:
        allp = [p for ps in view.values() for p in ps]
        assert len(allp) == len(set(allp)), f"partition owned twice in ConsumerGroupDescribe {view}"
        assert typ == ConsumerGroupType.CONSUMER, typ
    typ, state, asg, view = final
    assert state == "STABLE" and asg == assignor, final
    assert view == final_owned, (view, final_owned)
    # Exactly once.
    got = Counter(m for c in cs for m in c.msgs)
    assert got == Counter(produced), (sorted(set(got) - set(produced))[:5], sorted(set(produced) - set(got))[:5],
                                      [m for m, n in got.items() if n > 1][:5])
    assert len(produced) > 100, len(produced)
    return cs


def test_kip848_third_member_incremental_uniform(gbroker):
    run_kip848(gbroker.bootstrap, "uniform")


def test_kip848_third_member_incremental_range(gbroker):
    run_kip848(gbroker.bootstrap, "range")

"""Static membership (KIP-345, `group.instance.id`) with confluent-kafka: a static member that restarts
within its session timeout gets its old partitions back without a rebalance (the other member sees no
revoke and the generation does not change)."""

from __future__ import annotations

import time

from confluent_kafka import Consumer

from stromtest import RDKAFKA_LOG, admin, create_topic, producer, produce_sync, unique_topic, wait_until


class Tracked:
    def __init__(self, b, topic, group, name, instance_id=None):
        conf = {"bootstrap.servers": b, "group.id": group, "client.id": name, "enable.auto.commit": False,
                "auto.offset.reset": "earliest", "session.timeout.ms": 10000, "heartbeat.interval.ms": 500,
                "partition.assignment.strategy": "range"}
        if instance_id:
            conf["group.instance.id"] = instance_id
        self.c = Consumer(conf, logger=RDKAFKA_LOG)
        self.events = []
        self.c.subscribe([topic], on_assign=lambda c, ps: self.events.append(("assign", sorted(p.partition for p in ps))),
                         on_revoke=lambda c, ps: self.events.append(("revoke", sorted(p.partition for p in ps))))

    def pump(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            m = self.c.poll(0.05)
            assert m is None or m.error() is None or m.error().code() == -191, m.error()


def describe(a, group):
    d = a.describe_consumer_groups([group], request_timeout=10)[group].result(10)
    return d.state.name, {(m.client_id, m.group_instance_id, m.member_id): sorted(tp.partition for tp in m.assignment.topic_partitions)
                          for m in d.members}


def test_static_member_restart_keeps_assignment_without_rebalance(gbroker):
    b = gbroker.bootstrap
    topic = unique_topic("static")
    group = "g-" + topic
    create_topic(b, topic, partitions=4)
    produce_sync(producer(b), topic, [{"value": b"v%d" % i, "partition": i % 4} for i in range(40)])
    a = admin(b)

    s = Tracked(b, topic, group, "static-a", instance_id="instance-a")
    d = Tracked(b, topic, group, "dynamic-b")

    def both_pumped():
        s.pump(0.1)
        d.pump(0.1)
        state, view = describe(a, group)
        mine = sorted(tp.partition for c in (s, d) for tp in c.c.assignment())
        return state == "STABLE" and len(view) == 2 and sorted(p for ps in view.values() for p in ps) == mine == [0, 1, 2, 3]
    wait_until(both_pumped, 60, interval=0, what="stable group of two")
    state, view_before = describe(a, group)
    [(static_key, static_parts)] = [(k, v) for k, v in view_before.items() if k[1] == "instance-a"]
    assert len(static_parts) == 2
    d_events = list(d.events)

    # The static member goes away without LeaveGroup (librdkafka does not send one for static members)
    # and a new process with the same group.instance.id joins within the session timeout.
    s.c.close()
    t0 = time.monotonic()
    d.pump(1.0)
    s2 = Tracked(b, topic, group, "static-a", instance_id="instance-a")
    wait_until(lambda: (s2.pump(0.1), d.pump(0.1)) and s2.c.assignment(), 30, interval=0, what="static member back")
    assert time.monotonic() - t0 < 10
    assert sorted(tp.partition for tp in s2.c.assignment()) == static_parts
    d.pump(2.0)
    s2.pump(0.5)
    # No rebalance: the dynamic member saw nothing, the broker's view is the same but the static
    # member's new member id.
    assert d.events == d_events, (d_events, d.events)
    state, view_after = describe(a, group)
    assert state == "STABLE"
    assert {(k[0], k[1]): v for k, v in view_after.items()} == {(k[0], k[1]): v for k, v in view_before.items()}
    s2.c.close()
    d.c.close()

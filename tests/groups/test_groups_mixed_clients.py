"""Three different clients in ONE classic consumer group: librdkafka (confluent-kafka 2.16.1), kafka-python
3.0.12 and kafkajs 2.2.4, each in its own process, all with the `roundrobin` assignor (kafkajs's round
robin assigner renamed to the standard protocol name, see node/gconsumer.js).

Every member commits each message synchronously right after it records it, so the group's committed
offset of a partition is always "last recorded + 1" unless a member was told `nocommit`.
"""

from __future__ import annotations

import time
from collections import Counter

from stromtest import admin, create_topic, unique_topic, wait_until

from groupharness import committed, produce_keyed

PARTS = list(range(6))


def group_view(bootstrap: str, group: str):
    """DescribeGroups through the AdminClient: (state, assignor, {client_id: [partitions]})."""
    a = admin(bootstrap)  # keep the handle alive until the future resolves
    d = a.describe_consumer_groups([group], request_timeout=10)[group].result(10)
    members = {m.client_id: sorted(tp.partition for tp in m.assignment.topic_partitions) for m in d.members}
    return d.state.name, d.partition_assignor, members


def wait_stable(bootstrap, group, live, timeout=60.0):
    """Wait until the broker's view (Stable, roundrobin, exactly the live members) and each client's own
    last assignment agree, cover the 6 partitions and are disjoint. Returns {name: partitions}."""
    def check():
        state, assignor, view = group_view(bootstrap, group)
        mine = {m.name: m.assignment() for m in live}
        if state != "STABLE" or assignor != "roundrobin" or set(view) != set(mine) or view != mine:
            return False
        allp = [p for ps in view.values() for p in ps]
        if sorted(allp) != PARTS:
            return False
        return view
    try:
        return wait_until(check, timeout, interval=0.25, what="stable group")
    except AssertionError:
        raise AssertionError(f"group not stable: broker {group_view(bootstrap, group)}; clients "
                             + "; ".join(m.describe() for m in live))


def wait_consumed(everyone, expected: set, timeout=60.0):
    def done():
        got = set()
        for m in everyone:
            got.update(m.msgs())
        return expected <= got
    try:
        wait_until(done, timeout, interval=0.2, what="all messages consumed")
    except AssertionError:
        got = set()
        for m in everyone:
            got.update(m.msgs())
        missing = sorted(expected - got)
        raise AssertionError(f"{len(missing)} of {len(expected)} not consumed, e.g. {missing[:10]}; "
                             + "; ".join(m.describe() for m in everyone))


def first_offsets_after(member, n_before: int) -> dict[int, int]:
    """Per partition, the first offset `member` recorded among its messages after the first n_before."""
    out = {}
    for (p, o, _k, _v) in member.msgs()[n_before:]:
        out.setdefault(p, o)
    return out


def test_mixed_clients_one_group_leave_and_kill(gbroker, members):
    b = gbroker.bootstrap
    topic = unique_topic("mixed")
    group = "g-" + topic
    create_topic(b, topic, partitions=6)

    rdk = members("confluent", b, topic, group, "rdk")
    kp = members("kafka-python", b, topic, group, "kp")
    kjs = members("kafkajs", b, topic, group, "kjs")
    everyone = [rdk, kp, kjs]

    # ---- Phase A: three members, stable. 6 partitions split 2/2/2 (roundrobin), agreed by broker and clients.
    view = wait_stable(b, group, [rdk, kp, kjs])
    assert sorted(len(ps) for ps in view.values()) == [2, 2, 2], view
    a_msgs = produce_keyed(b, topic, "A", 600)
    assert {p for p, *_ in a_msgs} == set(PARTS)
    wait_consumed(everyone, set(a_msgs))
    time.sleep(1.0)  # anything extra (a duplicate) would show up now
    all_seen = Counter(x for m in everyone for x in m.msgs())
    assert all_seen == Counter(a_msgs), "phase A: every message exactly once"
    for m in everyone:
        mine = set(m.assignment())
        got = m.msgs()
        assert {p for p, *_ in got} <= mine, (m.name, mine)
        assert len(got) == len([x for x in a_msgs if x[0] in mine]), m.name
        # Committed offset (as the member saw its commits return) = log end of each of its partitions.
        ends = {p: max(o for (pp, o, *_r) in a_msgs if pp == p) + 1 for p in mine}
        assert m.commits() == ends, (m.name, m.commits(), ends)
    assert committed(b, group, topic, PARTS) == {p: max(o for (pp, o, *_r) in a_msgs if pp == p) + 1 for p in PARTS}
    assert not any(m.problems() for m in everyone), [m.problems() for m in everyone]

    # ---- Phase B: kafka-python pauses (its partitions fall behind), then close()s: LeaveGroup.
    kp_parts = kp.assignment()
    kp.send("pause")
    time.sleep(0.3)
    b_msgs = produce_keyed(b, topic, "B", 300)
    others_b = {x for x in b_msgs if x[0] not in kp_parts}
    wait_consumed([rdk, kjs], others_b)
    kp_committed = committed(b, group, topic, kp_parts)
    assert kp_committed == {p: kp.commits()[p] for p in kp_parts}
    # Its partitions have B messages beyond its committed offsets, so "resume from committed" is not "latest".
    for p in kp_parts:
        assert any(x[0] == p and x[1] >= kp_committed[p] for x in b_msgs), p
    n_rdk, n_kjs = len(rdk.msgs()), len(kjs.msgs())
    t_close = time.monotonic()
    kp.close()
    view = wait_stable(b, group, [rdk, kjs])
    took_close = time.monotonic() - t_close
    assert sorted(len(ps) for ps in view.values()) == [3, 3], view
    assert took_close < 5.0, took_close  # LeaveGroup: no waiting for a session timeout
    wait_consumed([rdk, kjs, kp], set(a_msgs) | set(b_msgs))
    time.sleep(1.0)
    seen = Counter(x for m in everyone for x in m.msgs())
    assert seen == Counter(a_msgs + b_msgs), "phase B: every message exactly once across the leave"
    # The new owners of kafka-python's partitions started exactly at its committed offsets.
    firsts = {}
    for m, n in ((rdk, n_rdk), (kjs, n_kjs)):
        for p, o in first_offsets_after(m, n).items():
            if p in kp_parts:
                firsts[p] = o
    assert firsts == kp_committed, (firsts, kp_committed)

    # ---- Phase C: a new kafka-python member joins (and resumes from the group's offsets), then the kafkajs
    # member stops committing, consumes a batch, and is SIGKILLed: no LeaveGroup, session timeout 6 s.
    kp2 = members("kafka-python", b, topic, group, "kp2")
    everyone.append(kp2)
    view = wait_stable(b, group, [rdk, kjs, kp2])
    assert sorted(len(ps) for ps in view.values()) == [2, 2, 2], view
    kjs_parts = kjs.assignment()
    ends_ab = {p: max(o for (pp, o, *_r) in a_msgs + b_msgs if pp == p) + 1 for p in PARTS}
    assert committed(b, group, topic, PARTS) == ends_ab
    kjs.send("nocommit")
    c1_msgs = produce_keyed(b, topic, "C1", 300)
    wait_consumed(everyone, set(a_msgs) | set(b_msgs) | set(c1_msgs))
    time.sleep(0.5)
    kjs_committed = committed(b, group, topic, kjs_parts)
    # Nothing was committed on kafkajs's partitions since `nocommit`.
    assert kjs_committed == {p: ends_ab[p] for p in kjs_parts}, (kjs_committed, ends_ab)
    kjs_uncommitted = {x for x in kjs.msgs() if x[0] in kjs_parts and x[1] >= kjs_committed[x[0]]}
    assert kjs_uncommitted == {x for x in c1_msgs if x[0] in kjs_parts}, "kafkajs consumed its C1 share uncommitted"
    n_rdk, n_kp2 = len(rdk.msgs()), len(kp2.msgs())
    t_kill = time.monotonic()
    kjs.kill()
    view = wait_stable(b, group, [rdk, kp2], timeout=60)
    took_kill = time.monotonic() - t_kill
    assert sorted(len(ps) for ps in view.values()) == [3, 3], view
    # The dead member is only noticed by its session timeout (6 s) ...
    assert took_kill >= 5.0, took_kill
    # ... and not by a rebalance timeout (60 s): the broker evicts it once its session expires.
    assert took_kill < 20.0, took_kill
    c2_msgs = produce_keyed(b, topic, "C2", 300)
    produced = a_msgs + b_msgs + c1_msgs + c2_msgs
    wait_consumed(everyone, set(produced))
    time.sleep(1.0)
    seen = Counter(x for m in everyone for x in m.msgs())
    # No message lost; the only duplicates are exactly what the killed member consumed without committing.
    assert set(seen) == set(produced)
    dups = {x for x, n in seen.items() if n > 1}
    assert dups == kjs_uncommitted, (sorted(dups - kjs_uncommitted)[:10], sorted(kjs_uncommitted - dups)[:10])
    assert all(n == 2 for x, n in seen.items() if x in dups)
    firsts = {}
    for m, n in ((rdk, n_rdk), (kp2, n_kp2)):
        for p, o in first_offsets_after(m, n).items():
            if p in kjs_parts:
                firsts[p] = o
    assert firsts == kjs_committed, (firsts, kjs_committed)
    # Everything the survivors consumed is committed.
    assert committed(b, group, topic, PARTS) == {p: max(o for (pp, o, *_r) in produced if pp == p) + 1 for p in PARTS}
    for m in (rdk, kp2, kp, kjs):
        assert not m.problems(), m.describe()
    print(f"leave -> stable in {took_close:.1f}s, kill -> stable in {took_kill:.1f}s")
    rdk.close()
    kp2.close()

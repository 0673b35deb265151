"""End-to-end tests of `strom consume -g` and `strom group ...` against a real `strom server`.

Every command runs as a user would run it; text and JSON output are parsed and checked; a
`strom consume -g` member shares a group with a confluent-kafka (librdkafka) member, and
reset-offsets is checked against what confluent-kafka's `committed()` sees.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest
from confluent_kafka import TopicPartition

from stromtest import consumer, create_topic, produce_sync, producer, unique_topic, wait_until
from test_cli import STROM_BIN, strom, strom_json, table

GROUP_BROKER = {"group_initial_rebalance_delay_ms": 100}


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(config=GROUP_BROKER)


def produce_values(broker, topic: str, partitions: int, per_partition: int, tag: str = "v") -> None:
    p = producer(broker.bootstrap)
    produce_sync(p, topic, [{"value": f"{tag}-{q}-{i}".encode(), "partition": q}
                            for q in range(partitions) for i in range(per_partition)])


def committed(broker, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offsets as confluent-kafka (librdkafka) sees them."""
    c = consumer(broker.bootstrap, **{"group.id": group})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        c.close()


class StromMember:
    """`strom consume TOPIC -g GROUP` running in the background, its output collected."""

    def __init__(self, broker, topic: str, group: str, *extra: str):
        argv = [str(STROM_BIN), "consume", topic, "-g", group, "-f", "%p %o %v\\n", "-b", broker.bootstrap, *extra]
        env = dict(os.environ, NO_COLOR="1", STROM_LOG="info")
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.decode().rstrip("\n"))

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(20)
        self.reader.join(5)
        return rc

    def stderr(self) -> str:
        return self.proc.stderr.read().decode() if self.proc.poll() is not None else ""


def members_of(broker, group: str) -> list[dict]:
    r = strom(broker, "group", "describe", group, "--format", "json", check=False)
    if r.returncode != 0:
        return []
    return json.loads(r.stdout)["members"]


# ------------------------------------------------------------------------------------ help and usage

@pytest.mark.parametrize("command", [["group"], ["group", "list"], ["group", "describe"],
                                     ["group", "reset-offsets"], ["group", "delete"]],
                         ids=lambda c: " ".join(c))
def test_group_help_has_examples(command):
    out = strom(None, *command, "--help").stdout.decode()
    assert "Usage:" in out
    assert "Examples:" in out, out


def test_consume_help_shows_group_example():
    out = strom(None, "consume", "--help").stdout.decode()
    assert "-g, --group <GROUP>" in out and "strom consume events clicks -g billing" in out


def test_group_usage_errors_say_what_to_do(gbroker):
    topic = unique_topic("usage")
    create_topic(gbroker.bootstrap, topic, 1)
    r = strom(gbroker, "consume", topic, "-g", "g", "-p", "0", check=False)
    assert r.returncode != 0 and "-p cannot be used with -g" in r.stderr.decode()
    r = strom(gbroker, "consume", topic, "-g", "g", "-o", "5", check=False)
    assert r.returncode != 0 and "strom group reset-offsets g" in r.stderr.decode()
    r = strom(gbroker, "consume", "no-such-topic", "-g", "g", "-e", check=False)
    assert r.returncode != 0 and "unknown topic" in r.stderr.decode()
    r = strom(gbroker, "group", "describe", "no-such-group", check=False)
    assert r.returncode != 0 and "strom group list" in r.stderr.decode(), r.stderr
    r = strom(gbroker, "group", "reset-offsets", "g", "--topic", "no-such-topic", "--to", "earliest", check=False)
    assert r.returncode != 0 and "unknown topic" in r.stderr.decode()
    r = strom(gbroker, "group", "reset-offsets", "g", "--topic", topic, "--to", "sometime", check=False)
    assert r.returncode != 0
    r = strom(gbroker, "group", "delete", "no-such-group", check=False)
    assert r.returncode != 0 and "strom group list" in r.stderr.decode(), r.stderr


# ------------------------------------------------------------------------------------ the commands

def test_consume_group_commits_and_group_commands(gbroker):
    topic, group = unique_topic("grp"), "cli-group"
    create_topic(gbroker.bootstrap, topic, 3)
    produce_values(gbroker, topic, 3, 10)

    # A group member reads everything once and commits it.
    out = strom(gbroker, "consume", topic, "-g", group, "-e", "--format", "json").stdout
    records = [json.loads(line) for line in out.decode().splitlines()]
    assert sorted((r["partition"], r["offset"]) for r in records) == [(p, o) for p in range(3) for o in range(10)]
    assert committed(gbroker, group, topic, 3) == {0: 10, 1: 10, 2: 10}
    # Run again: nothing new to read (it resumes from the commits).
    produce_values(gbroker, topic, 3, 1, tag="new")
    out = strom(gbroker, "consume", topic, "-g", group, "-e", "-f", "%p %o %v\\n").stdout.decode()
    assert sorted(out.splitlines()) == [f"{p} 10 new-{p}-0" for p in range(3)]
    # -n stops after N records and commits only what it printed.
    produce_values(gbroker, topic, 1, 5, tag="more")
    out = strom(gbroker, "consume", topic, "-g", group, "-n", "2", "-f", "%o\\n").stdout.decode()
    assert out.split() == ["11", "12"]
    assert committed(gbroker, group, topic, 3)[0] == 13

    # list: text and json
    rows = table(strom(gbroker, "group", "list").stdout.decode())
    assert {"GROUP": group, "STATE": "Empty", "TYPE": "classic", "PROTOCOL-TYPE": "consumer"} in rows, rows
    listed = strom_json(gbroker, "group", "list")
    assert {"group": group, "state": "Empty", "protocol_type": "consumer", "type": "classic"} in listed

    # describe: committed, end offset and lag per partition
    d = strom_json(gbroker, "group", "describe", group)
    assert d["state"] == "Empty" and d["members"] == []
    offsets = {o["partition"]: o for o in d["offsets"]}
    assert offsets[0] == {"topic": topic, "partition": 0, "committed": 13, "end_offset": 16, "lag": 3, "member_id": None}
    assert offsets[1]["committed"] == 11 and offsets[1]["lag"] == 0
    assert d["total_lag"] == 3
    text = strom(gbroker, "group", "describe", group).stdout.decode()
    assert "state:        Empty" in text
    parts = table(text[text.index("TOPIC"):])
    assert {"TOPIC": topic, "PARTITION": "0", "COMMITTED": "13", "END": "16", "LAG": "3", "MEMBER": "-"} in parts

    # delete: gone afterwards
    assert strom(gbroker, "group", "delete", group).stdout.decode().strip() == f"deleted group {group}"
    assert group not in [g["group"] for g in strom_json(gbroker, "group", "list")]
    assert strom(gbroker, "group", "describe", group, check=False).returncode != 0


def test_reset_offsets_dry_run_then_execute_as_confluent_sees_it(gbroker):
    topic, group = unique_topic("reset"), "reset-group"
    create_topic(gbroker.bootstrap, topic, 2)
    p = producer(gbroker.bootstrap)
    produce_sync(p, topic, [{"value": f"{q}-{i}".encode(), "partition": q, "timestamp": 1_700_000_000_000 + i * 1000}
                            for q in range(2) for i in range(10)])
    strom(gbroker, "consume", topic, "-g", group, "-e")
    assert committed(gbroker, group, topic, 2) == {0: 10, 1: 10}

    # Dry run (the default): prints the plan, changes nothing.
    text = strom(gbroker, "group", "reset-offsets", group, "--topic", topic, "--to", "earliest").stdout.decode()
    assert "Dry run: nothing changed. Add --execute" in text
    plan = table(text[:text.index("Dry run")])
    assert plan == [{"TOPIC": topic, "PARTITION": str(q), "CURRENT": "10", "NEW": "0"} for q in range(2)]
    assert committed(gbroker, group, topic, 2) == {0: 10, 1: 10}
    dry = strom_json(gbroker, "group", "reset-offsets", group, "--topic", topic, "--to", "4")
    assert dry["executed"] is False and [x["new"] for x in dry["partitions"]] == [4, 4]
    assert committed(gbroker, group, topic, 2) == {0: 10, 1: 10}

    # --execute: confluent-kafka sees the new offsets.
    strom(gbroker, "group", "reset-offsets", group, "--topic", topic, "--to", "earliest", "--execute")
    assert committed(gbroker, group, topic, 2) == {0: 0, 1: 0}
    done = strom_json(gbroker, "group", "reset-offsets", group, "--topic", topic, "--to", "@1700000004000",
                      "-p", "1", "--execute")
    assert done["executed"] is True and done["partitions"] == [{"topic": topic, "partition": 1, "current": 0, "new": 4}]
    assert committed(gbroker, group, topic, 2) == {0: 0, 1: 4}
    strom(gbroker, "group", "reset-offsets", group, "--topic", topic, "--to", "latest", "-p", "0", "--execute")
    strom(gbroker, "group", "reset-offsets", group, "--topic", topic, "--to", "7", "-p", "1", "--execute")
    assert committed(gbroker, group, topic, 2) == {0: 10, 1: 7}
    # And the group resumes there.
    out = strom(gbroker, "consume", topic, "-g", group, "-e", "-f", "%p %o\\n").stdout.decode()
    assert sorted(out.split("\n")[:-1]) == ["1 7", "1 8", "1 9"]

    # With a member running, --execute is refused with what to do.
    member = StromMember(gbroker, topic, group)
    try:
        wait_until(lambda: len(members_of(gbroker, group)) == 1, timeout=20, what="the member joined")
        r = strom(gbroker, "group", "reset-offsets", group, "--topic", topic, "--to", "earliest", "--execute",
                  check=False)
        assert r.returncode != 0 and "stop its consumers first" in r.stderr.decode(), r.stderr
        r = strom(gbroker, "group", "delete", group, check=False)
        assert r.returncode != 0 and "stop its consumers first" in r.stderr.decode(), r.stderr
    finally:
        assert member.stop() == 0


@pytest.mark.parametrize("assignor", ["range", "cooperative-sticky"])
def test_strom_member_shares_a_group_with_confluent_kafka(gbroker, assignor):
    topic, group = unique_topic("mixed"), f"mixed-{assignor}"
    create_topic(gbroker.bootstrap, topic, 4)
    strategy = "range" if assignor == "range" else "cooperative-sticky"
    ck = consumer(gbroker.bootstrap, **{"group.id": group, "auto.offset.reset": "earliest",
                                        "partition.assignment.strategy": strategy,
                                        "enable.partition.eof": False, "session.timeout.ms": 10000,
                                        "heartbeat.interval.ms": 500})
    ck_seen: list[tuple[int, int]] = []
    ck_owned: list[int] = []
    stop = threading.Event()

    def poll_loop():
        # confluent-kafka is used from this thread only.
        while not stop.is_set():
            ck_owned[:] = [tp.partition for tp in ck.assignment()]
            m = ck.poll(0.2)
            if m is not None and not m.error():
                ck_seen.append((m.partition(), m.offset()))
                ck.commit(message=m, asynchronous=False)

    ck.subscribe([topic])
    poller = threading.Thread(target=poll_loop, daemon=True)
    poller.start()
    member = StromMember(gbroker, topic, group, "--assignor", assignor)
    try:
        def halves():
            ms = members_of(gbroker, group)
            owned = [{(a["topic"], a["partition"]) for a in m["assignment"]} for m in ms]
            return len(ms) == 2 and all(len(o) == 2 for o in owned) and not (owned[0] & owned[1])
        wait_until(halves, timeout=40, what="two members with two partitions each")
        d = strom_json(gbroker, "group", "describe", group)
        assert d["assignor"] == assignor
        assert {m["client_id"] for m in d["members"]} == {"strom-cli", "rdkafka"}

        produce_values(gbroker, topic, 4, 10)
        def strom_seen():
            return [(int(p), int(o)) for p, o, _ in (line.split(" ", 2) for line in member.lines)]
        wait_until(lambda: len(ck_seen) + len(strom_seen()) >= 40, timeout=30, what="all 40 records read")
        both = sorted(ck_seen + strom_seen())
        assert both == [(p, o) for p in range(4) for o in range(10)], "every record exactly once"
        assert ck_seen and strom_seen(), "both members read"

        # The strom member leaves: confluent-kafka gets all four partitions and reads on from the commits.
        assert member.stop() == 0
        wait_until(lambda: len(ck_owned) == 4, timeout=30, what="confluent owns all partitions")
        produce_values(gbroker, topic, 4, 1, tag="after")
        wait_until(lambda: len(ck_seen) + len(strom_seen()) >= 44, timeout=30, what="the new records read")
        assert sorted(ck_seen + strom_seen()) == [(p, o) for p in range(4) for o in range(11)]
    finally:
        member.stop()
        stop.set()
        poller.join(5)
        ck.close()

"""One classic-group consumer in its own process, driven by tests/groups (see `Member` in conftest.py).

    python gworker.py '{"client": "confluent"|"kafka-python", "bootstrap": ..., "topic": ..., "group": ...,
                        "client_id": ..., "session_timeout_ms": 6000}'

It subscribes, and for every message prints one JSON line {"ev": "msg", p, o, k, v} and then commits
the next offset synchronously ({"ev": "commit", p, o} once the commit returned). Commands on stdin, one
per line: `nocommit` (stop committing; messages are still reported), `pause` / `resume` (stop / start
consuming; heartbeats go on), `close` (close the consumer, which sends LeaveGroup, then exit).
Assignment changes are reported as {"ev": "assign"|"revoke", "parts": [...]}. The partition
assignment strategy is roundrobin for both clients (the one strategy all three clients of the mixed
group share).
"""

from __future__ import annotations

import json
import sys
import threading
import time

cfg = json.loads(sys.argv[1])
out_lock = threading.Lock()


def emit(ev: str, **kw) -> None:
    with out_lock:
        sys.stdout.write(json.dumps({"ev": ev, "t": time.monotonic(), **kw}) + "\n")
        sys.stdout.flush()


state = {"commit": True, "paused": False, "close": False}


def stdin_loop() -> None:
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "nocommit":
            state["commit"] = False
        elif cmd == "pause":
            state["paused"] = True
        elif cmd == "resume":
            state["paused"] = False
        elif cmd == "close":
            state["close"] = True
        emit("ack", cmd=cmd)
    state["close"] = True


def dec(b):
    return None if b is None else b.decode()


def run_confluent() -> None:
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    c = Consumer({
        "bootstrap.servers": cfg["bootstrap"],
        "group.id": cfg["group"],
        "client.id": cfg["client_id"],
        "partition.assignment.strategy": "roundrobin",
        "session.timeout.ms": cfg.get("session_timeout_ms", 6000),
        "heartbeat.interval.ms": 500,
        "max.poll.interval.ms": 60000,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 100,
        "socket.timeout.ms": 10000,
    })

    def on_assign(consumer, parts):
        emit("assign", parts=sorted(p.partition for p in parts))

    def on_revoke(consumer, parts):
        emit("revoke", parts=sorted(p.partition for p in parts))

    c.subscribe([cfg["topic"]], on_assign=on_assign, on_revoke=on_revoke)
    emit("ready")
    applied_pause = False
    while not state["close"]:
        if state["paused"] != applied_pause:
            applied_pause = state["paused"]
            asg = c.assignment()
            if asg:
                (c.pause if applied_pause else c.resume)(asg)
        m = c.poll(0.1)
        if m is None:
            continue
        if m.error():
            emit("error", msg=str(m.error()))
            continue
        emit("msg", p=m.partition(), o=m.offset(), k=dec(m.key()), v=dec(m.value()))
        if state["commit"]:
            try:
                c.commit(offsets=[TopicPartition(m.topic(), m.partition(), m.offset() + 1)], asynchronous=False)
                emit("commit", p=m.partition(), o=m.offset() + 1)
            except KafkaException as e:
                emit("commit_error", p=m.partition(), o=m.offset() + 1, msg=str(e))
    c.close()
    emit("closed")


def run_kafka_python() -> None:
    from kafka import KafkaConsumer, TopicPartition
    from kafka.consumer.subscription_state import ConsumerRebalanceListener
    from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
    from kafka.errors import KafkaError
    from kafka.structs import OffsetAndMetadata

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked):
            emit("revoke", parts=sorted(p.partition for p in revoked))

        def on_partitions_assigned(self, assigned):
            emit("assign", parts=sorted(p.partition for p in assigned))

    c = KafkaConsumer(
        bootstrap_servers=cfg["bootstrap"],
        group_id=cfg["group"],
        client_id=cfg["client_id"],
        partition_assignment_strategy=[RoundRobinPartitionAssignor],
        session_timeout_ms=cfg.get("session_timeout_ms", 6000),
        heartbeat_interval_ms=500,
        max_poll_interval_ms=60000,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=100,
    )
    c.subscribe([cfg["topic"]], listener=Listener())
    emit("ready")
    while not state["close"]:
        if state["paused"]:
            c.pause(*c.assignment())
        else:
            c.resume(*c.paused())
        batch = c.poll(timeout_ms=100, max_records=1)
        for tp, records in batch.items():
            for r in records:
                if state["paused"]:
                    raise AssertionError(f"message while paused: {r.partition}@{r.offset}")
                emit("msg", p=r.partition, o=r.offset, k=dec(r.key), v=dec(r.value))
                if state["commit"]:
                    try:
                        c.commit({TopicPartition(tp.topic, tp.partition): OffsetAndMetadata(r.offset + 1, "", -1)})
                        emit("commit", p=r.partition, o=r.offset + 1)
                    except KafkaError as e:
                        emit("commit_error", p=r.partition, o=r.offset + 1, msg=repr(e))
    c.close(autocommit=False)
    emit("closed")


if __name__ == "__main__":
    threading.Thread(target=stdin_loop, daemon=True).start()
    try:
        {"confluent": run_confluent, "kafka-python": run_kafka_python}[cfg["client"]]()
    except Exception as e:  # noqa: BLE001 - reported to the test, which fails on it
        emit("fatal", msg=repr(e))
        raise

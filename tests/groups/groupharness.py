"""Helpers for the consumer-group tests: `Member`, one group consumer in its own process (confluent-kafka
or kafka-python through gworker.py, kafkajs through node/gconsumer.js) whose JSON-line events a reader
thread collects; keyed produce; committed offsets through the AdminClient."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from stromtest import admin, produce_sync, producer, wait_until

HERE = Path(__file__).resolve().parent


class Member:
    """A group consumer process. Events: ready, assign/revoke (parts), msg (p, o, k, v), commit (p, o),
    commit_error, error, fatal, ack (cmd), closed."""

    def __init__(self, client: str, bootstrap: str, topic: str, group: str, name: str,
                 node: str | None = None, session_timeout_ms: int = 6000):
        self.client = client
        self.name = name
        args = json.dumps({"client": client, "bootstrap": bootstrap, "topic": topic, "group": group,
                           "client_id": name, "session_timeout_ms": session_timeout_ms})
        if client == "kafkajs":
            argv = [node or "node", str(HERE / "node" / "gconsumer.js"), args]
        else:
            argv = [sys.executable, str(HERE / "gworker.py"), args]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, bufsize=1)
        self.events: list[dict] = []
        self.stderr: list[str] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {"ev": "stdout", "line": line.rstrip()}
            with self.lock:
                self.events.append(ev)

    def _read_err(self):
        for line in self.proc.stderr:
            with self.lock:
                self.stderr.append(line.rstrip())

    # -- views
    def evs(self, kind: str | None = None) -> list[dict]:
        with self.lock:
            return [e for e in self.events if kind is None or e["ev"] == kind]

    def msgs(self) -> list[tuple]:
        return [(e["p"], e["o"], e["k"], e["v"]) for e in self.evs("msg")]

    def assignment(self) -> list[int] | None:
        """The current assignment as the client reported it (eager protocol: each assign replaces)."""
        a = self.evs("assign")
        return a[-1]["parts"] if a else None

    def commits(self) -> dict[int, int]:
        out = {}
        for e in self.evs("commit"):
            out[e["p"]] = e["o"]
        return out

    def problems(self) -> list[dict]:
        return [e for e in self.evs() if e["ev"] in ("fatal", "commit_error", "error", "stdout")]

    def describe(self) -> str:
        tail = self.evs()[-15:]
        return f"{self.name} ({self.client}) rc={self.proc.poll()} last events={tail} stderr={self.stderr[-20:]}"

    # -- control
    def send(self, cmd: str, wait: bool = True) -> None:
        n = len([e for e in self.evs("ack") if e["cmd"] == cmd])
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        if wait:
            wait_until(lambda: len([e for e in self.evs("ack") if e["cmd"] == cmd]) > n, 10,
                       what=f"{self.name} ack of {cmd}")

    def close(self, timeout: float = 30) -> None:
        self.send("close", wait=False)
        self.proc.wait(timeout)
        assert self.evs("closed"), self.describe()

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def produce_keyed(bootstrap: str, topic: str, tag: str, n: int, nkeys: int = 37) -> list[tuple]:
    """Produce n keyed messages (key k<i % nkeys>, value <tag>-<i>); return (partition, offset, key, value)."""
    p = producer(bootstrap)
    msgs = [{"key": f"k{i % nkeys}".encode(), "value": f"{tag}-{i}".encode()} for i in range(n)]
    res = produce_sync(p, topic, msgs)
    return [(part, off, m["key"].decode(), m["value"].decode()) for (part, off, _), m in zip(res, msgs)]


def committed(bootstrap: str, group: str, topic: str, partitions) -> dict[int, int]:
    """The group's committed offsets (AdminClient list_consumer_group_offsets), -1001 when none."""
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
    a = admin(bootstrap)
    req = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    res = a.list_consumer_group_offsets([req], request_timeout=15)[group].result(15)
    return {tp.partition: tp.offset for tp in res.topic_partitions}

"""Helpers shared by the end-to-end tests (confluent-kafka based unless said otherwise)."""

from __future__ import annotations

import itertools
import logging
import os
import subprocess
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

import kwire
from pathlib import Path

# The repository root and the broker binary the tests start (tests import these from here, not
# from conftest: several conftest modules exist and only one may own that name at a time).
ROOT = Path(__file__).resolve().parent.parent
STROM_BIN = Path(os.environ.get("STROM_BIN", str(ROOT / "target" / "debug" / "strom")))

_counter = itertools.count()
# librdkafka logs through Python logging (captured by pytest) instead of straight to stderr.
RDKAFKA_LOG = logging.getLogger("rdkafka")


def unique_topic(prefix: str = "t") -> str:
    return f"{prefix}-{os.getpid()}-{next(_counter)}-{time.monotonic_ns() % 10**6}"


def wait_until(pred, timeout: float = 10.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000}, logger=RDKAFKA_LOG)


def create_topic(bootstrap: str, name: str, partitions: int = 1, config: dict | None = None,
                 timeout: float = 15.0) -> None:
    a = admin(bootstrap)
    fs = a.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1,
                                   config={k: str(v) for k, v in (config or {}).items()})],
                         operation_timeout=timeout, request_timeout=timeout)
    fs[name].result(timeout)
    # Wait until metadata shows every partition with a leader.
    def ready():
        md = a.list_topics(name, timeout=5).topics.get(name)
        return md is not None and md.error is None and len(md.partitions) == partitions \
            and all(p.leader >= 0 for p in md.partitions.values())
    wait_until(ready, timeout, what=f"topic {name} in metadata")


def producer(bootstrap: str, **conf) -> Producer:
    base = {"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
            "message.timeout.ms": 20000, "socket.timeout.ms": 10000}
    base.update(conf)
    return Producer(base, logger=RDKAFKA_LOG)


def produce_sync(p: Producer, topic: str, messages: list[dict], timeout: float = 30.0) -> list:
    """Produce dicts (value, key, headers, timestamp, partition) and wait for every delivery report.

    Returns one (partition, offset, timestamp) per message, in input order; raises on any error.
    """
    results: list = [None] * len(messages)
    errors = []

    def cb_for(i):
        def cb(err, msg):
            if err is not None:
                errors.append((i, err))
            else:
                results[i] = (msg.partition(), msg.offset(), msg.timestamp())
        return cb

    for i, m in enumerate(messages):
        kw = {k: v for k, v in m.items() if v is not None}
        while True:
            try:
                p.produce(topic, on_delivery=cb_for(i), **kw)
                break
            except BufferError:
                p.poll(0.1)
        p.poll(0)
    remaining = p.flush(timeout)
    assert remaining == 0, f"{remaining} messages not delivered within {timeout}s"
    assert not errors, f"delivery errors: {errors[:5]}"
    return results


def consumer(bootstrap: str, **conf) -> Consumer:
    base = {"bootstrap.servers": bootstrap, "group.id": "strom-tests-unused",
            "enable.auto.commit": False, "enable.auto.offset.store": False,
            "auto.offset.reset": "error", "socket.timeout.ms": 10000,
            "fetch.wait.max.ms": 100, "enable.partition.eof": True,
            "check.crcs": True}  # verify the CRC of every batch the broker serves
    base.update(conf)
    return Consumer(base, logger=RDKAFKA_LOG)


def consume_range(bootstrap: str, topic: str, partition: int, start: int, count: int | None = None,
                  timeout: float = 20.0, **conf) -> list:
    """Read messages from `start` by assign() until `count` messages or partition EOF.

    Returns the confluent Message objects; raises on any consumer error.
    """
    c = consumer(bootstrap, **conf)
    try:
        c.assign([TopicPartition(topic, partition, start)])
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if count is not None and len(out) >= count:
                break
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    if count is None:
                        return out
                    continue
                raise KafkaException(m.error())
            out.append(m)
        if count is not None:
            assert len(out) >= count, f"got {len(out)} of {count} messages from {topic}/{partition}@{start}"
            return out[:count]
        raise AssertionError(f"no partition EOF within {timeout}s for {topic}/{partition} ({len(out)} read)")
    finally:
        c.close()


def watermarks(bootstrap: str, topic: str, partition: int = 0) -> tuple[int, int]:
    c = consumer(bootstrap)
    try:
        return c.get_watermark_offsets(TopicPartition(topic, partition), timeout=10, cached=False)
    finally:
        c.close()


def assert_serving(bootstrap: str) -> None:
    """The broker still answers a new client: raw ApiVersions v3 and a confluent-kafka Metadata call."""
    err, apis = kwire.api_versions(bootstrap, 3)
    assert err == 0 and kwire.API_METADATA in apis, (err, apis)
    md = admin(bootstrap).list_topics(timeout=10)
    assert len(md.brokers) == 1, md.brokers


def kcat(*args: str, input: bytes | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run(["kcat", *args], input=input, capture_output=True, timeout=timeout)

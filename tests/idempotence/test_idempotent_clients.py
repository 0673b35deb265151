"""Idempotent producers of real clients under lost responses (issue 7).

Each client produces a steady keyed load through `CuttingProxy`, which cuts connections after
Produce requests were forwarded (mostly right when the broker's response to one comes back, so
the broker surely appended it and the client surely retries it). Afterwards every message must be
in the log exactly once, in production order per partition, at the offset its delivery report
gave. A control run with idempotence off shows that the same proxy does make plain retries write
duplicates, so the idempotent runs are really exercised.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import Producer

from idemload import KEYS, check_exactly_once, payload, read_log
from stromtest import RDKAFKA_LOG, create_topic, unique_topic

PARTITIONS = 4
LOAD_SECONDS = 6.0
NODE_DIR = Path(__file__).resolve().parent.parent / "compat" / "node"


def confluent_load(bootstrap: str, topic: str, client: str, idempotent: bool, seconds: float,
                   rate: int = 3000):
    """Produce at ~`rate` msg/s for `seconds`; returns (sent, acked {value: (partition, offset)}, errors)."""
    acked: dict[bytes, tuple[int, int]] = {}
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append((msg.value(), str(err)))
        else:
            assert msg.value() not in acked, f"{msg.value()!r} acknowledged twice"
            acked[msg.value()] = (msg.partition(), msg.offset())

    conf = {"bootstrap.servers": bootstrap, "enable.idempotence": idempotent, "acks": "all",
            "linger.ms": 5, "message.timeout.ms": 90000, "socket.timeout.ms": 10000,
            "retry.backoff.ms": 20, "retry.backoff.max.ms": 200,
            "reconnect.backoff.ms": 10, "reconnect.backoff.max.ms": 200}
    if not idempotent:
        conf.update({"retries": 1000, "max.in.flight.requests.per.connection": 5})
    p = Producer(conf, logger=RDKAFKA_LOG)
    n = 0
    start = time.monotonic()
    while (now := time.monotonic()) < start + seconds:
        due = int((now - start) * rate)
        while n < due:
            k, v = payload(client, n)
            try:
                p.produce(topic, key=k, value=v, on_delivery=cb)
                n += 1
            except BufferError:
                p.poll(0.01)
        p.poll(0.005)
    return p, n, acked, errors


def test_confluent_idempotent_producer_through_cutting_proxy(proxied_broker):
    broker, proxy = proxied_broker
    topic = unique_topic("idem-rdk")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    proxy.start_cutting(cut_every=12, p_after_delay=0.01)
    p, sent, acked, errors = confluent_load(broker.bootstrap, topic, "rdk", True, LOAD_SECONDS)
    remaining = p.flush(60)  # cutting is still on: retries must get through it
    proxy.stop_cutting()
    remaining += p.flush(30)
    print(f"confluent idempotent: sent {sent}, proxy {proxy.counters}")
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors {errors[:5]}"
    assert proxy.counters.get("cuts_on_response", 0) >= 5, proxy.counters
    assert proxy.counters.get("produce_responses_lost", 0) >= 5, proxy.counters
    check_exactly_once(read_log(broker.bootstrap, topic, PARTITIONS), "rdk", sent, acked)


def test_control_plain_retries_through_cutting_proxy_duplicate(proxied_broker):
    """Without idempotence the same proxy makes retries write messages twice (the proxy works)."""
    broker, proxy = proxied_broker
    topic = unique_topic("idem-ctl")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    proxy.start_cutting(cut_every=10, p_after_delay=0.0)
    p, sent, acked, errors = confluent_load(broker.bootstrap, topic, "ctl", False, 3.0)
    proxy.stop_cutting()
    assert p.flush(60) == 0 and not errors, errors[:5]
    log = read_log(broker.bootstrap, topic, PARTITIONS)
    values = Counter(v for recs in log.values() for _, _, v in recs)
    print(f"control: sent {sent}, stored {sum(values.values())}, proxy {proxy.counters}")
    assert set(values) == {payload("ctl", n)[1] for n in range(sent)}
    assert sum(values.values()) > sent, "no duplicates without idempotence: the proxy lost no response"


def test_kafka_python_idempotent_producer_through_cutting_proxy(proxied_broker):
    from kafka import KafkaProducer

    broker, proxy = proxied_broker
    topic = unique_topic("idem-kpy")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    p = KafkaProducer(bootstrap_servers=broker.bootstrap, enable_idempotence=True, acks="all",
                      linger_ms=5, retries=1_000_000, request_timeout_ms=10000, delivery_timeout_ms=90000,
                      retry_backoff_ms=20, reconnect_backoff_ms=10, reconnect_backoff_max_ms=200,
                      max_in_flight_requests_per_connection=5)
    assert p.config["enable_idempotence"] is True
    acked: dict[bytes, tuple[int, int]] = {}
    errors = []
    lock = threading.Lock()

    def ok(value):
        def cb(md):
            with lock:
                assert value not in acked, f"{value!r} acknowledged twice"
                acked[value] = (md.partition, md.offset)
        return cb

    def fail(value):
        def cb(exc):
            with lock:
                errors.append((value, repr(exc)))
        return cb

    proxy.start_cutting(cut_every=12, p_after_delay=0.01)
    rate, n, start = 1500, 0, time.monotonic()
    while (now := time.monotonic()) < start + LOAD_SECONDS:
        due = int((now - start) * rate)
        while n < due:
            k, v = payload("kpy", n)
            p.send(topic, key=k, value=v).add_callback(ok(v)).add_errback(fail(v))
            n += 1
        time.sleep(0.005)
    p.flush(60)
    proxy.stop_cutting()
    p.flush(30)
    p.close(10)
    print(f"kafka-python idempotent: sent {n}, proxy {proxy.counters}")
    assert not errors, f"{len(errors)} send errors, e.g. {errors[:5]}"
    assert len(acked) == n
    assert proxy.counters.get("cuts_on_response", 0) >= 5, proxy.counters
    check_exactly_once(read_log(broker.bootstrap, topic, PARTITIONS), "kpy", n, acked)


KAFKAJS_SCRIPT = r"""
const path = require('path');
const { Kafka, logLevel } = require(path.join(process.env.KAFKAJS_DIR, 'kafkajs'));
const cfg = JSON.parse(process.argv[2]);
(async () => {
  const kafka = new Kafka({ clientId: 'idem-kjs', brokers: [cfg.bootstrap], logLevel: logLevel.NOTHING,
                            requestTimeout: 10000, connectionTimeout: 3000,
                            retry: { retries: 1000, initialRetryTime: 20, maxRetryTime: 300 } });
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const acks = [];
  let n = 0;
  const start = Date.now();
  while (Date.now() - start < cfg.seconds * 1000) {
    const messages = [];
    for (let i = 0; i < cfg.batch; i++, n++) {
      messages.push({ key: cfg.keys[n % cfg.keys.length], value: `kjs-${String(n).padStart(7, '0')}`,
                      partition: n % cfg.partitions });
    }
    const first = n - cfg.batch;
    const res = await producer.send({ topic: cfg.topic, acks: -1, messages });
    acks.push({ first, results: res.map(r => ({ partition: r.partition, errorCode: r.errorCode,
                                                baseOffset: r.baseOffset })) });
  }
  await producer.disconnect();
  console.log(JSON.stringify({ sent: n, acks }));
})().catch(e => { console.error(e && e.stack || String(e)); process.exit(1); });
"""


def test_kafkajs_idempotent_producer_through_cutting_proxy(proxied_broker, tmp_path):
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "kafkajs").is_dir():
        pytest.fail("node or kafkajs missing: run scripts/install-test-deps.sh")
    broker, proxy = proxied_broker
    topic = unique_topic("idem-kjs")
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS)
    script = tmp_path / "idem_kafkajs.js"
    script.write_text(KAFKAJS_SCRIPT)
    batch = 20
    cfg = {"bootstrap": broker.bootstrap, "topic": topic, "partitions": PARTITIONS, "seconds": LOAD_SECONDS,
           "batch": batch, "keys": [payload("kjs", i)[0].decode() for i in range(KEYS)]}
    proxy.start_cutting(cut_every=10, p_after_delay=0.02)
    r = subprocess.run([node, str(script), json.dumps(cfg)], capture_output=True, timeout=150,
                       env=dict(os.environ, KAFKAJS_DIR=str(NODE_DIR / "node_modules")))
    proxy.stop_cutting()
    out = r.stdout.decode().strip().splitlines()
    assert r.returncode == 0 and out, f"node exited {r.returncode}\nstderr: {r.stderr.decode()[-3000:]}"
    res = json.loads(out[-1])
    sent = res["sent"]
    print(f"kafkajs idempotent: sent {sent}, proxy {proxy.counters}")
    assert proxy.counters.get("cuts_on_response", 0) >= 3, proxy.counters
    # Each send put messages first..first+batch-1 round-robin on the partitions (explicit partition).
    acked = {}
    for a in res["acks"]:
        base = {x["partition"]: x["baseOffset"] for x in a["results"]}
        assert all(x["errorCode"] == 0 for x in a["results"]), a
        per_part: dict[int, int] = {}
        for n in range(a["first"], a["first"] + batch):
            part = n % PARTITIONS
            acked[payload("kjs", n)[1]] = (part, int(base[part]) + per_part.get(part, 0))
            per_part[part] = per_part.get(part, 0) + 1
    check_exactly_once(read_log(broker.bootstrap, topic, PARTITIONS), "kjs", sent, acked)

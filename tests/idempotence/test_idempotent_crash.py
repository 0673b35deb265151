"""SIGKILL of the broker in the middle of an idempotent load (issue 7).

confluent-kafka produces with `enable.idempotence=true` straight to the broker while the broker is
killed with SIGKILL several times and restarted on the same data directory and ports. The same
producer object carries on (librdkafka reconnects and retries what was in flight with the same
producer id and sequences); the broker must recognise the batches it appended before the kill
(producer state rebuilt from snapshots and the log tail) so nothing is written twice, and nothing
acknowledged or retried may be lost.
"""

from __future__ import annotations

import random
import time

import pytest
from confluent_kafka import Producer

from idemload import check_exactly_once, payload, read_log
from stromtest import RDKAFKA_LOG, create_topic, unique_topic

PARTITIONS = 3
ROUNDS = 3


@pytest.mark.timeout(180)
@pytest.mark.parametrize("when", ["random", "after-lost-response"])
def test_sigkill_during_idempotent_load(request, when):
    """`random`: SIGKILL at random moments of the load, producer connected straight to the broker.
    `after-lost-response`: through the cutting proxy; each SIGKILL comes right after the proxy
    dropped the broker's response to a Produce request, so the batch is surely in the log, unacked,
    and librdkafka retries it against the restarted broker."""
    if when == "random":
        broker, proxy = request.getfixturevalue("broker"), None
    else:
        broker, proxy = request.getfixturevalue("proxied_broker")
    topic = unique_topic("idem-crash")
    # Small segments: rolls (and so producer state snapshots) happen during the load, so recovery
    # uses a snapshot plus a log tail rather than a scan from offset 0.
    create_topic(broker.bootstrap, topic, partitions=PARTITIONS, config={"segment.bytes": 16384})
    acked: dict[bytes, tuple[int, int]] = {}
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append((msg.value(), str(err)))
        else:
            assert msg.value() not in acked, f"{msg.value()!r} acknowledged twice"
            acked[msg.value()] = (msg.partition(), msg.offset())

    p = Producer({"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "acks": "all",
                  "linger.ms": 2, "batch.num.messages": 200, "message.timeout.ms": 120000,
                  "socket.timeout.ms": 10000, "retry.backoff.ms": 50, "retry.backoff.max.ms": 300,
                  "reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 300,
                  "queue.buffering.max.messages": 50000}, logger=RDKAFKA_LOG)
    rng = random.Random()
    n = 0
    rate = 4000

    def produce_for(seconds: float):
        nonlocal n
        start = time.monotonic()
        base = n
        while (now := time.monotonic()) < start + seconds:
            due = base + int((now - start) * rate)
            while n < due:
                k, v = payload("crash", n)
                try:
                    p.produce(topic, key=k, value=v, on_delivery=cb)
                    n += 1
                except BufferError:
                    p.poll(0.01)
                    break
            p.poll(0.002)

    kills = []
    for r in range(ROUNDS):
        produce_for(rng.uniform(1.0, 2.0))
        if proxy is not None:
            cut = proxy.cut_next_produce_response()
            deadline = time.monotonic() + 10
            while not cut.is_set() and time.monotonic() < deadline:
                produce_for(0.01)
            assert cut.is_set(), f"no Produce response dropped: {proxy.counters}"
        # A few more sends right before the kill, with no poll in between: something is surely
        # unacknowledged when the broker dies (at a low load a 2 ms poll could ack everything).
        for _ in range(20):
            k, v = payload("crash", n)
            p.produce(topic, key=k, value=v, on_delivery=cb)
            n += 1
        acked_before = len(acked)
        broker.kill()
        kills.append((n, acked_before))
        produce_for(rng.uniform(0.1, 0.5))  # the producer keeps going while the broker is down
        broker.start()
    produce_for(1.0)
    remaining = p.flush(90)
    print(f"{when}: produced {n}, acked {len(acked)}, (produced, acked) at each kill {kills}, errors {len(errors)}")
    assert remaining == 0 and not errors, f"{remaining} undelivered, errors {errors[:5]}"
    assert all(a > 100 for _, a in kills), f"load too light before a kill: {kills}"
    assert all(a < prod for prod, a in kills), f"nothing was in flight at a kill: {kills}"
    if proxy is not None:
        assert proxy.counters.get("cuts_on_response") == ROUNDS, proxy.counters
    check_exactly_once(read_log(broker.bootstrap, topic, PARTITIONS), "crash", n, acked)

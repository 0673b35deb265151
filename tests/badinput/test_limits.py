"""Limits: connections, request size, in-flight requests. A limit that is hit yields a closed
connection or a Kafka error, never unbounded memory or a wedged broker.
"""

from __future__ import annotations

import struct
import time

import kwire
from kwire import Conn, frame, header_v1, i32
from stromtest import assert_serving, create_topic, producer, unique_topic, wait_until


def open_answering(bootstrap, n):
    """n open connections that each answered ApiVersions, or None (all closed again)."""
    conns = []
    try:
        for i in range(n):
            c = Conn.to(bootstrap)
            conns.append(c)
            c.send(kwire.api_versions_request(3, i))
            corr, err, _, _ = kwire.parse_api_versions_response(c.recv_frame(), 3)
            assert (corr, err) == (i, 0)
        return conns
    except (kwire.Closed, OSError):
        for c in conns:
            c.close()
        time.sleep(0.2)
        return None


def test_connection_limit(broker_factory):
    b = broker_factory(config={"connections_max": 3})
    # Connections closed just before (the readiness probe) may take a moment to be counted out.
    held = wait_until(lambda: open_answering(b.bootstrap, 3), timeout=10, what="3 connections served")
    try:
        # The fourth is closed without an answer (or refused).
        try:
            extra = Conn.to(b.bootstrap, timeout=5)
        except OSError:
            extra = None
        if extra is not None:
            try:
                extra.send(kwire.api_versions_request(3, 99))
            except OSError:
                pass
            assert extra.expect_closed() == b""
            extra.close()
    finally:
        for c in held:
            c.close()
    # Freed slots are usable again.
    again = wait_until(lambda: open_answering(b.bootstrap, 3), timeout=10, what="freed slots reused")
    for c in again:
        c.close()


def test_request_size_limit(broker_factory):
    b = broker_factory(config={"socket_request_max_bytes": 1024 * 1024,
                               "queued_request_bytes_max": 8 * 1024 * 1024})
    # A frame claiming 1 MiB + 1 is refused by its length alone.
    with Conn.to(b.bootstrap) as c:
        c.send_raw(i32(1024 * 1024 + 1) + header_v1(kwire.API_METADATA, 1, 1))
        assert c.expect_closed() == b""
    # A real client whose produce request is larger than the limit loses that connection; the
    # message is not acknowledged, and the broker keeps serving.
    topic = unique_topic("limit")
    create_topic(b.bootstrap, topic, partitions=1, config={"max.message.bytes": 4 * 1024 * 1024})
    p = producer(b.bootstrap, **{"message.max.bytes": 4 * 1024 * 1024, "compression.type": "none",
                                 "message.timeout.ms": 5000, "retries": 0})
    errs = []
    p.produce(topic, value=b"\x01" * (2 * 1024 * 1024), partition=0,
              on_delivery=lambda err, msg: errs.append(err))
    p.flush(15)
    assert len(errs) == 1 and errs[0] is not None, errs
    assert_serving(b.bootstrap)


def test_deep_pipeline_is_answered_in_order(broker):
    """More pipelined requests than the per-connection in-flight limit (100): all answered, in order."""
    n = 500
    with Conn.to(broker.bootstrap, timeout=30) as c:
        c.send_raw(b"".join(frame(kwire.api_versions_request(3, i)) for i in range(n)))
        order = [struct.unpack(">i", c.recv_frame()[:4])[0] for _ in range(n)]
    assert order == list(range(n))


def test_many_idle_connections_then_serve(broker):
    conns = [Conn.to(broker.bootstrap) for _ in range(200)]
    try:
        assert_serving(broker.bootstrap)
    finally:
        for c in conns:
            c.close()
    assert_serving(broker.bootstrap)

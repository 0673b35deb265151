"""Bad input on raw sockets: every case must close (or answer) that connection only, never kill or
wedge the broker. After each case a fresh client must still be served.
"""

from __future__ import annotations

import os
import random
import struct

import pytest

import kwire
from kwire import Conn, frame, header_v1, header_v2, i16, i32, uvarint
from stromtest import assert_serving, create_topic, kcat, produce_sync, producer, unique_topic


@pytest.fixture
def served(broker):
    """The broker, checked to be serving after the test body ran."""
    yield broker
    assert broker.running(), f"broker died:\n{broker.log_tail()}"
    assert_serving(broker.bootstrap)
    r = kcat("-b", broker.bootstrap, "-L", "-m", "10")
    assert r.returncode == 0 and b"1 brokers:" in r.stdout, r.stderr


def test_negative_frame_length(served):
    with Conn.to(served.bootstrap) as c:
        c.send_raw(i32(-1))
        c.expect_closed()
    with Conn.to(served.bootstrap) as c:
        c.send_raw(i32(-2147483648) + b"\x00" * 16)
        c.expect_closed()


def test_oversized_frame_length(served):
    for claim in (100 * 1024 * 1024 + 1, 200 * 1024 * 1024, 2**31 - 1):
        with Conn.to(served.bootstrap) as c:
            c.send_raw(i32(claim) + header_v1(kwire.API_METADATA, 1, 1))
            c.expect_closed()


def test_truncated_frame_then_close(served):
    with Conn.to(served.bootstrap) as c:
        c.send_raw(i32(100) + header_v1(kwire.API_METADATA, 1, 1) + b"\x00")
    # Half a length prefix.
    with Conn.to(served.bootstrap) as c:
        c.send_raw(b"\x00\x00")
    # Connect and close without a byte.
    Conn.to(served.bootstrap).close()


def test_zero_and_tiny_frames(served):
    for payload in (b"", b"\x00", b"\x00\x03\x00"):
        with Conn.to(served.bootstrap) as c:
            c.send(payload)
            c.expect_closed()


def test_garbage_body_after_valid_header(served):
    rng = random.Random(1234)
    for version in (0, 1, 5, 9, 12):
        hdr = header_v2(kwire.API_METADATA, version, 5) if version >= 9 else header_v1(kwire.API_METADATA, version, 5)
        with Conn.to(served.bootstrap) as c:
            c.send(hdr + bytes(rng.randrange(256) for _ in range(64)))
            # Either an error response for correlation id 5 or a closed connection; never a hang.
            try:
                resp = c.recv_frame()
                assert struct.unpack(">i", resp[:4])[0] == 5
            except kwire.Closed:
                pass
            except TimeoutError:
                pytest.fail(f"no answer and no close for garbage Metadata v{version}")


def test_unknown_api_key(served):
    """Kafka closes the connection on an API key it does not know (no response)."""
    apis = advertised(served.bootstrap)
    # Real Kafka APIs Strom does not speak (e.g. 57 UpdateFeatures, 50 DescribeUserScramCredentials).
    real_unspoken = [k for k in (57, 50, 51, 29, 30, 31, 4, 5, 6, 7) if k not in apis][:2]
    for key in [999, 32767, -5, *real_unspoken]:
        assert key not in apis
        with Conn.to(served.bootstrap) as c:
            c.send(header_v1(key, 0, 77) + b"\x00" * 8)
            got = c.expect_closed()
            assert got == b"", f"api key {key}: expected a close, got {got.hex()}"


def test_unsupported_version_of_known_api(served):
    """Metadata v99 / Fetch v3 (below our minimum): Kafka closes the connection."""
    for key, version in ((kwire.API_METADATA, 99), (kwire.API_FETCH, 3), (kwire.API_FETCH, -1)):
        with Conn.to(served.bootstrap) as c:
            c.send(header_v2(key, version, 78) + b"\x00" * 8)
            got = c.expect_closed()
            assert got == b"", f"api {key} v{version}: expected a close, got {got.hex()}"


@pytest.mark.parametrize("above", [1, 2, 99, "i16max"])
def test_api_versions_unsupported_version_fallback(served, above):
    """Kafka's fallback: a v0-format ApiVersions body with error 35 and the supported ranges.

    kafka-python 3.x opens with v4, librdkafka 2.x with v3: whatever is above our max gets this.
    """
    _, hi_advertised = advertised(served.bootstrap)[kwire.API_API_VERSIONS]
    version = 32767 if above == "i16max" else hi_advertised + above
    with Conn.to(served.bootstrap) as c:
        c.send(kwire.api_versions_request(version, 4242))
        resp = c.recv_frame()
        corr, err, apis, r = kwire.parse_api_versions_response(resp, 0)
        assert corr == 4242
        assert err == kwire.UNSUPPORTED_VERSION
        assert r.remaining() == 0, f"{r.remaining()} trailing bytes after the v0 body"
        assert kwire.API_API_VERSIONS in apis, apis
        lo, hi = apis[kwire.API_API_VERSIONS]
        assert lo == 0 and hi >= 3, (lo, hi)
        # The same connection goes on: the client retries with a version we speak.
        c.send(kwire.api_versions_request(3, 4243))
        corr, err, apis3, r = kwire.parse_api_versions_response(c.recv_frame(), 3)
        assert (corr, err) == (4243, 0)
        assert r.remaining() == 0


@pytest.mark.parametrize("version", [0, 1, 2, 3, 4])
def test_api_versions_each_version(served, version):
    with Conn.to(served.bootstrap) as c:
        c.send(kwire.api_versions_request(version, 9))
        corr, err, apis, r = kwire.parse_api_versions_response(c.recv_frame(), version)
        assert (corr, err) == (9, 0)
        assert r.remaining() == 0
        # Every API the issue requires is advertised.
        required = {0: "Produce", 1: "Fetch", 2: "ListOffsets", 3: "Metadata", 18: "ApiVersions",
                    19: "CreateTopics", 20: "DeleteTopics", 21: "DeleteRecords", 23: "OffsetForLeaderEpoch",
                    32: "DescribeConfigs", 33: "AlterConfigs", 35: "DescribeLogDirs", 37: "CreatePartitions",
                    44: "IncrementalAlterConfigs", 60: "DescribeCluster"}
        missing = {k: v for k, v in required.items() if k not in apis}
        assert not missing, missing
        for k, (lo, hi) in apis.items():
            assert 0 <= lo <= hi, (k, lo, hi)


def test_metadata_claiming_2_31_topics(served):
    """Known trap: kafka-protocol's decoder preallocates from the wire count and aborts the process."""
    with Conn.to(served.bootstrap) as c:
        c.send(header_v1(kwire.API_METADATA, 1, 3) + i32(2**31 - 1))
        got = c.expect_closed()
        assert got == b"", f"expected a close, got {got.hex()}"
    # The same lie in a flexible version (compact array length) and in CreateTopics.
    with Conn.to(served.bootstrap) as c:
        c.send(header_v2(kwire.API_METADATA, 12, 4) + uvarint(2**31))
        assert c.expect_closed() == b""
    with Conn.to(served.bootstrap) as c:
        c.send(header_v1(19, 2, 5) + i32(2**31 - 1))
        assert c.expect_closed() == b""
    assert served.running()


def advertised(bootstrap):
    err, apis = kwire.api_versions(bootstrap, 3)
    assert err == 0
    return apis


@pytest.mark.timeout(180)
def test_crafted_counts_for_every_api(served):
    """For every advertised API and version, bodies made of huge counts must not hurt the broker."""
    apis = advertised(served.bootstrap)
    huge_i32 = i32(2**31 - 1)
    huge_varint = uvarint(2**32 - 1)  # compact length 2^32-2 after the -1
    patterns = {
        "i32-max": huge_i32 * 16,
        "varint-max": huge_varint * 16,
        "mixed": (huge_i32 + huge_varint + i16(0x7FFF)) * 8,
        "empty": b"",
    }
    checked = 0
    for key, (lo, hi) in sorted(apis.items()):
        for version in sorted({lo, hi, (lo + hi) // 2}):
            for name, body in patterns.items():
                flexible_hdr = header_v2(key, version, 1000 + key)
                plain_hdr = header_v1(key, version, 1000 + key)
                for hdr in (plain_hdr, flexible_hdr):
                    with Conn.to(served.bootstrap, timeout=2) as c:
                        c.send(hdr + body)
                        try:
                            c.recv_frame()  # an error answer is fine
                        except (kwire.Closed, TimeoutError):
                            pass
                    checked += 1
        # After each API, the broker must still answer a new client.
        assert served.running(), f"broker died on api {key}:\n{served.log_tail()}"
        err, _ = kwire.api_versions(served.bootstrap, 3)
        assert err == 0
    assert checked > 100


def test_random_fuzz_frames(served):
    """A few hundred random frames with valid-looking headers; the broker stays up."""
    apis = advertised(served.bootstrap)
    rng = random.Random(42)
    keys = sorted(apis)
    for n in range(300):
        key = rng.choice(keys)
        lo, hi = apis[key]
        v = rng.randint(lo, hi)
        hdr = (header_v2 if rng.random() < 0.5 else header_v1)(key, v, n)
        body = os.urandom(rng.randint(0, 200)) if n % 2 else bytes(
            rng.choice([0x00, 0x7F, 0xFF, 0x80, 0x01]) for _ in range(rng.randint(0, 64)))
        with Conn.to(served.bootstrap, timeout=2) as c:
            c.send(hdr + body)
            try:
                c.recv_frame()
            except (kwire.Closed, TimeoutError):
                pass
    assert served.running()


def test_pipelined_requests_answered_in_order(served):
    topic = unique_topic("pipe")
    create_topic(served.bootstrap, topic, partitions=1)
    produce_sync(producer(served.bootstrap), topic, [dict(value=b"x", partition=0)])
    with Conn.to(served.bootstrap) as c:
        reqs = []
        for corr in range(1, 41):
            if corr % 3 == 0:
                reqs.append(frame(kwire.metadata_v1_request([topic], corr)))
            elif corr % 3 == 1:
                reqs.append(frame(kwire.api_versions_request(3, corr)))
            else:
                reqs.append(frame(kwire.fetch_v4_request(topic, 0, 0, corr, max_wait_ms=50)))
        c.send_raw(b"".join(reqs))
        order = [struct.unpack(">i", c.recv_frame()[:4])[0] for _ in range(40)]
        assert order == list(range(1, 41))


def test_produce_corrupt_batch_gets_error(served):
    """A produce whose record batch has a bad CRC gets CORRUPT_MESSAGE (2); the log is untouched."""
    topic = unique_topic("corrupt")
    create_topic(served.bootstrap, topic, partitions=1)
    # Capture a real batch by producing it, reading it back raw, then re-sending it with one byte flipped.
    produce_sync(producer(served.bootstrap, **{"compression.type": "none"}), topic,
                 [dict(value=b"hello world", partition=0)])
    err, hw, _, recs = kwire.fetch_v4(served.bootstrap, topic, 0, 0)
    assert err == 0 and hw == 1 and recs
    batch = bytearray(recs)
    batch[-2] ^= 0xFF  # inside the record, covered by the CRC
    body = (i16(-1) + i16(-1) + i32(5000)  # transactional_id null, acks -1, timeout (v3 produce)
            + i32(1) + kwire.string(topic) + i32(1) + i32(0) + i32(len(batch)) + bytes(batch))
    # Produce v3: transactional_id, acks, timeout_ms, topics.
    with Conn.to(served.bootstrap) as c:
        c.send(header_v1(0, 3, 55) + body)
        r = kwire.Reader(c.recv_frame())
        assert r.i32() == 55
        assert r.i32() == 1 and r.string() == topic
        assert r.i32() == 1
        part, code = r.i32(), r.i16()
        assert (part, code) == (0, 2), (part, code)  # CORRUPT_MESSAGE
    err, hw, _, _ = kwire.fetch_v4(served.bootstrap, topic, 0, 0)
    assert (err, hw) == (0, 1)

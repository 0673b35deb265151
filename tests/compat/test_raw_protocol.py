"""APIs no client library in these tests drives directly, checked on the wire with hand-made requests."""

from __future__ import annotations

import kwire
from kwire import Conn, header_v1, i32, string
from stromtest import create_topic, produce_sync, producer, unique_topic


def offset_for_leader_epoch_v2(bootstrap, topic, partition, current_epoch, epoch):
    # v2: topics [topic, partitions [partition, current_leader_epoch, leader_epoch]]
    body = i32(1) + string(topic) + i32(1) + i32(partition) + i32(current_epoch) + i32(epoch)
    with Conn.to(bootstrap) as c:
        c.send(header_v1(23, 2, 31) + body)
        r = kwire.Reader(c.recv_frame())
    assert r.i32() == 31
    r.i32()  # throttle
    assert r.i32() == 1 and r.string() == topic
    assert r.i32() == 1
    err, pid, leader_epoch, end_offset = r.i16(), r.i32(), r.i32(), r.i64()
    assert pid == partition and r.remaining() == 0
    return err, leader_epoch, end_offset


def test_offset_for_leader_epoch(broker):
    topic = unique_topic("ofle")
    create_topic(broker.bootstrap, topic, partitions=1)
    produce_sync(producer(broker.bootstrap), topic, [dict(value=b"v", partition=0)] * 7)
    # The current epoch (0) ends at the log end offset.
    assert offset_for_leader_epoch_v2(broker.bootstrap, topic, 0, -1, 0) == (0, 0, 7)
    assert offset_for_leader_epoch_v2(broker.bootstrap, topic, 0, 0, 0) == (0, 0, 7)
    # A current_leader_epoch newer than the leader's -> UNKNOWN_LEADER_EPOCH (75).
    err, _, _ = offset_for_leader_epoch_v2(broker.bootstrap, topic, 0, 5, 0)
    assert err == 75, err
    # Unknown partition.
    err, _, _ = offset_for_leader_epoch_v2(broker.bootstrap, topic, 3, -1, 0)
    assert err == kwire.UNKNOWN_TOPIC_OR_PARTITION

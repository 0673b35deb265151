#!/usr/bin/env python3
"""What 1,000 idle long-polling consumers cost the broker (issue #6; not run by CI).

Opens N connections to a broker, each a consumer that long-polls one partition of an empty topic
the way librdkafka and the Java client do by default (Fetch with max_wait_ms=500, min_bytes=1,
sent again as soon as the previous one returns), and reads the broker's CPU time from /proc
over a measuring window. The consumers are raw Fetch v4 requests on asyncio, so the client side
costs little and nothing depends on a client library.

    python3 tests/perf/idle_consumers.py --broker-pid PID --bootstrap 127.0.0.1:9092 \\
        --topic idle --consumers 1000 --seconds 30

The topic must exist (e.g. `strom topic create idle -p 1`). Prints one JSON object: fetches
answered per second and the broker's CPU as a percentage of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import struct
import time

API_FETCH = 1


def fetch_request(correlation_id: int, topic: str, partition: int, offset: int, wait_ms: int) -> bytes:
    client_id = b"idle"
    header = struct.pack(">hhih", API_FETCH, 4, correlation_id, len(client_id)) + client_id
    name = topic.encode()
    body = struct.pack(">iiiib", -1, wait_ms, 1, 52428800, 0)
    body += struct.pack(">ih", 1, len(name)) + name
    body += struct.pack(">iiqi", 1, partition, offset, 1048576)
    frame = header + body
    return struct.pack(">i", len(frame)) + frame


async def consumer(host: str, port: int, topic: str, partition: int, wait_ms: int,
                   answered: list[int], stop: asyncio.Event) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    correlation_id = 0
    try:
        while not stop.is_set():
            correlation_id += 1
            writer.write(fetch_request(correlation_id, topic, partition, 0, wait_ms))
            await writer.drain()
            size = struct.unpack(">i", await reader.readexactly(4))[0]
            body = await reader.readexactly(size)
            if struct.unpack(">i", body[:4])[0] != correlation_id:
                raise RuntimeError("response out of order")
            answered[0] += 1
    finally:
        writer.close()


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--broker-pid", type=int, required=True)
    ap.add_argument("--bootstrap", default="127.0.0.1:9092")
    ap.add_argument("--topic", default="idle")
    ap.add_argument("--consumers", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--wait-ms", type=int, default=500)
    args = ap.parse_args()
    host, port = args.bootstrap.rsplit(":", 1)
    answered = [0]
    stop = asyncio.Event()
    tasks = []
    for i in range(args.consumers):
        tasks.append(asyncio.create_task(consumer(host, int(port), args.topic, 0, args.wait_ms, answered, stop)))
        if i % 100 == 99:
            await asyncio.sleep(0.05)
    await asyncio.sleep(2 * args.wait_ms / 1000 + 1)  # every consumer is polling
    cpu0, fetches0, t0 = cpu_seconds(args.broker_pid), answered[0], time.monotonic()
    await asyncio.sleep(args.seconds)
    cpu1, fetches1, t1 = cpu_seconds(args.broker_pid), answered[0], time.monotonic()
    stop.set()
    await asyncio.wait(tasks, timeout=2 * args.wait_ms / 1000 + 2)
    failed = [t for t in tasks if t.done() and not t.cancelled() and t.exception()]
    print(json.dumps({
        "consumers": args.consumers,
        "seconds": round(t1 - t0, 2),
        "fetches_per_sec": round((fetches1 - fetches0) / (t1 - t0), 1),
        "broker_cpu_percent_of_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
        "consumers_failed": len(failed),
    }))


if __name__ == "__main__":
    asyncio.run(main())

#!/usr/bin/env python3
"""Does a batch consumer reading old data slow a producer down? (issue #6; not run by CI)

Fills a topic with 1 GB of old data (1,000,000 x 1000 B), then RUNS times: a producer run
alone (`strom bench produce`, 100 B, acks=1) and the same run while `strom bench consume` reads
the whole old topic from the start, started at the same moment. Prints the median msgs/s of
both, the ratio, and how long the batch consumer took.

    cargo build --release -p strom
    python3 tests/perf/batch_consumer.py [--runs 5] [--messages 4000000]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench_all import STROM, Broker, bench, delete_topic

OLD_MESSAGES = 1_000_000
OLD_SIZE = 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--messages", type=int, default=4_000_000, help="records per producer run")
    args = ap.parse_args()
    broker = Broker()
    alone, together, consumer_seconds = [], [], []
    try:
        bench(broker, "produce", "--topic", "old", "--messages", str(OLD_MESSAGES), "--size", str(OLD_SIZE))
        for i in range(args.runs):
            os.sync()
            run = bench(broker, "produce", "--topic", f"alone-{i}", "--messages", str(args.messages))
            alone.append(run["msgs_per_sec"])
            delete_topic(broker, f"alone-{i}")
            os.sync()
            consumer = subprocess.Popen(
                [str(STROM), "bench", "consume", "-b", broker.bootstrap, "--topic", "old", "--messages",
                 str(OLD_MESSAGES), "--size", str(OLD_SIZE), "--format", "json"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            run = bench(broker, "produce", "--topic", f"together-{i}", "--messages", str(args.messages))
            together.append(run["msgs_per_sec"])
            read = json.loads(consumer.communicate(timeout=300)[0])
            consumer_seconds.append(read["seconds"])
            delete_topic(broker, f"together-{i}")
            print(f"run {i + 1}: alone {alone[-1]:,.0f}, with the batch consumer {together[-1]:,.0f} msgs/s; "
                  f"it read {read['mb_per_sec']:.0f} MB/s in {read['seconds']:.2f} s", file=sys.stderr)
    finally:
        broker.stop()
    a, t = statistics.median(alone), statistics.median(together)
    print(json.dumps({"runs": args.runs, "producer_alone_msgs_per_sec": round(a),
                      "producer_with_batch_consumer_msgs_per_sec": round(t), "ratio": round(t / a, 2),
                      "batch_consumer_seconds_median": round(statistics.median(consumer_seconds), 2)}))


if __name__ == "__main__":
    main()

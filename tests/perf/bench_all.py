#!/usr/bin/env python3
"""The issue #6 single-node benchmark suite, as BENCHMARKS.md reports it (not run by CI).

For each message size it runs wire-limit (the speed of light: bytes over loopback TCP into the
page cache and back, no protocol) three times (median) right before Strom, then `strom bench` RUNS times per case
against one release broker, and prints a markdown table: median (min-max) msgs/s, MB/s, latency
percentiles, and the ratio of the median to wire-limit's figure for the same size.

    cargo build --release -p strom -p strom-latency-floor
    python3 tests/perf/bench_all.py                 # everything, 5 runs per case
    python3 tests/perf/bench_all.py --runs 3 --only produce-100,consume-100

Cases per size (100 and 1000 B): produce-SIZE (acks=1) and produce-SIZE-all (acks=all), run
alternately; consume-SIZE (reads the first produce run's topic); e2e-SIZE (at half the median
produce-SIZE rate, linger 1 ms, batches of --e2e-batch-bytes (256 KiB: at ~500 MB/s a batch fills
in about half a millisecond; with the produce cases' 64 KiB the single producer needs ~7,000
requests a second through its 5 in-flight slots, and any hiccup grew a backlog it could not
work off; linger 0 sent smaller batches that cost the broker ~15% more CPU for a higher p50);
each run also reports its latency per 500 ms of send time and its producer's send-to-ack
latency); e2e-max-SIZE (the e2e pipeline unpaced, up to 3 runs, against `latency-floor pipeline`
unpaced: the most each carries, so the e2e rate's share of it shows how much room each has left
to work off a stall). The suite also writes 512 MiB into new page cache pages first and reports
the MB/s (this VM: 0.4-3 GB/s, depending on whether the host still backs its free memory). Each e2e run follows a `latency-floor pipeline` run at the same
rate (the same pacing and linger into a pipeline that only moves bytes: the latency no broker can
beat here; its records are FLOOR_RECORD_OVERHEAD_BYTES larger, so it writes as many bytes into the
page cache as Strom's log does, through the same page cache window: `--cache-window-mib`, by default
the broker's `log_cache_window_bytes`), and the e2e row's ratio is Strom's p99 over the floor's. The suite starts with
`latency-floor gaps` (how long threads go without running on this machine). The broker runs with defaults on a free port, data in a temporary
directory, HTTP off; each run uses a new topic, deleted after it (except the one consume reads),
and starts after an `fsync` of everything dirty, so runs meet the same page cache.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STROM = Path(os.environ.get("STROM_BIN", ROOT / "target" / "release" / "strom"))
WIRE_LIMIT_SRC = Path(os.environ.get("WIRE_LIMIT_SRC", ROOT.parent / "shared" / "tools" / "wire-limit"))
WIRE_LIMIT_BUILD = Path(tempfile.gettempdir()) / "wire-limit-build"
FLOOR = Path(os.environ.get("LATENCY_FLOOR_BIN", ROOT / "target" / "release" / "latency-floor"))

MESSAGES = {100: 4_000_000, 1000: 1_000_000}
# Bytes a record of N value bytes takes in Strom's log beyond N (Kafka's record framing: length,
# attributes, timestamp and offset deltas, key and value lengths, header count): ~110 B are
# stored per 100 B record. The floor's records are this much larger, so both write the same
# bytes into the page cache, whose new pages are this VM's scarcest resource (BENCHMARKS.md,
# eleventh session: each run's pages come from what the run before it freed).
FLOOR_RECORD_OVERHEAD_BYTES = 10


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wire_limit_binary() -> Path:
    binary = WIRE_LIMIT_BUILD / "target" / "release" / "wire-limit"
    if not binary.exists():
        if WIRE_LIMIT_BUILD.exists():
            shutil.rmtree(WIRE_LIMIT_BUILD)
        shutil.copytree(WIRE_LIMIT_SRC, WIRE_LIMIT_BUILD)
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=WIRE_LIMIT_BUILD, check=True)
    return binary


def wire_limit(size: int, runs: int = 3) -> dict:
    """The median of `runs` wire-limit runs (a single run varies by 2x or more here)."""
    results = []
    for _ in range(runs):
        os.sync()
        out = subprocess.run([str(wire_limit_binary()), "--size", str(size), "--seconds", "5"],
                             capture_output=True, text=True, check=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
        shutil.rmtree(Path(tempfile.gettempdir()) / "wire-limit", ignore_errors=True)
    median = {key: statistics.median(r[key] for r in results) for key in results[0] if key.endswith("_s")}
    median["runs"] = [{k: r[k] for k in ("produce_msgs_per_s", "consume_msgs_per_s")} for r in results]
    return median


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Broker:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="strom-bench-"))
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = open(self.dir / "broker.log", "w")
        self.proc = subprocess.Popen([str(STROM), "server", "--data-dir", str(self.dir / "data"),
                                      "--kafka-addr", self.bootstrap, "--http-addr", "off"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("broker did not start")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(broker: Broker, kind: str, *args: str) -> dict:
    cmd = [str(STROM), "bench", kind, "-b", broker.bootstrap, "--format", "json", *args]
    cpu0 = cpu_seconds(broker.proc.pid)
    started = time.monotonic()
    result = subprocess.run(["/usr/bin/time", "-f", "%U %S", *cmd], capture_output=True, text=True)
    wall = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr[-2000:]}")
    report = json.loads(result.stdout)
    user, system = (float(x) for x in result.stderr.strip().splitlines()[-1].split())
    report["client_cpu_s"] = round(user + system, 2)
    report["broker_cpu_s"] = round(cpu_seconds(broker.proc.pid) - cpu0, 2)
    report["wall_s"] = round(wall, 2)
    return report


def floor(*args: str) -> dict:
    """One `latency-floor` run: its JSON line, with the CPU it used."""
    cmd = [str(FLOOR), *args]
    result = subprocess.run(["/usr/bin/time", "-f", "%U %S", *cmd], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr[-2000:]}")
    report = json.loads(result.stdout.strip().splitlines()[-1])
    user, system = (float(x) for x in result.stderr.strip().splitlines()[-1].split())
    report["client_cpu_s"] = round(user + system, 2)
    report["broker_cpu_s"] = 0.0
    report["mb_per_sec"] = report.get("msgs_per_sec", 0) * report.get("size", 0) / 1e6
    return report


PAGE_REPORTING = Path("/sys/module/page_reporting/parameters")


def page_reporting() -> dict:
    """The guest kernel's free page reporting (virtio-balloon hands free memory back to the host;
    touching it again costs a fault on the host): its settings and how much it has reported.
    Empty where the kernel has none. BENCHMARKS.md (seventh session) shows runs stalling on it."""
    if not PAGE_REPORTING.is_dir():
        return {}
    state = {}
    for name in ("min_free_ms", "page_reporting_order", "reported_kib"):
        try:
            state[name] = int((PAGE_REPORTING / name).read_text())
        except (OSError, ValueError):
            pass
    return state


def reported_mib_since(before: dict) -> int | None:
    """MiB of free memory handed back to the host since `before` (a `page_reporting()`)."""
    after = page_reporting()
    if "reported_kib" not in before or "reported_kib" not in after:
        return None
    return (after["reported_kib"] - before["reported_kib"]) // 1024


def page_cache_write_mb_per_s(size_mib: int = 512) -> float:
    """How fast this machine writes new data into the page cache: `size_mib` MiB in 256 KiB
    writes to a new file (not synced), MB/s. On a VM whose free memory was handed back to the
    host, every new page faults on the host first and this is several times slower than a
    copy; e2e at ~470 MB/s needs more than that (BENCHMARKS.md, ninth session)."""
    chunk = b"\xa5" * (256 * 1024)
    path = Path(tempfile.mkdtemp(prefix="strom-probe-")) / "probe"
    try:
        started = time.monotonic()
        with open(path, "wb", buffering=0) as f:
            for _ in range(size_mib * 4):
                f.write(chunk)
        return round(size_mib * 1024 * 1024 / (time.monotonic() - started) / 1e6, 1)
    finally:
        shutil.rmtree(path.parent, ignore_errors=True)


def delete_topic(broker: Broker, topic: str) -> None:
    """Frees the disk (and the page cache) a finished run used."""
    subprocess.run([str(STROM), "topic", "delete", "-b", broker.bootstrap, topic], capture_output=True)


def summary(runs: list[dict]) -> dict:
    rates = [r["msgs_per_sec"] for r in runs]
    mbs = [r["mb_per_sec"] for r in runs]

    def med(key: str) -> float:
        return statistics.median(r["latency_ms"][key] for r in runs)

    return {
        "runs": len(runs), "msgs_per_sec": statistics.median(rates), "min": min(rates), "max": max(rates),
        "mb_per_sec": statistics.median(mbs), "p50": med("p50"), "p99": med("p99"), "p999": med("p999"),
        "max_ms": med("max"),
        "client_cpu_s": statistics.median(r["client_cpu_s"] for r in runs),
        "broker_cpu_s": statistics.median(r["broker_cpu_s"] for r in runs),
        # e2e: the producers' send-to-acknowledgement p99 (median of the runs), the way in.
        "ack_p99": statistics.median(r["ack_latency_ms"]["p99"] for r in runs)
        if all(r.get("ack_latency_ms") for r in runs) else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="", help="comma-separated case names")
    ap.add_argument("--e2e-rate", type=int, default=0,
                    help="e2e (and its floor) at this many msgs/s instead of half the median produce rate, "
                         "to compare with an earlier run")
    ap.add_argument("--e2e-batch-bytes", type=int, default=256 * 1024,
                    help="producer batch size of the e2e runs and of their floor runs")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    want = lambda case: not only or case in only  # noqa: E731

    rows = []
    limits: dict[int, dict] = {}
    gaps = floor("gaps", "--seconds", "5")
    print(f"gaps: {json.dumps(gaps)}", file=sys.stderr)
    print(f"page reporting: {json.dumps(page_reporting())}", file=sys.stderr)
    print(f"page cache write: {page_cache_write_mb_per_s()} MB/s (512 MiB into new pages)", file=sys.stderr)
    for size in (100, 1000):
        cases = [c for c in (f"produce-{size}", f"produce-{size}-all", f"consume-{size}", f"e2e-{size}",
                             f"e2e-max-{size}") if want(c)]
        if not cases:
            continue
        os.sync()
        limits[size] = wire_limit(size)
        print(f"wire-limit {size} B: {json.dumps(limits[size])}", file=sys.stderr)
        broker = Broker()
        n = MESSAGES[size]
        results: dict[str, list[dict]] = {c: [] for c in cases}
        try:
            # acks=1 and acks=all alternate, so both meet the same page cache and writeback.
            produce_cases = [c for c in cases if c.startswith("produce")]
            for i in range(args.runs if produce_cases else 0):
                for case in produce_cases:
                    topic = f"{case}-{i}"
                    acks = "all" if case.endswith("-all") else "1"
                    os.sync()
                    results[case].append(bench(broker, "produce", "--topic", topic, "--messages", str(n),
                                               "--size", str(size), "--acks", acks))
                    print(f"{case} run {i + 1}: {json.dumps(results[case][-1])}", file=sys.stderr)
                    if i > 0 or case.endswith("-all"):
                        delete_topic(broker, topic)
            fill = f"produce-{size}-0"
            if f"consume-{size}" in cases:
                if f"produce-{size}" not in cases:
                    bench(broker, "produce", "--topic", fill, "--messages", str(n), "--size", str(size))
                for i in range(args.runs):
                    results[f"consume-{size}"].append(bench(broker, "consume", "--topic", fill, "--messages",
                                                            str(n), "--size", str(size)))
                    print(f"consume-{size} run {i + 1}: {json.dumps(results[f'consume-{size}'][-1])}",
                          file=sys.stderr)
            if f"e2e-{size}" in cases:
                if args.e2e_rate > 0:
                    base = 2 * args.e2e_rate
                elif results.get(f"produce-{size}"):
                    base = statistics.median(r["msgs_per_sec"] for r in results[f"produce-{size}"])
                else:
                    base = bench(broker, "produce", "--topic", f"rate-{size}", "--messages", str(n),
                                 "--size", str(size))["msgs_per_sec"]
                rate = int(base / 2)
                floor_runs = results.setdefault(f"floor-{size}", [])
                for i in range(args.runs):
                    os.sync()
                    reporting = page_reporting()
                    run = floor("pipeline", "--rate", str(rate), "--seconds", "5",
                                "--size", str(size + FLOOR_RECORD_OVERHEAD_BYTES),
                                "--linger-ms", "1", "--interval-ms", "500",
                                "--batch-bytes", str(args.e2e_batch_bytes))
                    run["reported_mib"] = reported_mib_since(reporting)
                    floor_runs.append(run)
                    print(f"floor-{size} run {i + 1}: {json.dumps(run)}", file=sys.stderr)
                    os.sync()
                    topic = f"e2e-{size}-{i}"
                    reporting = page_reporting()
                    run = bench(broker, "e2e", "--topic", topic, "--messages", str(rate * 5), "--size", str(size),
                                "--rate", str(rate), "--linger-ms", "1", "--interval-ms", "500",
                                "--batch-size", str(args.e2e_batch_bytes))
                    run["rate"] = rate
                    run["reported_mib"] = reported_mib_since(reporting)
                    results[f"e2e-{size}"].append(run)
                    print(f"e2e-{size} run {i + 1}: {json.dumps(run)}", file=sys.stderr)
                    delete_topic(broker, topic)
            if f"e2e-max-{size}" in cases:
                # How many msgs/s the whole e2e pipeline carries at most (no pacing), against the
                # floor's pipeline: at half the produce rate, how busy each one is.
                base = statistics.median(r["msgs_per_sec"] for r in results[f"produce-{size}"]) \
                    if results.get(f"produce-{size}") else 2 * (args.e2e_rate or 2_000_000)
                floor_max = results.setdefault(f"floor-max-{size}", [])
                for i in range(min(args.runs, 3)):
                    os.sync()
                    run = floor("pipeline", "--rate", str(int(base * 5)), "--seconds", "0.6",
                                "--size", str(size + FLOOR_RECORD_OVERHEAD_BYTES),
                                "--linger-ms", "1", "--batch-bytes", str(args.e2e_batch_bytes))
                    floor_max.append(run)
                    print(f"floor-max-{size} run {i + 1}: {json.dumps(run)}", file=sys.stderr)
                    os.sync()
                    topic = f"e2e-max-{size}-{i}"
                    run = bench(broker, "e2e", "--topic", topic, "--messages", str(int(base * 2)),
                                "--size", str(size), "--linger-ms", "1", "--batch-size", str(args.e2e_batch_bytes))
                    results[f"e2e-max-{size}"].append(run)
                    print(f"e2e-max-{size} run {i + 1}: {json.dumps(run)}", file=sys.stderr)
                    delete_topic(broker, topic)
        finally:
            broker.stop()
        for case in cases:
            phase = "consume" if case.startswith("consume") else "produce"
            if case.startswith("e2e-max"):
                floor_max = summary(results[f"floor-max-{size}"])
                rows.append((f"floor-max-{size}", size, floor_max, None, None))
                rows.append((case, size, summary(results[case]), int(floor_max["msgs_per_sec"]), None))
                continue
            if case.startswith("e2e"):
                floor_summary = summary(results[f"floor-{size}"])
                rows.append((f"floor-{size}", size, floor_summary, None, results[case][0]["rate"]))
                rows.append((case, size, summary(results[case]), floor_summary, results[case][0]["rate"]))
                continue
            rows.append((case, size, summary(results[case]), limits[size][f"{phase}_msgs_per_s"],
                         results[case][0].get("rate")))

    print("| case | size | msgs/s median (min-max) | MB/s | p50 ms | p99 ms | p99.9 ms | max ms "
          "| client CPU s | broker CPU s | limit (wire-limit msgs/s; floor p99) | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for case, size, s, limit, rate in rows:
        label = f"{case} at {rate:,} msgs/s" if rate else case
        if s.get("ack_p99") is not None:
            label += f" (send to ack p99 {s['ack_p99']:.2f} ms)"
        if limit is None:  # the latency floor itself
            limit_text, ratio = "-", "-"
        elif isinstance(limit, dict):  # e2e: p99 against the floor's
            limit_text, ratio = f"floor p99 {limit['p99']:.2f} ms", f"p99 {s['p99'] / max(limit['p99'], 1e-9):.1f}x"
        else:
            limit_text, ratio = f"{limit:,}", f"{s['msgs_per_sec'] / limit:.2f}"
        print(f"| {label} | {size} B | {s['msgs_per_sec']:,.0f} ({s['min']:,.0f}-{s['max']:,.0f}) "
              f"| {s['mb_per_sec']:.1f} | {s['p50']:.2f} | {s['p99']:.2f} | {s['p999']:.2f} | {s['max_ms']:.2f} "
              f"| {s['client_cpu_s']:.2f} | {s['broker_cpu_s']:.2f} | {limit_text} | {ratio} |")


if __name__ == "__main__":
    main()

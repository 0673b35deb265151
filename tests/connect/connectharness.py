"""Helpers for the `strom connect` and fraud-example tests: processes with logs, Parquet read-back."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq

from stromtest import ROOT, STROM_BIN

FRAUD_BIN = Path(os.environ.get("FRAUD_BIN", str(ROOT / "target" / "debug" / "fraud-detection")))


class Proc:
    """A child process whose stdout and stderr go to a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict | None = None, stdin=subprocess.DEVNULL):
        self.argv = [str(a) for a in argv]
        self.log = Path(log)
        full_env = dict(os.environ, NO_COLOR="1")
        full_env.update(env or {})
        with open(self.log, "ab") as out:
            out.write(f"\n===== {' '.join(self.argv)}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=stdin, env=full_env)

    def running(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        if self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError(f"{self.argv[:3]} did not stop on SIGTERM:\n{self.tail()}")
        return self.proc.returncode

    def tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def assert_alive(self) -> None:
        assert self.running(), f"{self.argv[:3]} exited with {self.proc.returncode}:\n{self.tail()}"


def strom(broker, *args, log: Path, env: dict | None = None, stdin=subprocess.DEVNULL) -> Proc:
    return Proc([STROM_BIN, "-b", broker.bootstrap, *args], log, env=env, stdin=stdin)


def parquet_files(root: Path, topic: str) -> list[Path]:
    return sorted(p for p in (Path(root) / topic).rglob("*.parquet") if not p.name.startswith("."))


def read_rows(root: Path, topic: str) -> list[tuple[Path, dict]]:
    """Every row of every finished Parquet file of `topic`, with the file it is in."""
    rows = []
    for path in parquet_files(root, topic):
        for row in pq.read_table(path).to_pylist():
            rows.append((path, row))
    return rows


def count_rows(root: Path, topic: str) -> int:
    total = 0
    for path in parquet_files(root, topic):
        try:
            total += pq.ParquetFile(path).metadata.num_rows
        except Exception:  # noqa: BLE001 - a file renamed away under us
            pass
    return total


def wait_for(pred, timeout: float, what: str, interval: float = 0.2, procs: tuple = ()):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        for p in procs:
            p.assert_alive()
        last = pred()
        if last:
            return last
        time.sleep(interval)
    tails = "\n".join(p.tail() for p in procs)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})\n{tails}")

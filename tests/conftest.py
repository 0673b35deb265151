"""Shared fixtures for Strom's end-to-end tests.

`broker` gives a started `strom server` on free ports with its own temporary data directory;
`broker_factory(**opts)` starts more (or differently configured) brokers. Every broker started in a
test is stopped after it, and when the test fails the tail of each broker's log is attached to the
report. A broker log that shows a Rust panic fails the test too: the broker must never panic.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stromtest import ROOT, STROM_BIN  # noqa: E402  (one definition for every test)
if not STROM_BIN.is_absolute():
    STROM_BIN = ROOT / STROM_BIN

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
LOG_TAIL_LINES = 60


def free_port() -> int:
    """A port nobody listens on right now (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    return json.dumps(str(v))


def to_toml(cfg: dict) -> str:
    """Render a flat or one-level-nested dict as TOML (keys are quoted, so dotted names are literal)."""
    top, tables = [], []
    for k, v in cfg.items():
        if isinstance(v, dict):
            tables.append(f"[{json.dumps(k)}]")
            tables += [f"{json.dumps(k2)} = {_toml_value(v2)}" for k2, v2 in v.items()]
        else:
            top.append(f"{json.dumps(k)} = {_toml_value(v)}")
    return "\n".join(top + tables) + "\n"


class BrokerError(Exception):
    pass


class Broker:
    """One `strom server` process on free ports with its own data directory."""

    def __init__(self, workdir: Path, name: str = "broker", config: dict | None = None,
                 env: dict | None = None, extra_args: list[str] | None = None, node_id: int = 0):
        self.workdir = Path(workdir)
        self.name = name
        self.data_dir = self.workdir / f"{name}-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{name}.log"
        self.kafka_port = free_port()
        self.http_port = free_port()
        self.node_id = node_id
        self.config_path = None
        if config:
            self.config_path = self.workdir / f"{name}.toml"
            self.config_path.write_text(to_toml(config))
        self.env = dict(os.environ)
        self.env.setdefault("RUST_LOG", "info")
        self.env.setdefault("RUST_BACKTRACE", "1")
        self.env.setdefault("NO_COLOR", "1")
        if env:
            self.env.update(env)
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # -- addresses
    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def argv(self) -> list[str]:
        args = [str(STROM_BIN), "server",
                "--node-id", str(self.node_id),
                "--data-dir", str(self.data_dir),
                "--kafka-addr", self.bootstrap,
                "--http-addr", f"127.0.0.1:{self.http_port}"]
        if self.config_path:
            args += ["--config", str(self.config_path)]
        return args + self.extra_args

    # -- lifecycle
    def start(self, timeout: float = START_TIMEOUT_S) -> "Broker":
        if not STROM_BIN.exists():
            raise BrokerError(f"strom binary not found at {STROM_BIN} (build it: cargo build -p strom)")
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"\n===== start #{self.starts}: {' '.join(self.argv())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=self.env, cwd=self.workdir)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        last = "not tried"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerError(f"strom exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.http + "/health", timeout=1) as resp:
                    if resp.status == 200:
                        with socket.create_connection(("127.0.0.1", self.kafka_port), timeout=1):
                            return
                    last = f"/health status {resp.status}"
            except Exception as e:  # noqa: BLE001 - any failure means not ready yet
                last = repr(e)
            time.sleep(0.05)
        raise BrokerError(f"strom not ready after {timeout}s (last: {last}):\n{self.log_tail()}")

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: the process dies at once, as in a crash (the page cache survives)."""
        if self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM and wait for a clean exit; returns the exit code (SIGKILL after timeout)."""
        if not self.running():
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT_S)
            raise BrokerError(f"strom did not stop within {timeout}s of SIGTERM:\n{self.log_tail()}")

    def restart(self, kill: bool = False) -> "Broker":
        """Stop (or kill) and start again with the same data directory and ports."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start()

    # -- logs
    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n: int = LOG_TAIL_LINES) -> str:
        return "\n".join(self.log_text().splitlines()[-n:])

    def panics(self) -> list[str]:
        return [line for line in self.log_text().splitlines() if "panicked at" in line]

    # -- helpers
    def partition_dirs(self, topic: str) -> list[Path]:
        return sorted(p for p in self.data_dir.rglob(f"{topic}-*") if p.is_dir()
                      and p.name.rsplit("-", 1)[-1].isdigit() and p.name.rsplit("-", 1)[0] == topic)

    def partition_dir(self, topic: str, partition: int) -> Path:
        hits = [p for p in self.partition_dirs(topic) if p.name == f"{topic}-{partition}"]
        assert len(hits) == 1, f"partition dir {topic}-{partition} under {self.data_dir}: {hits}"
        return hits[0]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_strom_brokers", []):
            rep.sections.append((f"strom log tail ({b.name}, {b.log_path})", b.log_tail()))


@pytest.fixture
def broker_factory(request, tmp_path):
    """Start brokers: `broker_factory(config={...}, env={...}, name="b1")`."""
    brokers: list[Broker] = []
    request.node._strom_brokers = brokers

    def make(name: str | None = None, start: bool = True, **kw) -> Broker:
        b = Broker(tmp_path, name=name or f"broker{len(brokers)}", **kw)
        brokers.append(b)
        if start:
            b.start()
        return b

    yield make

    problems = []
    for b in brokers:
        if b.running():
            try:
                b.stop()
            except BrokerError as e:
                problems.append(str(e))
        if b.panics():
            problems.append(f"{b.name} panicked:\n" + "\n".join(b.panics()) + "\n" + b.log_tail())
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()

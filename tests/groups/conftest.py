"""Fixtures for the consumer-group tests: a broker tuned for fast rebalances (`gbroker`), node/kafkajs
(`node_exe`), and `members(...)`, which starts group consumer processes (groupharness.Member) and kills
whatever is left of them after the test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from groupharness import Member

KAFKAJS_DIR = Path(__file__).resolve().parent.parent / "compat" / "node" / "node_modules" / "kafkajs"

GROUP_CONFIG = {
    "group_initial_rebalance_delay_ms": 200,
    "group_consumer_heartbeat_interval_ms": 400,
}


@pytest.fixture
def gbroker(broker_factory):
    return broker_factory(config=GROUP_CONFIG)


@pytest.fixture(scope="session")
def node_exe():
    exe = shutil.which("node")
    if exe is None:
        pytest.fail("node is not installed (scripts/install-test-deps.sh installs it)")
    if not KAFKAJS_DIR.is_dir():
        pytest.fail("kafkajs missing: run scripts/install-test-deps.sh (npm ci in tests/compat/node)")
    return exe


@pytest.fixture
def members(node_exe):
    """`members(client, bootstrap, topic, group, name)` starts a Member; all are killed after the test."""
    started: list[Member] = []

    def make(client, bootstrap, topic, group, name, **kw):
        m = Member(client, bootstrap, topic, group, name, node=node_exe, **kw)
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()

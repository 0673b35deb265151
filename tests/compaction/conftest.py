"""Fixtures of the log compaction tests.

`compacting_broker(**config)` starts a broker whose cleaner and segment.ms roll checks run every
`backoff_ms` (Strom's defaults are 15 s and 60 s, far too slow for a test).
`idemwire` (raw frames) is importable from here too.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The raw record-batch encoder lives with the idempotence tests (tests/idempotence/idemwire.py).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "idempotence"))


@pytest.fixture
def compacting_broker(broker_factory):
    def make(backoff_ms: int = 200, **config):
        cfg = {"log_cleaner_backoff_ms": backoff_ms, "log_retention_check_interval_ms": backoff_ms}
        cfg.update(config)
        return broker_factory(config=cfg)
    return make

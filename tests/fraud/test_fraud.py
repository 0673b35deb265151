"""The game fraud detector end to end: a game server, two detectors in group `fraud-detectors`
(one killed midway), the alerts checked against the ground truth, and the lake pipeline landing
`game-events` and `alerts` as Parquet."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stromtest import ROOT
from stromtest import consume_range, watermarks

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "connect"))
from connectharness import FRAUD_BIN, Proc, count_rows, strom, wait_for  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def fraud_binary():
    """scripts/test.sh builds the example and sets FRAUD_BIN; run alone, pytest builds it here."""
    if "FRAUD_BIN" not in __import__("os").environ:
        subprocess.run(["cargo", "build", "-q", "-p", "fraud-detection"], cwd=ROOT, check=True, timeout=1200)
    assert FRAUD_BIN.exists(), FRAUD_BIN

BROKER_CONFIG = {"group_consumer_heartbeat_interval_ms": 300, "group_consumer_session_timeout_ms": 4000}


def alerts(bootstrap: str) -> list[dict]:
    """Every alert so far (all partitions of `alerts`, by assignment)."""
    out = []
    for p in range(6):
        low, high = watermarks(bootstrap, "alerts", p)
        if high > low:
            out += [json.loads(m.value()) for m in consume_range(bootstrap, "alerts", p, low, high - low)]
    return out


def test_two_detectors_flag_every_suspicious_trade_even_when_one_dies(broker_factory, tmp_path):
    broker = broker_factory(config=BROKER_CONFIG)
    b = ["-b", broker.bootstrap]
    truth_file = tmp_path / "truth.txt"
    # Topics first (a tiny run), then the detectors, then the real load while they run.
    setup = Proc([FRAUD_BIN, *b, "game-server", "--players", "1", "--events", "1", "--cheaters", "0",
                  "--seed", "99"], tmp_path / "setup.log")
    assert setup.proc.wait(60) == 0, setup.tail()
    detectors = [Proc([FRAUD_BIN, *b, "detector", "--name", f"d{i}"], tmp_path / f"d{i}.log") for i in range(2)]
    time.sleep(2)
    game = Proc([FRAUD_BIN, *b, "game-server", "--players", "400", "--events", "40000", "--cheaters", "20",
                 "--seed", "7", "--truth", truth_file], tmp_path / "game.log")
    wait_for(lambda: len(alerts(broker.bootstrap)) >= 20, 60, "first alerts", procs=tuple(detectors))
    detectors[0].kill()  # midway: its partitions move to d1, which rebuilds their memory
    assert game.proc.wait(120) == 0, game.tail()
    summary = json.loads(game.log.read_text().strip().splitlines()[-1])
    truth = set(truth_file.read_text().split())
    assert len(truth) == summary["suspicious"] > 50, summary

    def flagged_all():
        got = {a["trade_id"] for a in alerts(broker.bootstrap)}
        return truth <= got and got

    flagged = wait_for(flagged_all, 60, "every suspicious trade flagged", interval=1, procs=(detectors[1],))
    false_positives = flagged - truth
    print(f"fraud: {summary['trades']} trades, {len(truth)} suspicious, {len(flagged & truth)} flagged of them, "
          f"{len(false_positives)} false positives")
    assert len(false_positives) < 0.01 * summary["trades"], (len(false_positives), summary)
    assert "assignment changed" in detectors[1].log.read_text()
    assert detectors[1].stop() == 0, detectors[1].tail()

    # The lake: both topics as Parquet, every game event once.
    pipeline = tmp_path / "lake.toml"
    text = (ROOT / "examples" / "fraud-detection" / "lake.toml").read_text()
    pipeline.write_text(text.replace('root = "./lake"', f'root = "{tmp_path / "lake"}"').replace("roll_secs = 10", "roll_secs = 1"))
    lake = strom(broker, "connect", "run", str(pipeline), log=tmp_path / "lake.log")
    events = summary["events"] + 1
    wait_for(lambda: count_rows(tmp_path / "lake", "game-events") >= events, 90, "game events in the lake", procs=(lake,))
    assert lake.stop() == 0, lake.tail()
    assert count_rows(tmp_path / "lake", "game-events") == events
    assert count_rows(tmp_path / "lake", "alerts") >= len(truth)

"""In-broker transforms (`strom transform create|list|delete`): masking and filtering on real
records, and what a broker restart does to the output.

The documented guarantee (README "In-broker transforms", crates/strom/src/transforms.rs) is
at-least-once: output is acknowledged before the input offset is committed, so nothing is
lost; a clean stop (SIGTERM) commits the batch in hand, so it repeats nothing; a crash (SIGKILL)
repeats the uncommitted batch: the output is then the transformed input up to some point,
followed by a replay from an earlier point (the last committed offset), in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from stromtest import STROM_BIN
from stromtest import consume_range, create_topic, produce_sync, producer, unique_topic, watermarks, wait_until

FILTER_TRADES = '{"type":"filter","field":"$.type","equals":"trade"}'
HASH_IP = '{"type":"hash","fields":["$.ip"]}'


def cli(broker, *args: str, http: str | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, NO_COLOR="1", STROM_HTTP=http or f"127.0.0.1:{broker.http_port}")
    return subprocess.run([str(STROM_BIN), "-b", broker.bootstrap, *args], env=env,
                          capture_output=True, text=True, timeout=30)


def cli_ok(broker, *args: str) -> str:
    done = cli(broker, *args)
    assert done.returncode == 0, f"strom {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
    return done.stdout


def http_json(broker, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(broker.http + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def events(start: int, count: int) -> list[dict]:
    return [{"type": "trade" if i % 3 else "login", "player_id": f"p{i % 97}",
             "ip": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}", "i": i}
            for i in range(start, start + count)]


def produce_events(broker, topic: str, batch: list[dict]) -> None:
    p = producer(broker.bootstrap, **{"linger.ms": 20})
    produce_sync(p, topic, [{"value": json.dumps(e).encode()} for e in batch], timeout=60)


def output_records(broker, topic: str) -> list[dict]:
    low, high = watermarks(broker.bootstrap, topic)
    if high <= low:
        return []
    return [json.loads(m.value()) for m in consume_range(broker.bootstrap, topic, 0, low, high - low, timeout=60)]


def transform_status(broker, name: str) -> dict:
    status, body = http_json(broker, "GET", f"/transforms/{name}")
    assert status == 200, (status, body)
    return body.get("status") or {}


def wait_output_settled(broker, topic: str, expected: int, timeout: float = 90) -> int:
    """Waits until the output holds at least `expected` records and has stopped growing."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        high = watermarks(broker.bootstrap, topic)[1]
        if high != last:
            last, since = high, time.monotonic()
        elif high >= expected and time.monotonic() - since > 2.0:
            return high
        time.sleep(0.2)
    raise AssertionError(f"output {topic} did not reach {expected} records and settle (at {last})\n{broker.log_tail()}")


def check_values(records: list[dict]) -> None:
    for r in records:
        assert r["type"] == "trade", f"a filtered record got through: {r}"
        i = r["i"]
        original = f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}"
        assert r["ip"] == hashlib.sha256(original.encode()).hexdigest(), r


@pytest.mark.slow
@pytest.mark.parametrize("crash", [False, True], ids=["sigterm", "sigkill"])
def test_inbroker_transform_survives_restart(broker, crash):
    source, target, name = unique_topic("events"), unique_topic("trades"), "trades-clean"
    create_topic(broker.bootstrap, source, partitions=1)
    create_topic(broker.bootstrap, target, partitions=1)
    out = cli_ok(broker, "transform", "create", name, "--input", source, "--output", target,
                 "--step", FILTER_TRADES, "--step", HASH_IP)
    assert f"created transform {name}" in out

    # Round 1: the transform runs and its output is right.
    round1 = events(0, 3000)
    produce_events(broker, source, round1)
    trades1 = [e["i"] for e in round1 if e["type"] == "trade"]
    wait_until(lambda: watermarks(broker.bootstrap, target)[1] >= len(trades1), 60,
               what="round 1 transformed")
    # Round 2: large bursts until the transform is behind, and then the broker goes down while
    # the transform works through them.
    round2: list[dict] = []
    for _ in range(5):
        round2 += events(len(round1) + len(round2), 30000)
        produce_events(broker, source, round2[-30000:])
        behind_at_restart = len(trades1) + sum(e["type"] == "trade" for e in round2) \
            - watermarks(broker.bootstrap, target)[1]
        if behind_at_restart > 0:
            break
    assert behind_at_restart > 0, "the transform kept up with every burst: no mid-stream restart"
    broker.restart(kill=crash)
    # Round 3: producing goes on after the restart; the transform resumes by itself.
    round3 = events(len(round1) + len(round2), 3000)
    produce_events(broker, source, round3)

    everything = round1 + round2 + round3
    assert watermarks(broker.bootstrap, source) == (0, len(everything)), "input must hold each event once"
    expected = [e["i"] for e in everything if e["type"] == "trade"]
    wait_output_settled(broker, target, len(expected))
    got = output_records(broker, target)
    check_values(got)
    seen = [r["i"] for r in got]
    assert set(seen) == set(expected), f"lost: {sorted(set(expected) - set(seen))[:10]}"
    print(f"records behind when the broker restarted: {behind_at_restart}; "
          f"output {len(seen)} for {len(expected)} trades")
    if not crash:
        assert seen == expected, "a clean restart must neither repeat nor reorder output"
    else:
        # At-least-once after a crash: a prefix, then one replay from an earlier offset.
        replay_at = next((j for j in range(1, len(seen)) if seen[j] <= seen[j - 1]), len(seen))
        prefix, rest = seen[:replay_at], seen[replay_at:]
        assert prefix == expected[:len(prefix)]
        if rest:
            k = expected.index(rest[0])
            assert rest == expected[k:], "after a crash the output replays once, in order"
            assert k < len(prefix)
            # The replay is one poll: at most max.partition.fetch.bytes (1 MiB) of input, plus
            # the rest of the record batch that straddles that limit.
            replayed = [e for e in everything if rest[0] <= e["i"] <= prefix[-1]]
            replayed_bytes = sum(len(json.dumps(e)) for e in replayed)
            assert replayed_bytes <= 2 * 1024 * 1024, f"{replayed_bytes} bytes of input replayed"
        print(f"duplicates after SIGKILL: {len(seen) - len(expected)}")
    status = transform_status(broker, name)
    assert status.get("state") == "running", status


def test_transform_cli_list_delete_and_errors(broker):
    a_in, a_out, b_in, b_out = (unique_topic(p) for p in ("a-in", "a-out", "b-in", "b-out"))
    cli_ok(broker, "transform", "create", "alpha", "--input", a_in, "--output", a_out,
           "--step", FILTER_TRADES, "--step", HASH_IP)
    steps_file = broker.workdir / "steps.json"
    steps_file.write_text(json.dumps([{"type": "mask", "fields": ["$.ip"], "with": "x"}]))
    cli_ok(broker, "transform", "create", "beta", "--input", b_in, "--output", b_out,
           "--steps-file", str(steps_file))

    text = cli_ok(broker, "transform", "list")
    lines = text.strip().splitlines()
    assert lines[0].split()[:3] == ["NAME", "INPUT", "OUTPUT"], text
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["alpha"][1:3] == [a_in, a_out] and rows["alpha"][-1] == "filter,hash", text
    assert rows["beta"][1:3] == [b_in, b_out] and rows["beta"][-1] == "mask", text

    listed = json.loads(cli_ok(broker, "transform", "list", "--format", "json"))["transforms"]
    by_name = {t["name"]: t for t in listed}
    assert set(by_name) == {"alpha", "beta"}
    assert by_name["alpha"]["steps"] == [json.loads(FILTER_TRADES), json.loads(HASH_IP)]
    assert by_name["beta"]["group"] == "__transform-beta"

    # Both run: beta masks.
    produce_events(broker, b_in, events(0, 10))
    wait_until(lambda: watermarks(broker.bootstrap, b_out)[1] >= 10, 30, what="beta output")
    assert all(r["ip"] == "x" for r in output_records(broker, b_out))

    # Errors are clear and exit non-zero.
    dup = cli(broker, "transform", "create", "alpha", "--input", a_in, "--output", "elsewhere")
    assert dup.returncode != 0 and "already exists" in dup.stderr, dup.stderr
    bad = cli(broker, "transform", "create", "gamma", "--input", a_in, "--output", "x", "--step", '{"type":"nope"}')
    assert bad.returncode != 0 and "invalid steps" in bad.stderr, bad.stderr
    loop = cli(broker, "transform", "create", "gamma", "--input", a_in, "--output", a_in)
    assert loop.returncode != 0 and "same topic" in loop.stderr, loop.stderr
    assert http_json(broker, "POST", "/transforms", {"name": "alpha", "input": "i", "output": "o", "steps": []})[0] == 409
    assert http_json(broker, "POST", "/transforms", {"name": "a b", "input": "i", "output": "o", "steps": []})[0] == 400
    assert http_json(broker, "POST", "/transforms", {"name": "g", "input": "i", "output": "o", "steps": {}})[0] == 400
    gone = cli(broker, "transform", "list", http="127.0.0.1:1")
    assert gone.returncode != 0 and "cannot reach http://127.0.0.1:1" in gone.stderr, gone.stderr

    # Delete: the pipeline stops, and stays deleted across a restart; alpha keeps running.
    deleted = json.loads(cli_ok(broker, "transform", "delete", "beta", "--format", "json"))
    assert deleted["name"] == "beta"
    # Re-created with other steps (no filter): the runner replaces its pipeline.
    assert "deleted transform alpha" in cli_ok(broker, "transform", "delete", "alpha")
    cli_ok(broker, "transform", "create", "alpha", "--input", a_in, "--output", a_out, "--step", HASH_IP)
    time.sleep(1.5)  # the runner notices within 0.5 s and stops beta after its batch in hand
    before = watermarks(broker.bootstrap, b_out)[1]
    produce_events(broker, b_in, events(10, 10))
    time.sleep(2.0)
    assert watermarks(broker.bootstrap, b_out)[1] == before, "a deleted transform must stop"
    missing = cli(broker, "transform", "delete", "beta")
    assert missing.returncode != 0 and "does not exist" in missing.stderr, missing.stderr

    broker.restart()
    names = [t["name"] for t in json.loads(cli_ok(broker, "transform", "list", "--format", "json"))["transforms"]]
    assert names == ["alpha"]
    produce_events(broker, a_in, events(0, 6))
    wait_until(lambda: watermarks(broker.bootstrap, a_out)[1] >= 6, 30, what="alpha output after restart")
    assert [t for t in cli_ok(broker, "transform", "list").splitlines()[1:]][0].split()[:4] == \
        ["alpha", a_in, a_out, "running"]

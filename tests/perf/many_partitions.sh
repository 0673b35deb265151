#!/usr/bin/env bash
# Many partitions on one node (issue #6): create, produce, clean restart, open files, memory.
#
# Not run by CI. Run it by hand on a quiet machine and copy the figures into BENCHMARKS.md:
#
#   cargo build --release -p strom
#   tests/perf/many_partitions.sh                 # 10,000 partitions
#   PARTITIONS=20000 tests/perf/many_partitions.sh
#   STROM_BIN=/tmp/old-strom tests/perf/many_partitions.sh   # an older build, for before/after
#   RATIO=1 tests/perf/many_partitions.sh         # also: bench produce over N partitions vs 1
#
# What it does, on its own ports and a fresh data directory (removed at the end unless KEEP=1):
#   1. starts `strom server`, creates topic `big` with PARTITIONS partitions (timed);
#   2. produces MESSAGES records of SIZE bytes over all of them with `strom bench produce`
#      (its batching fills a few hundred partitions), then KEYED_ROUNDS rounds of 5 keyed records
#      per partition with `strom produce` so that (nearly) every partition holds data;
#   3. prints the broker's open file descriptors and RSS;
#   4. stops it with SIGTERM (timed: clean shutdown), starts it again and times how long until
#      GET /health answers (start-up after a clean shutdown), prints fds and RSS again;
#   5. reads back partition 0 and the last partition from offset 0 (old segments stay readable);
#   6. stops it with SIGKILL, starts it again and times recovery after an unclean stop;
#   7. with RATIO=1: `strom bench produce` of RATIO_MESSAGES records over PARTITIONS partitions
#      and then over 1 partition (fresh topics), and prints the ratio of the msgs/s.
#
# Environment: STROM_BIN (default target/release/strom), PARTITIONS (10000), MESSAGES
# (200000), SIZE (100), PORT (29392; HTTP on PORT+1), DATA_DIR (/tmp/strom-many-partitions-$$),
# SERVER_ARGS (extra `strom server` flags), CREATE_ARGS (extra `strom topic create` flags, e.g.
# "-c segment.bytes=2048" for several segments per partition), KEYED_ROUNDS (1),
# STROM_LOG (broker log level, default warn).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
STROM_BIN="${STROM_BIN:-$ROOT/target/release/strom}"
PARTITIONS="${PARTITIONS:-10000}"
MESSAGES="${MESSAGES:-200000}"
SIZE="${SIZE:-100}"
PORT="${PORT:-29392}"
HTTP_PORT=$((PORT + 1))
DATA_DIR="${DATA_DIR:-/tmp/strom-many-partitions-$$}"
SERVER_ARGS="${SERVER_ARGS:-}"
CREATE_ARGS="${CREATE_ARGS:-}"
KEYED_ROUNDS="${KEYED_ROUNDS:-1}"
RATIO="${RATIO:-0}"
RATIO_MESSAGES="${RATIO_MESSAGES:-2000000}"
KEEP="${KEEP:-0}"
export STROM_LOG="${STROM_LOG:-warn}"
BROKER="127.0.0.1:$PORT"
LOG="$DATA_DIR.log"
PID=""

[ -x "$STROM_BIN" ] || { echo "no strom binary at $STROM_BIN (cargo build --release -p strom)" >&2; exit 1; }

cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then kill -KILL "$PID" 2>/dev/null || true; fi
    if [ "$KEEP" != 1 ]; then rm -rf "$DATA_DIR" "$LOG"; fi
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

start_broker() {
    # shellcheck disable=SC2086
    "$STROM_BIN" server --data-dir "$DATA_DIR" --kafka-addr "$BROKER" \
        --http-addr "127.0.0.1:$HTTP_PORT" $SERVER_ARGS >>"$LOG" 2>&1 &
    PID=$!
}

# Waits until GET /health answers; prints the seconds since $1.
wait_healthy() {
    local started="$1"
    until curl -sf "http://127.0.0.1:$HTTP_PORT/health" >/dev/null 2>&1; do
        if ! kill -0 "$PID" 2>/dev/null; then
            echo "broker exited during start-up; last log lines:" >&2
            tail -20 "$LOG" >&2
            exit 1
        fi
        sleep 0.05
    done
    elapsed "$started"
}

# Waits until the broker process ends; prints the seconds since $1.
wait_exit() {
    local started="$1"
    while kill -0 "$PID" 2>/dev/null; do sleep 0.05; done
    wait "$PID" 2>/dev/null || true
    elapsed "$started"
}

fds() { ls "/proc/$PID/fd" | wc -l; }
rss_mib() { awk '/VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$PID/status"; }
report() { printf '%-44s %s\n' "$1" "$2"; }

rm -rf "$DATA_DIR" "$LOG"
echo "strom: $STROM_BIN ($("$STROM_BIN" --version 2>/dev/null || echo unknown version))"
echo "partitions: $PARTITIONS, messages: $MESSAGES x $SIZE B, open files limit: $(ulimit -Hn) (hard)"

t=$(now)
start_broker
report "first start (s)" "$(wait_healthy "$t")"

t=$(now)
# shellcheck disable=SC2086
"$STROM_BIN" topic create -b "$BROKER" big -p "$PARTITIONS" $CREATE_ARGS >/dev/null
report "create $PARTITIONS partitions (s)" "$(elapsed "$t")"
report "fds / RSS MiB after create" "$(fds) / $(rss_mib)"

"$STROM_BIN" bench produce -b "$BROKER" --topic big --partitions "$PARTITIONS" \
    --messages "$MESSAGES" --size "$SIZE" --format json >"$DATA_DIR.bench.json"
report "produce over all partitions (msgs/s)" \
    "$(grep -o '"msgs_per_sec"[^,}]*' "$DATA_DIR.bench.json" | head -1 | cut -d: -f2 | tr -d ' ')"
rm -f "$DATA_DIR.bench.json"
t=$(now)
for round in $(seq 1 "$KEYED_ROUNDS"); do
    awk -v n=$((PARTITIONS * 5)) -v r="$round" 'BEGIN {
        v = sprintf("%0200d", 0)
        for (i = 0; i < n; i++) printf "key-%d:%d-%s\n", i, r, v
    }' | "$STROM_BIN" produce -b "$BROKER" big --key-separator : --acks 1 >/dev/null
done
report "keyed produce, $KEYED_ROUNDS x 5 per partition (s)" "$(elapsed "$t")"
report "fds / RSS MiB after produce" "$(fds) / $(rss_mib)"
report "segment files on disk" "$(find "$DATA_DIR" -name '*.log' | wc -l)"

t=$(now)
kill -TERM "$PID"
report "clean shutdown (s)" "$(wait_exit "$t")"

t=$(now)
start_broker
report "start-up after clean shutdown (s)" "$(wait_healthy "$t")"
report "fds / RSS MiB after clean restart" "$(fds) / $(rss_mib)"

for partition in 0 $((PARTITIONS - 1)); do
    count=$("$STROM_BIN" consume -b "$BROKER" big -p "$partition" -o start -e -f '%o\n' 2>/dev/null | wc -l || true)
    report "records read back from big-$partition" "$count"
done
report "fds / RSS MiB after reads" "$(fds) / $(rss_mib)"

t=$(now)
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
start_broker
report "start-up after SIGKILL (s)" "$(wait_healthy "$t")"
report "fds / RSS MiB after unclean restart" "$(fds) / $(rss_mib)"

if [ "$RATIO" = 1 ]; then
    bench() {
        "$STROM_BIN" bench produce -b "$BROKER" --topic "$1" --partitions "$2" \
            --messages "$RATIO_MESSAGES" --size "$SIZE" --format json 2>/dev/null \
            | grep -o '"msgs_per_sec"[^,}]*' | head -1 | cut -d: -f2 | tr -d ' '
    }
    many=$(bench big2 "$PARTITIONS")
    one=$(bench one1 1)
    report "bench produce $PARTITIONS partitions (msgs/s)" "$many"
    report "bench produce 1 partition (msgs/s)" "$one"
    report "ratio $PARTITIONS : 1" "$(awk -v a="$many" -v b="$one" 'BEGIN { printf "%.2f", a / b }')"
    report "fds / RSS MiB after benches" "$(fds) / $(rss_mib)"
fi

t=$(now)
kill -TERM "$PID"
report "final clean shutdown (s)" "$(wait_exit "$t")"

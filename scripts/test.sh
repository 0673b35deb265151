#!/usr/bin/env bash
# The project's one test command: Rust unit/property tests, then the end-to-end tests with real
# Kafka clients (kcat, confluent-kafka, kafka-python, kafkajs) against a real `strom server`.
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -k kcat         # extra arguments go to pytest
#   SKIP_CARGO_TEST=1 scripts/test.sh tests/crash
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

"$ROOT/scripts/install-test-deps.sh"

if ! command -v cargo >/dev/null 2>&1 && [[ -x "$HOME/.cargo/bin/cargo" ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

# The binaries the end-to-end tests run, built here rather than inside a test (where a loaded
# machine once made the fraud example's build outlast pytest's 120 s timeout).
echo "== cargo build -p strom -p fraud-detection" >&2
cargo build -p strom -p fraud-detection
export STROM_BIN="${STROM_BIN:-$ROOT/target/debug/strom}"
export FRAUD_BIN="${FRAUD_BIN:-$ROOT/target/debug/fraud-detection}"

if [[ "${SKIP_CARGO_TEST:-0}" != "1" ]]; then
    echo "== cargo test --workspace" >&2
    cargo test --workspace
fi

# Test paths given as arguments replace the default (all of tests/).
args=("$@")
has_path=0
for a in "$@"; do
    if [[ $a != -* && -e $a ]]; then has_path=1; fi
done
if [[ $has_path -eq 0 ]]; then args=("$ROOT/tests" "${args[@]}"); fi

echo "== pytest ${args[*]} (STROM_BIN=$STROM_BIN)" >&2
set +e
"$ROOT/.venv/bin/pytest" -q --timeout=120 "${args[@]}"
rc=$?
set -e
if [[ $rc -eq 5 ]]; then
    echo "pytest collected no tests" >&2
    exit 1
fi
exit $rc

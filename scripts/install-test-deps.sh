#!/usr/bin/env bash
# Installs everything the end-to-end tests need. Idempotent: fast when already done.
#  - Debian: kcat (librdkafka 2.0.2), python3-venv, libzstd-dev + pkg-config (the Rust build links zstd)
#  - Python venv at .venv with the pinned packages of tests/requirements.txt
#  - Node packages of tests/compat/node (kafkajs, pinned by package-lock.json)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '[install-test-deps] %s\n' "$*" >&2; }

# --- Debian packages -------------------------------------------------------
APT_PKGS=(kcat python3-venv libzstd-dev pkg-config)
missing=()
for p in "${APT_PKGS[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$p")
    fi
done
if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    SUDO=""
    if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# --- Python venv -----------------------------------------------------------
REQ="tests/requirements.txt"
VENV=".venv"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
    log "creating $VENV"
    rm -rf "$VENV"
    # Prefer Debian's python3 (python3-venv is installed above); fall back to whatever python3 is first.
    PY=/usr/bin/python3
    [[ -x "$PY" ]] || PY="$(command -v python3)"
    "$PY" -m venv "$VENV"
fi
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "$want" ]]; then
    log "pip install -r $REQ"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQ"
    echo "$want" >"$STAMP"
fi

# --- Node packages ---------------------------------------------------------
NODE_DIR="tests/compat/node"
if command -v npm >/dev/null 2>&1; then
    NSTAMP="$NODE_DIR/node_modules/.lock.sha256"
    nwant="$(sha256sum "$NODE_DIR/package-lock.json" | cut -d' ' -f1)"
    if [[ ! -f "$NSTAMP" || "$(cat "$NSTAMP")" != "$nwant" ]]; then
        log "npm ci in $NODE_DIR"
        (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$nwant" >"$NSTAMP"
    fi
else
    log "npm not found: installing nodejs and npm from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
fi

log "ok"

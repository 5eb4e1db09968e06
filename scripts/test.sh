#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh machine, then runs all of it.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# WebAssembly guests under guests/ are built by the tests for this target.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi

# The JetStream backend tests start private nats-server processes (2.9 or later).
if ! command -v nats-server >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nats-server
fi

# Python clients and tools the tests run (schemathesis, ...), in a private environment.
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv" 2>/dev/null || {
    rm -rf "$venv"
    apt-get update -qq && apt-get install -y -qq python3-venv
    python3 -m venv "$venv"
  }
fi
if ! cmp -s tests/requirements.txt "$venv/requirements.txt"; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$venv/requirements.txt"
fi
export SWITCHYARD_TEST_VENV="$PWD/$venv"

cargo test --workspace "$@"

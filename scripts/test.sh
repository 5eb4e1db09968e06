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

cargo test --workspace "$@"

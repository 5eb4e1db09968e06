#!/usr/bin/env bash
# Builds the example WebAssembly handlers and runs the router with the order fan-out
# example (examples/order-fanout/switchyard.toml) on its embedded store.
# Usage: scripts/order-fanout.sh [more `switchyard serve` arguments]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  rustup target add wasm32-wasip2
fi
(cd guests && cargo build --release --target wasm32-wasip2)
exec cargo run --release -- serve --config examples/order-fanout/switchyard.toml "$@"

#!/usr/bin/env bash
# The console's first page load with 1,000 queues and 100 topics, and its live tail at
# 5,000 events a second, in Debian's Chromium; prints a table.
# Usage: scripts/bench-console.sh [--queues N] [--topics N] [--rate N] [--seconds N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium
fi
cargo build --release --bin switchyard
venv=target/test-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s tests/requirements.txt "$venv/requirements.txt"; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r tests/requirements.txt
  cp tests/requirements.txt "$venv/requirements.txt"
fi
"$venv/bin/python" benches/console.py \
  --switchyard-bin "${CARGO_TARGET_DIR:-target}/release/switchyard" "$@"

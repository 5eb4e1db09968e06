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

# The web console is tested in Debian's Chromium, driven by Playwright (installed below
# with the Python tools, without a browser of its own).
if ! command -v chromium >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq chromium
fi

# Python clients and tools the tests run (schemathesis, boto3, ...), in private
# environments: the current ones, and in a second environment an older boto3 that
# still speaks SQS's query protocol.
venv=target/test-venv
make_venv() { # DIR REQUIREMENTS
  if [ ! -x "$1/bin/python" ]; then
    python3 -m venv "$1" 2>/dev/null || {
      rm -rf "$1"
      apt-get update -qq && apt-get install -y -qq python3-venv
      python3 -m venv "$1"
    }
  fi
  if ! cmp -s "$2" "$1/requirements.txt"; then
    "$1/bin/pip" install -q --disable-pip-version-check -r "$2"
    cp "$2" "$1/requirements.txt"
  fi
}
make_venv "$venv" tests/requirements.txt
make_venv "$venv-query" tests/requirements-query-protocol.txt
export SWITCHYARD_TEST_VENV="$PWD/$venv"

# The AWS SDK for JavaScript v3, which checks the MD5s SQS answers with, from npm.
if ! command -v npm >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
# ... and componentize-js, which makes the JavaScript handlers in guests/js components.
for dir in tests/aws/js guests/js; do
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.installed-lock.json"; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error &&
      cp package-lock.json node_modules/.installed-lock.json)
  fi
done

cargo test --workspace "$@"

#!/usr/bin/env bash
# Server CPU per operation of Switchyard and moto under the same boto3 script; prints a
# table. Usage: scripts/bench-moto.sh [--count N]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo build --release --bin switchyard
venv=target/bench-moto-venv
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! cmp -s benches/requirements-moto.txt "$venv/requirements.txt"; then
  "$venv/bin/pip" install -q --disable-pip-version-check -r benches/requirements-moto.txt
  cp benches/requirements-moto.txt "$venv/requirements.txt"
fi
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/python" benches/aws_vs_moto.py \
  --switchyard-bin "${CARGO_TARGET_DIR:-target}/release/switchyard" "$@"

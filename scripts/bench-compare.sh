#!/usr/bin/env bash
# The same load generator against several server builds, interleaved: phase (a) of the
# load bench (publish 1 KiB from LOAD_CONNECTIONS connections, beside the bare handler),
# run ROUNDS times against each binary in turn, the order reversed every other round so
# that a machine drifting during the run weighs on every build alike. Prints each run,
# then a table of medians.
#
# Usage: scripts/bench-compare.sh ROUNDS SERVER_BINARY...
#   (build the bench first: `cargo bench --bench load --no-run`; LOAD_SECONDS and
#   LOAD_CONNECTIONS apply as in the load bench)
set -euo pipefail
rounds=$1
shift
target=${CARGO_TARGET_DIR:-target}
bench=$(ls -t "$target"/release/deps/load-* | grep -v '\.d$' | head -1)
results=$(mktemp)
for round in $(seq 1 "$rounds"); do
  bins=("$@")
  if ((round % 2 == 0)); then
    bins=($(printf '%s\n' "$@" | tac))
  fi
  for bin in "${bins[@]}"; do
    row=$(LOAD_PHASES=a SWITCHYARD_BIN="$bin" "$bench" --bench 2>/dev/null | grep '^(a)')
    # "... N req/s; bare axum 202 handler M req/s; ratio R"
    read -r served bare ratio < <(sed -E 's/.* ([0-9]+) req\/s.* ([0-9]+) req\/s; ratio ([0-9.]+).*/\1 \2 \3/' <<<"$row")
    echo "round $round  $bin  $served req/s  bare $bare  ratio $ratio"
    echo "$bin $served $bare $ratio" >>"$results"
  done
done
echo
printf '%-60s %10s %10s %8s\n' "server binary" "req/s" "bare" "ratio"
for bin in "$@"; do
  median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR+1)/2)]}'; }
  printf '%-60s %10s %10s %8s\n' "$bin" \
    "$(awk -v b="$bin" '$1==b {print $2}' "$results" | median)" \
    "$(awk -v b="$bin" '$1==b {print $3}' "$results" | median)" \
    "$(awk -v b="$bin" '$1==b {print $4}' "$results" | median)"
done
rm -f "$results"

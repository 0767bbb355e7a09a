#!/usr/bin/env bash
# What the background scrub costs writers: 500-invoice batches from 4
# clients against a server whose scrub runs without pause
# (--scrub-interval=1s over a log of a few million events) and against the
# same server with the scrub off, in alternating windows of one run.
#
#   bash bench/scrub.sh [SECONDS_PER_WINDOW] [ROUNDS]    (default 10 and 3)
#
# Prints each window's invoices/s and the ratio scrub-on / scrub-off, and
# how long a scrub pass took (its scrub_passed lines).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${BUILD_DIR:-build}"
seconds="${1:-10}"
rounds="${2:-3}"
source bench/lib.sh
bench_workdir

loadgen() {
  "$build/clients/poledger-loadgen" --server="$1" --methods=batch \
    --batch-sizes=500 --concurrency=4 --seconds="$2" --rounds=1 \
    --accounts=256 2>&1
}
rate() { sed -nE 's/.*\(([0-9]+) invoices\/s.*/\1/p' | head -1; }

# A log of a few million events, made once and copied for each window.
start_server seed --clock=real --scrub-interval=0
loadgen "$address" 40 >/dev/null
kill "$pid"; wait "$pid" 2>/dev/null || true

for round in $(seq "$rounds"); do
  for scrub in 0 1s; do
    rm -rf "$work/run"
    cp -a "$work/seed" "$work/run"
    start_server run --clock=real --scrub-interval="$scrub"
    sleep 2  # The scrub's first pass starts 1 s after the start.
    r=$(loadgen "$address" "$seconds" | rate)
    kill "$pid"; wait "$pid" 2>/dev/null || true
    head=$(grep -o 'head [0-9]*' "$work/run.log" | head -1)
    passes=$(grep -c "scrub verified" "$work/run.log" || true)
    echo "round $round scrub=$scrub log $head invoices/s=$r passes finished=$passes"
    if [[ "$scrub" == 0 ]]; then off=$r; else
      python3 -c "print('round $round: scrub on / off = %.3f' % ($r / $off))"
    fi
  done
done
# One whole pass, the server otherwise idle.
rm -rf "$work/run"
cp -a "$work/seed" "$work/run"
start_server run --clock=real --scrub-interval=1s
for _ in $(seq 600); do
  grep -q "scrub verified" "$work/run.log" && break
  sleep 1
done
grep -h "scrub verified" "$work/run.log" | head -1

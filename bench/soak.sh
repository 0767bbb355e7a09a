#!/usr/bin/env bash
# A write soak: does the server's memory follow its traffic, or its history?
#
#   bash bench/soak.sh                        # 30 minutes, batches of 500
#   POLEDGER_SOAK_MINUTES=5 bash bench/soak.sh
#   POLEDGER_SOAK_METHOD=invoice POLEDGER_SOAK_CONCURRENCY=64 bash bench/soak.sh
#
# Starts a fresh server (default options: a snapshot every 250,000 events)
# on a temporary data directory, runs poledger-loadgen against it for the
# whole time (BatchRecordInvoices of POLEDGER_SOAK_BATCH at
# POLEDGER_SOAK_CONCURRENCY in flight over POLEDGER_SOAK_ACCOUNTS accounts,
# or RecordInvoice with POLEDGER_SOAK_METHOD=invoice), and every
# POLEDGER_SOAK_SAMPLE_SECONDS prints one row: the minute, the invoices
# recorded so far (the log's head), the server's RSS and the invoice
# entries it holds in memory (poledger_invoices_in_memory). At the end it
# prints the RSS at 10M invoices (if reached), the largest RSS, and how
# far the RSS of the second half strays from that half's mean.
#   POLEDGER_BUILD_DIR   build tree (default: build)
#   POLEDGER_SOAK_DIR    where the data directory goes (default: a new
#                        temporary directory, deleted afterwards); a soak
#                        of 30 minutes writes tens of GB.
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${POLEDGER_SOAK_MINUTES:-30}"
method="${POLEDGER_SOAK_METHOD:-batch}"
batch="${POLEDGER_SOAK_BATCH:-500}"
concurrency="${POLEDGER_SOAK_CONCURRENCY:-4}"
accounts="${POLEDGER_SOAK_ACCOUNTS:-1000}"
sample="${POLEDGER_SOAK_SAMPLE_SECONDS:-30}"
source bench/lib.sh
bench_build

work="$(mktemp -d "${POLEDGER_SOAK_DIR:-${TMPDIR:-/tmp}}/poledger-soak.XXXXXX")"
server_pid=""
loadgen_pid=""
cleanup() {
  if [[ -n "$loadgen_pid" ]]; then kill "$loadgen_pid" 2>/dev/null || true; fi
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
  if [[ -n "$loadgen_pid" ]]; then wait "$loadgen_pid" 2>/dev/null || true; fi
  if [[ -n "$server_pid" ]]; then wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

port="$(free_port)"
metrics_port="$(free_port)"
"$build/server/poledger-server" --listen="127.0.0.1:$port" \
  --metrics-listen="127.0.0.1:$metrics_port" --data-dir="$work/data" \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  grep -q "SERVING\|serving" "$work/server.log" 2>/dev/null && break
  sleep 0.1
done

seconds=$((minutes * 60))
"$build/clients/poledger-loadgen" --server="127.0.0.1:$port" \
  --methods="$method" --batch-sizes="$batch" --concurrency="$concurrency" \
  --accounts="$accounts" --rounds=1 --seconds="$seconds" \
  >"$work/loadgen.txt" 2>&1 &
loadgen_pid=$!

metric() {
  curl -s "http://127.0.0.1:$metrics_port/metrics" |
    awk -v name="$1" '$1 == name { printf "%.0f\n", $2; found = 1 } END { if (!found) print 0 }'
}
echo "write soak: $minutes min, method $method (batch $batch), $concurrency in flight, $accounts accounts"
echo
echo "| minute | invoices recorded | RSS (MiB) | invoice entries in memory |"
echo "|---|---|---|---|"
start=$(date +%s)
: >"$work/samples.txt"
while kill -0 "$loadgen_pid" 2>/dev/null; do
  sleep "$sample"
  now=$(date +%s)
  rss_kib="$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status")"
  head="$(metric poledger_log_head_position)"
  in_memory="$(metric poledger_invoices_in_memory)"
  elapsed=$((now - start))
  echo "$elapsed $head $rss_kib $in_memory" >>"$work/samples.txt"
  awk -v t="$elapsed" -v h="$head" -v r="$rss_kib" -v m="$in_memory" \
    'BEGIN { printf "| %.1f | %d | %.0f | %d |\n", t / 60, h, r / 1024, m }'
done
wait "$loadgen_pid" || { echo "the load generator failed:"; tail -5 "$work/loadgen.txt"; exit 1; }
loadgen_pid=""
echo
awk -v total="$seconds" '
  { t[NR] = $1; h[NR] = $2; r[NR] = $3 / 1024; if (r[NR] > max) max = r[NR] }
  $2 >= 10000000 && at10m == "" { at10m = r[NR] }
  END {
    n = 0; sum = 0
    for (i = 1; i <= NR; ++i) if (t[i] >= total / 2) { ++n; sum += r[i] }
    mean = n ? sum / n : 0; spread = 0
    for (i = 1; i <= NR; ++i) {
      if (t[i] >= total / 2 && mean > 0) {
        d = (r[i] - mean) / mean; if (d < 0) d = -d; if (d > spread) spread = d
      }
    }
    printf "invoices recorded: %d\n", h[NR]
    if (at10m != "") printf "RSS at 10M invoices: %.0f MiB\n", at10m
    printf "largest RSS: %.0f MiB\n", max
    printf "second half: mean RSS %.0f MiB, largest deviation of a sample from it %.1f%%\n", mean, spread * 100
    # The sawtooth of snapshots (entries leave memory as each is saved)
    # averaged out: the second half in three windows.
    lo = 0; hi = 0
    for (w = 0; w < 3; ++w) {
      wn = 0; ws = 0
      for (i = 1; i <= NR; ++i) {
        if (t[i] >= total / 2 + w * total / 6 && t[i] < total / 2 + (w + 1) * total / 6) { ++wn; ws += r[i] }
      }
      if (wn == 0) continue
      m = ws / wn
      printf "  %.1f-%.1f min: mean RSS %.0f MiB\n", (total / 2 + w * total / 6) / 60, (total / 2 + (w + 1) * total / 6) / 60, m
      if (lo == 0 || m < lo) lo = m
      if (m > hi) hi = m
    }
    if (lo > 0) printf "second half, window means: largest / smallest %.2f\n", hi / lo
  }' "$work/samples.txt"
grep -E "^BatchRecordInvoices|^RecordInvoice" "$work/loadgen.txt" || true

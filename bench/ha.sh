#!/usr/bin/env bash
# The cost of synchronous acknowledgement: a leader with two followers, once
# with asynchronous followers (--follow: the leader acknowledges on its own
# synced commit) and once with --sync-followers=1 (and --sync-follower on
# both: a write is acknowledged once one of them stores it durably too).
# poledger-loadgen drives RecordInvoice at 1, 16 and 256 in flight and
# BatchRecordInvoices of 500 at 4 in flight against each, in the same run.
#
#   bash bench/ha.sh                      # 8 s per measurement
#   POLEDGER_HA_SECONDS=4 bash bench/ha.sh
#   POLEDGER_BUILD_DIR=build-x bash bench/ha.sh
#
# Prints loadgen's figures (rate, p50, p99) for each and the ratios
# synchronous / asynchronous. Everything listens on 127.0.0.1 and stops at
# the end. On the 2-vCPU development machine the leader, both followers and
# the load generator share the two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${POLEDGER_HA_SECONDS:-8}"
source bench/lib.sh
bench_build

bench_workdir

# shard MODE: a leader and two followers; sets $leader.
shard() {
  local mode=$1 leader_args=() follower_args=()
  if [[ "$mode" == sync ]]; then
    leader_args=(--sync-followers=1)
    follower_args=(--sync-follower)
  fi
  start_server "$mode-leader" --heartbeat-seconds=1 "${leader_args[@]}"
  leader=$address
  local name
  for name in a b; do
    start_server "$mode-$name" --heartbeat-seconds=1 --follow="$leader" \
      --node-name="$name" "${follower_args[@]}"
  done
}

# measure MODE NAME LOADGEN_ARGS...: loadgen's lines into $work/MODE-NAME.
measure() {
  local mode=$1 name=$2
  shift 2
  "$build/clients/poledger-loadgen" --server="$leader" --seconds="$seconds" \
    --rounds=1 "$@" | grep -v '^#' >"$work/$mode-$name.txt"
}

loads=(
  "single --methods=invoice --concurrency=1,16,256"
  "batch --methods=batch --batch-sizes=500 --concurrency=4"
)
for mode in async sync; do
  shard "$mode"
  for load in "${loads[@]}"; do
    # shellcheck disable=SC2086
    measure "$mode" $load
  done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
done

echo "poledger: asynchronous followers against --sync-followers=1, ${seconds} s per measurement, same run"
for load in "${loads[@]}"; do
  name=${load%% *}
  echo "## $name"
  echo "asynchronous followers:"
  sed 's/^/  /' "$work/async-$name.txt"
  echo "synchronous (K = 1):"
  sed 's/^/  /' "$work/sync-$name.txt"
  python3 - "$work/async-$name.txt" "$work/sync-$name.txt" <<'PY'
import re, sys
def rates(path):
    """(in flight, rate): invoices/s for a batch, else requests/s."""
    out = []
    for line in open(path):
        cols = line.split()
        if len(cols) < 3 or not cols[1].isdigit():
            continue
        m = re.search(r"\(([\d.]+) invoices/s", line)
        out.append((cols[1], float(m.group(1)) if m else float(cols[2])))
    return out
for (c, a), (_, s) in zip(rates(sys.argv[1]), rates(sys.argv[2])):
    print("  ratio at %s in flight: %.2fx (%.0f / %.0f per second)"
          % (c, s / a if a else 0, s, a))
PY
done

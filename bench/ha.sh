#!/usr/bin/env bash
# The cost of synchronous acknowledgement: a leader with two followers, once
# with asynchronous followers (--follow: the leader acknowledges on its own
# synced commit) and once with --sync-followers=1 (and --sync-follower on
# both: a write is acknowledged once one of them stores it durably too).
# poledger-loadgen drives RecordInvoice at 1, 16 and 256 in flight and
# BatchRecordInvoices of 500 at 4 in flight against each, in the same run.
#
# Then failover: etcd, three nodes with --etcd-endpoints (the default lease)
# and HAProxy, kill -9 of the leader POLEDGER_HA_KILLS times (20 by default)
# under 64 writers through the proxy (tests/cluster/failover_test.py's
# campaign), and the distribution of the time from each kill to the first
# acknowledged write after it.
#
#   bash bench/ha.sh                      # 8 s per measurement, 20 kills
#   POLEDGER_HA_SECONDS=4 POLEDGER_HA_KILLS=0 bash bench/ha.sh
#   POLEDGER_BUILD_DIR=build-x bash bench/ha.sh
#
# Prints loadgen's figures (rate, p50, p99) for each and the ratios
# synchronous / asynchronous, then the failover times. Everything listens on 127.0.0.1 and stops at
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

kills="${POLEDGER_HA_KILLS:-20}"
if (( kills > 0 )); then
  echo "## failover: kill -9 of the leader, $kills times, 64 writers through HAProxy"
  root=$PWD
  (cd tests/cluster &&
    PYTHONPATH="$root/$build/tests/e2e/stubs:$root/tests/e2e" \
    POLEDGER_SERVER="$root/$build/server/poledger-server" \
    POLEDGER_AUDIT="$root/$build/clients/poledger-audit" \
    POLEDGER_HAPROXY_CONFIG="$root/deploy/cluster/haproxy-config.sh" \
    POLEDGER_FAILOVER_KILLS="$kills" POLEDGER_FAILOVER_WRITERS=64 \
    /usr/bin/python3 -m unittest \
      failover_test.FailoverTest.test_kill_9_of_the_leader_loses_no_acknowledged_invoice) \
    > "$work/failover.txt" 2>&1 || { cat "$work/failover.txt"; exit 1; }
  python3 - "$work/failover.txt" <<'PY'
import re, sys
times = sorted(float(m.group(1)) for m in re.finditer(
    r"first acknowledged write ([\d.]+)s later", open(sys.argv[1]).read()))
def pct(p):
    return times[min(len(times) - 1, int(round(p / 100 * (len(times) - 1))))]
print("  kills: %d; kill to first acknowledged write: min %.2f s, p50 %.2f s,"
      " p90 %.2f s, p99 %.2f s, max %.2f s" % (len(times), times[0], pct(50),
                                               pct(90), pct(99), times[-1]))
PY
  grep -E "invoices acknowledged|^OK|FAILED" "$work/failover.txt" | sed 's/^/  /'
fi

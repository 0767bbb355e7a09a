#!/usr/bin/env bash
# Replication lag: poledger-loadgen drives RecordInvoice at 256 in flight
# (and BatchRecordInvoices) against a leader while a read replica
# (--follow) copies its log; a sampler polls both heads every 10 ms. Also
# the leader's rate alone, in the same run, so the replica's cost on a
# shared machine shows as a ratio.
#
#   bash bench/replica.sh                     # 8 s per measurement
#   POLEDGER_REPLICA_SECONDS=4 bash bench/replica.sh
#   POLEDGER_BUILD_DIR=build-x bash bench/replica.sh
#
# Prints, per load: the leader's rate alone and with the replica, the lag
# in records (leader head - replica head, p50/p99/max over the samples
# taken while the leader's head moves) and
# in time (for each sample under load, how long until the replica held the leader's
# head of that moment: p50/p99/max, to the sampler's resolution of ~10 ms).
# Everything listens on 127.0.0.1 and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${POLEDGER_REPLICA_SECONDS:-8}"
source bench/lib.sh
bench_build

bench_workdir


# sample LEADER REPLICA SECONDS OUT: both heads every 10 ms.
sample() {
  PYTHONPATH="$build/tests/e2e/stubs" /usr/bin/python3 - "$@" <<'EOF'
import sys, time
import grpc
from poledger.v1 import log_pb2, log_pb2_grpc
leader, replica, seconds, out = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
stubs = [log_pb2_grpc.EventLogServiceStub(grpc.insecure_channel(a))
         for a in (leader, replica)]
def head(stub):
    return stub.GetLogDigest(log_pb2.GetLogDigestRequest(), timeout=5).head_position
end = time.monotonic() + seconds
with open(out, "w") as f:
    while time.monotonic() < end:
        t = time.monotonic()
        f.write("%.6f %d %d\n" % (t, head(stubs[0]), head(stubs[1])))
        time.sleep(max(0, 0.01 - (time.monotonic() - t)))
EOF
}

# lag SAMPLES: the figures.
lag() {
  python3 - "$1" <<'EOF'
import sys
rows = [tuple(float(x) for x in line.split()) for line in open(sys.argv[1])]
def pct(v, p):
    v = sorted(v)
    return v[min(len(v) - 1, int(p * len(v)))] if v else 0
# Only the samples under load: the leader's head moved since the last one.
loaded = [i for i in range(1, len(rows)) if rows[i][1] > rows[i - 1][1]]
events = [max(0, rows[i][1] - rows[i][2]) for i in loaded]
delays, j = [], 0
for i in loaded:
    t, l, _ = rows[i]
    j = max(j, i)
    while j < len(rows) and rows[j][2] < l:
        j += 1
    if j == len(rows):
        break
    delays.append((rows[j][0] - t) * 1000)
print("lag records p50 %d p99 %d max %d; lag ms p50 %.0f p99 %.0f max %.0f (%d samples under load)"
      % (pct(events, .5), pct(events, .99), max(events), pct(delays, .5),
         pct(delays, .99), max(delays), len(loaded)))
EOF
}

run() {  # NAME LOADGEN_ARGS...
  local name=$1
  shift
  start_server "$name-alone" --heartbeat-seconds=1
  "$build/clients/poledger-loadgen" --server="$address" --seconds="$seconds" \
    --rounds=1 "$@" >"$work/$name-alone.txt"
  kill "$pid"
  start_server "$name-leader" --heartbeat-seconds=1
  local leader=$address
  start_server "$name-replica" --follow="$leader" --heartbeat-seconds=1
  local replica=$address
  sample "$leader" "$replica" "$((${seconds%.*} + 2))" "$work/$name.samples" &
  local sampler=$!
  "$build/clients/poledger-loadgen" --server="$leader" --seconds="$seconds" \
    --rounds=1 "$@" >"$work/$name-replicated.txt"
  wait "$sampler"
  echo "## $name ($*)"
  echo "leader alone:"
  grep -v '^#' "$work/$name-alone.txt" | sed 's/^/  /'
  echo "leader with a replica following:"
  grep -v '^#' "$work/$name-replicated.txt" | sed 's/^/  /'
  echo "replication: $(lag "$work/$name.samples")"
  echo
}

echo "poledger replication, ${seconds} s per measurement, same machine (2 vCPUs shared by leader, replica, load generator and sampler)"
echo
run single --methods=invoice --concurrency=256
run batch --methods=batch --batch-sizes=500 --concurrency=4

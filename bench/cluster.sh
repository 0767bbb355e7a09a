#!/usr/bin/env bash
# The proxy's cost per call: poledger-loadgen straight to one server and
# through HAProxy in front of it (the configuration
# deploy/cluster/haproxy-config.sh writes), in one run on this machine, then
# through HAProxy in front of three shards on the same machine.
#
#   bash bench/cluster.sh                     # 8 s per measurement
#   POLEDGER_CLUSTER_SECONDS=2 bash bench/cluster.sh
#   POLEDGER_BUILD_DIR=build-x bash bench/cluster.sh
#
# Prints loadgen's rows for each, and the proxy's ratios (rate through the
# proxy / rate straight, p50 through / p50 straight) per method and
# concurrency. Everything listens on 127.0.0.1 and stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${POLEDGER_CLUSTER_SECONDS:-8}"
concurrency="${POLEDGER_CLUSTER_CONCURRENCY:-1,16,64,256}"
if ! command -v haproxy >/dev/null && [[ ! -x /usr/sbin/haproxy ]]; then
  bash deploy/install-deps.sh
fi
haproxy_bin="$(command -v haproxy || echo /usr/sbin/haproxy)"
source bench/lib.sh
bench_build
bench_workdir

# start_shard NAME I N: a server for shard I of N; sets $address and $pid.
start_shard() { start_server "$1" --shard="$2/$3"; }

# start_proxy NAME ADDRESS...: HAProxy in front of the shards; sets
# $address once it listens.
start_proxy() {
  local name=$1 port
  shift
  port="$(free_port)"
  bash deploy/cluster/haproxy-config.sh --listen="127.0.0.1:$port" "$@" \
    >"$work/$name.cfg"
  "$haproxy_bin" -f "$work/$name.cfg" -db >"$work/$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" \
      2>/dev/null && break
    sleep 0.1
  done
  sleep 1  # The first health checks.
  address="127.0.0.1:$port"
}

loadgen() {  # ADDRESS SERVER_PID OUT
  "$build/clients/poledger-loadgen" --server="$1" --seconds="$seconds" \
    --methods=info,get,invoice --concurrency="$concurrency" \
    --server-pid="$2" >"$3"
}

start_shard one 0 1
one=$address
one_pid=$pid
start_proxy proxy "$one"
proxy=$address
loadgen "$one" "$one_pid" "$work/straight.txt"
loadgen "$proxy" "$one_pid" "$work/proxied.txt"

shards=()
for i in 0 1 2; do
  start_shard "shard$i" "$i" 3
  shards+=("$address")
done
start_proxy three "${shards[@]}"
three=$address
"$build/clients/poledger-loadgen" --server="$three" --seconds="$seconds" \
  --methods=info,get,invoice --concurrency="$concurrency" >"$work/three.txt"

echo "poledger-loadgen, ${seconds} s per measurement, same machine"
echo
echo "## straight to one server"
cat "$work/straight.txt"
echo
echo "## through HAProxy to the same server"
cat "$work/proxied.txt"
echo
echo "## through HAProxy to three shards on this machine"
cat "$work/three.txt"
echo
echo "| method | in flight | straight/s | through proxy/s | rate ratio | p50 straight us | p50 through us | p50 ratio |"
echo "|---|---|---|---|---|---|---|---|"
awk 'NR == FNR { if ($1 != "ratio" && $3 ~ /^[0-9.]+$/) { rate[$1 " " $2] = $3; p50[$1 " " $2] = $4 }; next }
     $1 != "ratio" && $3 ~ /^[0-9.]+$/ && ($1 " " $2) in rate {
       k = $1 " " $2
       printf "| %s | %s | %s | %s | %.2fx | %s | %s | %.2fx |\n", $1, $2,
         rate[k], $3, $3 / rate[k], p50[k], $4, $4 / p50[k]
     }' "$work/straight.txt" "$work/proxied.txt"

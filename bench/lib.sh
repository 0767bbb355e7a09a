# Helpers the benchmark scripts share; source it after `cd` to the
# repository:
#
#   source bench/lib.sh
#   bench_build              # $build (POLEDGER_BUILD_DIR, default build),
#                            # built unless its server and loadgen exist
#   bench_workdir            # $work, a temporary directory, and $pids,
#                            # both removed and stopped at exit
#   start_server NAME ARGS   # a poledger-server on a free port of
#                            # 127.0.0.1 with its data in $work/NAME;
#                            # sets $address and $pid
#
# start_server runs in the calling shell, not a subshell, so that its pid
# reaches the cleanup.

bench_build() {
  build="${POLEDGER_BUILD_DIR:-build}"
  if [[ ! -x "$build/clients/poledger-loadgen" || ! -x "$build/server/poledger-server" ]]; then
    BUILD_DIR="$build" bash deploy/build.sh
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

bench_workdir() {
  work="$(mktemp -d)"
  pids=()
  trap bench_cleanup EXIT
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}

start_server() {
  local name=$1 port
  shift
  port="$(free_port)"
  "$build/server/poledger-server" --listen="127.0.0.1:$port" \
    --data-dir="$work/$name" "$@" >"$work/$name.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 100); do
    grep -q "serving" "$work/$name.log" 2>/dev/null && break
    sleep 0.1
  done
  address="127.0.0.1:$port"
}

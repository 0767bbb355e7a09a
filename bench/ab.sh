#!/usr/bin/env bash
# Two builds of poledger measured in turn on one machine, for a change
# whose effect is smaller than the machine's drift between runs: each round
# starts a fresh server of build A, measures it, then one of build B, and
# prints every round's rates and the median ratio B/A.
#
#   bash bench/ab.sh DIR_A DIR_B [LOADGEN ARGS...]
#   POLEDGER_AB_ROUNDS=4 bash bench/ab.sh /tmp/before build \
#     --methods=invoice --concurrency=1
#
# DIR_A and DIR_B each hold server/poledger-server and
# clients/poledger-loadgen (a build tree, or those two copied). Loadgen
# arguments default to RecordInvoice at 1 in flight; each run warms up 2 s
# and measures 5 s (POLEDGER_AB_SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $# -lt 2 ]]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
dir_a=$1 dir_b=$2
shift 2
args=("$@")
if [[ ${#args[@]} == 0 ]]; then args=(--methods=invoice --concurrency=1); fi
rounds="${POLEDGER_AB_ROUNDS:-4}"
seconds="${POLEDGER_AB_SECONDS:-5}"
source bench/lib.sh  # free_port, bench_workdir, start_server
bench_workdir

# Sets $rate, the first row's rate (invoices per second for batches), and
# $cpu, the server's CPU us per request (per invoice for batches). Runs in
# this shell, so that the server's pid reaches the cleanup.
run_one() {
  local build=$1 name=$2 figures
  start_server "$name"
  figures="$("$build/clients/poledger-loadgen" --server="$address" \
    --seconds="$seconds" --warmup=2 --server-pid="$pid" "${args[@]}" |
    awk '/^BatchRecordInvoices\// { sub(/^\(/, "", $10); print $10, $8; exit }
         /^(RecordInvoice|CreatePurchaseOrder|GetInvoice|GetPurchaseOrder|GetServerInfo) / { print $3, $8; exit }')"
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "${work:?}/$name"
  read -r rate cpu <<<"$figures"
}

ratios=()
for round in $(seq "$rounds"); do
  run_one "$dir_a" "a$round"
  a=$rate a_cpu=$cpu
  run_one "$dir_b" "b$round"
  b=$rate b_cpu=$cpu
  ratio="$(python3 -c "print(f'{$b / $a:.3f}')")"
  ratios+=("$ratio")
  echo "round $round: A $a/s ($a_cpu us server CPU), B $b/s ($b_cpu us), B/A $ratio"
done
python3 -c "import statistics, sys; print('median B/A', statistics.median(map(float, sys.argv[1:])))" "${ratios[@]}"

#!/usr/bin/env bash
# Builds the libFuzzer harnesses (clang, ASan, UBSan) into build-fuzz/ and
# runs each for SECONDS (default 15) on a copy of its committed seed corpus
# in fuzz/corpus/NAME; new inputs go to a temporary directory, crashes to
# build-fuzz/crashes/. Prints each harness's executions. Exit status 1 if
# any harness finds a crash.
#   bash deploy/fuzz.sh [SECONDS]      e.g. bash deploy/fuzz.sh 600
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-15}"
build_dir="${FUZZ_BUILD_DIR:-build-fuzz}"
cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_COMPILER=clang++ -DPOLEDGER_FUZZ=ON >/dev/null
cmake --build "$build_dir" --target poledger_fuzzers

mkdir -p "$build_dir/crashes"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0
for name in requests record snapshot page_token; do
  mkdir -p "$work/$name"
  log="$build_dir/${name}_fuzzer.log"
  if ASAN_OPTIONS=detect_leaks=1 "$build_dir/fuzz/${name}_fuzzer" \
      "$work/$name" "fuzz/corpus/$name" -max_total_time="$seconds" \
      -print_final_stats=1 -artifact_prefix="$build_dir/crashes/${name}-" \
      -close_fd_mask=1 >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed=1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "fuzz ${name}: ${status}, ${runs:-?} executions in ${seconds} s"
  if [[ $status != ok ]]; then tail -40 "$log"; fi
done
exit "$failed"

#!/usr/bin/env bash
# Installs what is needed, builds, and runs every test.
#   POLEDGER_SANITIZE=1 bash deploy/test.sh   runs them under ASan + UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
bash deploy/build.sh

if [[ "${POLEDGER_SANITIZE:-0}" == 1 ]]; then
  build_dir="${BUILD_DIR:-build-asan}"
  export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
  export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
else
  build_dir="${BUILD_DIR:-build}"
fi

# The fuzzers for a bounded time first (POLEDGER_FUZZ_SECONDS each,
# default 15; 0 skips them), so that CTest's summary closes the output.
fuzz_seconds="${POLEDGER_FUZZ_SECONDS:-15}"
if [[ "$fuzz_seconds" != 0 ]]; then
  bash deploy/fuzz.sh "$fuzz_seconds"
fi

cd "$build_dir"
ctest --output-on-failure --parallel 2 --timeout 600

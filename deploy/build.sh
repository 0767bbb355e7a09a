#!/usr/bin/env bash
# Configures and builds poledger with CMake and Ninja.
#   BUILD_DIR        build directory (default: build, or build-asan when
#                    POLEDGER_SANITIZE=1)
#   POLEDGER_SANITIZE=1  AddressSanitizer + UndefinedBehaviorSanitizer build
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize="${POLEDGER_SANITIZE:-0}"
if [[ "$sanitize" == 1 ]]; then
  build_dir="${BUILD_DIR:-build-asan}"
  extra=(-DPOLEDGER_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug)
else
  build_dir="${BUILD_DIR:-build}"
  extra=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi

cmake -S . -B "$build_dir" -G Ninja -DPOLEDGER_WERROR=ON "${extra[@]}" >/dev/null
cmake --build "$build_dir"

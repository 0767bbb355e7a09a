#!/usr/bin/env bash
# Installs what is needed, builds, and runs poledger-server in the
# foreground on an embedded RocksDB data directory. Extra arguments are
# passed to the server, e.g. --listen=127.0.0.1:50051 --data-dir=./data.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
bash deploy/build.sh
exec "${BUILD_DIR:-build}/server/poledger-server" --data-dir=./data "$@"

#!/usr/bin/env bash
# Installs what is needed, builds, and runs poledger-server in the
# foreground on an embedded RocksDB data directory. Extra arguments are
# passed to the server, e.g. --listen=127.0.0.1:50051 --data-dir=./data.
#
# Contacts are personal data, sealed with keys that a key-encryption key
# wraps (README "Personal data"); that key lives outside the data
# directory: POLEDGER_DATA_KEY_FILE, by default ~/.config/poledger/data.key,
# made here once with `openssl rand -hex 32`. Keep it: without it the data
# directory's contacts cannot be read.
set -euo pipefail
cd "$(dirname "$0")/.."

bash deploy/install-deps.sh
bash deploy/build.sh
key="${POLEDGER_DATA_KEY_FILE:-$HOME/.config/poledger/data.key}"
if [[ ! -s "$key" ]]; then
  mkdir -p "$(dirname "$key")"
  (umask 077 && openssl rand -hex 32 > "$key")
  echo "made the data key $key: keep it, and back it up apart from the data" >&2
fi
exec "${BUILD_DIR:-build}/server/poledger-server" --data-dir=./data \
  --data-key-file="$key" "$@"

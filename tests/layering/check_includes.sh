#!/usr/bin/env bash
# Fails, naming the file and line, when a source file includes a header of
# a layer above its own (cmake/layers.cmake has the order) or gRPC/RocksDB
# where its layer must not.
set -euo pipefail
cd "$1"
status=0
check() {  # check DIR PATTERN WHY
  local hits
  hits=$(grep -rnE "^#include \"($2)" "$1" --include='*.h' --include='*.cc' || true)
  if [[ -n "$hits" ]]; then
    echo "$1/ must not include $3:"
    echo "$hits"
    status=1
  fi
}
check base 'core/|eventstore/|ledger/|api/|server/|clients/|bench/|grpc|rocksdb' 'any other layer'
check core 'eventstore/|ledger/|api/|server/|clients/|bench/|grpc|rocksdb' 'storage, application, API or gRPC code'
check eventstore 'core/|ledger/|api/|server/|clients/|bench/|grpc' 'the domain or anything above'
check ledger 'api/|server/|clients/|bench/|grpc|rocksdb' 'API, gRPC or RocksDB code'
check api 'server/|clients/|bench/|grpc' 'server or gRPC code'
check clients 'server/' 'the server'
check bench 'server/' 'the server'
[[ $status == 0 ]] && echo "layering: every include goes to its own layer or below"
exit $status

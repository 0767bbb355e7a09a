#!/usr/bin/env bash
# Installs the Debian 12 packages poledger needs to build, test and run.
# Idempotent: packages already installed are left alone, and apt-get update
# runs only when something is missing.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config openssl
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  grpc-proto librocksdb-dev rocksdb-tools libabsl-dev
  libgtest-dev libgmock-dev libbenchmark-dev libssl-dev libcli11-dev
  libcurl4-openssl-dev libjemalloc-dev prometheus-cpp-dev libspdlog-dev
  clang libclang-rt-14-dev
  python3 python3-grpcio python3-protobuf python3-aiosmtpd python3-yaml
  python3-prometheus-client haproxy etcd-server
  postgresql-15 postgresql-client-15
  libcpp-httplib-dev chromium chromium-driver python3-selenium
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

sudo=""
if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# PostgreSQL is bench/compare.sh's peer, started by it in a directory of its
# own: the package must not create and start a cluster of its own.
if [[ ! -e /etc/postgresql-common/createcluster.conf ]]; then
  $sudo mkdir -p /etc/postgresql-common
  echo "create_main_cluster = false" |
    $sudo tee /etc/postgresql-common/createcluster.conf >/dev/null
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null

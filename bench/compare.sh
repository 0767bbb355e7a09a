#!/usr/bin/env bash
# poledger against its peer: the same machine, one run, PostgreSQL 15 (the
# other way to keep this ledger) storing the same kind of events.
#
#   bash bench/compare.sh              # 10 s per measurement
#   POLEDGER_COMPARE_SECONDS=2 bash bench/compare.sh
#   POLEDGER_BUILD_DIR=build-x bash bench/compare.sh   # another build tree
#
# Installs Debian's PostgreSQL 15 if missing, starts it on 127.0.0.1 in a
# temporary directory (synchronous_commit and fsync on), and stops it after.
# PostgreSQL: a table with a bigserial position, unique (stream, version)
# and a 300-byte payload; pgbench appends single events (version = max + 1
# of the client's own stream) at 1, 16, 64 and 256 clients, and 500-event
# batches in one transaction at 1 and 4 clients. poledger: a fresh server,
# and poledger-loadgen's RecordInvoice at the same concurrencies and
# BatchRecordInvoices of 500 at 1 and 4. Each side warms up unmeasured
# first: pgbench runs each script once, poledger-loadgen each load for 2 s
# before each concurrency's windows (a new client's first seconds ran at
# half the rate of the next ones). Prints both and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${POLEDGER_COMPARE_SECONDS:-10}"
pg_bin=/usr/lib/postgresql/15/bin

if [[ ! -x "$pg_bin/postgres" || ! -x /usr/bin/pgbench ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql-15 \
    postgresql-client-15 >/dev/null
fi
source bench/lib.sh  # bench_build, free_port
bench_build

work="$(mktemp -d)"
chmod 755 "$work"
server_pid=""
pg_started=0
# PostgreSQL does not run as root: as the package's postgres user then.
as_pg() {
  if [[ "$(id -u)" == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}
cleanup() {
  if [[ -n "$server_pid" ]]; then kill "$server_pid" 2>/dev/null || true; fi
  if [[ "$pg_started" == 1 ]]; then
    as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null 2>&1 || true
  fi
  if [[ -n "$server_pid" ]]; then wait "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# --- PostgreSQL -------------------------------------------------------------
mkdir "$work/pg"
if [[ "$(id -u)" == 0 ]]; then chown postgres "$work/pg"; fi
as_pg "$pg_bin/initdb" -D "$work/pg" -A trust -U bench >/dev/null
pg_port="$(free_port)"
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $pg_port -c unix_socket_directories=$work/pg -c max_connections=300 -c synchronous_commit=on -c fsync=on -c shared_buffers=256MB" \
  start >/dev/null
pg_started=1
psql=(psql -X -q -h 127.0.0.1 -p "$pg_port" -U bench -d postgres)
"${psql[@]}" -c "CREATE TABLE events (
  position bigserial PRIMARY KEY,
  stream text NOT NULL,
  version bigint NOT NULL,
  payload bytea NOT NULL,
  UNIQUE (stream, version));"
cat >"$work/single.sql" <<'SQL'
INSERT INTO events (stream, version, payload)
SELECT 's' || :client_id, coalesce(max(version), 0) + 1,
       decode(repeat('ab', 300), 'hex')
FROM events WHERE stream = 's' || :client_id;
SQL
cat >"$work/batch.sql" <<'SQL'
BEGIN;
INSERT INTO events (stream, version, payload)
SELECT 'b' || :client_id, v, decode(repeat('ab', 300), 'hex')
FROM generate_series(
  (SELECT coalesce(max(version), 0) + 1 FROM events WHERE stream = 'b' || :client_id),
  (SELECT coalesce(max(version), 0) + 500 FROM events WHERE stream = 'b' || :client_id)) AS v;
COMMIT;
SQL
# Transactions per second of a pgbench run.
pgbench_tps() {
  local script="$1" clients="$2" threads
  threads=$((clients < 2 ? 1 : 2))
  pgbench -n -h 127.0.0.1 -p "$pg_port" -U bench -c "$clients" -j "$threads" \
    -T "$seconds" -f "$script" postgres >"$work/pgbench.out" 2>&1 || true
  if ! awk '/^tps = / { printf "%.0f\n", $3; found = 1 } END { exit !found }' \
      "$work/pgbench.out"; then
    echo "pgbench at $clients clients failed:" >&2
    tail -5 "$work/pgbench.out" >&2
    echo 0
  fi
}
declare -A pg_single pg_batch
# Each side warms up first (caches, allocators, the table's or the
# accounts' first writes), so that no measurement is of a cold start.
pgbench_tps "$work/single.sql" 16 >/dev/null
pgbench_tps "$work/batch.sql" 4 >/dev/null
for c in 1 16 64 256; do pg_single[$c]="$(pgbench_tps "$work/single.sql" "$c")"; done
for c in 1 4; do pg_batch[$c]=$(( $(pgbench_tps "$work/batch.sql" "$c") * 500 )); done
as_pg "$pg_bin/pg_ctl" -D "$work/pg" -m fast -w stop >/dev/null
pg_started=0

# --- poledger ---------------------------------------------------------------
port="$(free_port)"
"$build/server/poledger-server" --listen="127.0.0.1:$port" --data-dir="$work/poledger" \
  >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do
  grep -q "SERVING\|serving" "$work/server.log" 2>/dev/null && break
  sleep 0.1
done
loadgen=("$build/clients/poledger-loadgen" --server="127.0.0.1:$port"
  --seconds="$seconds" --server-pid="$server_pid" --warmup=2)
"${loadgen[@]}" --methods=invoice --concurrency=1,16,64,256 >"$work/single.txt"
"${loadgen[@]}" --methods=batch --batch-sizes=500 --concurrency=1,4 >"$work/batch.txt"
declare -A pl_single pl_batch
for c in 1 16 64 256; do
  pl_single[$c]="$(awk -v c="$c" '$1 == "RecordInvoice" && $2 == c { print $3 }' "$work/single.txt")"
done
for c in 1 4; do
  pl_batch[$c]="$(awk -v c="$c" '$1 == "BatchRecordInvoices/500" && $2 == c { gsub(/\(/, "", $10); print $10 }' "$work/batch.txt")"
done

# --- Report -----------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "-" }'; }
echo "poledger vs PostgreSQL 15, ${seconds} s per measurement, same machine"
echo
echo "| single events | clients | poledger RecordInvoice/s | PostgreSQL appends/s | ratio |"
echo "|---|---|---|---|---|"
best_pg=0
for c in 1 16 64 256; do
  echo "| single | $c | ${pl_single[$c]} | ${pg_single[$c]} | $(ratio "${pl_single[$c]}" "${pg_single[$c]}") |"
  if (( pg_single[$c] > best_pg )); then best_pg=${pg_single[$c]}; fi
done
echo
echo "| 500-event batches | clients | poledger invoices/s | PostgreSQL events/s | ratio |"
echo "|---|---|---|---|---|"
best_pg_batch=0
best_pl_batch=0
for c in 1 4; do
  echo "| batch | $c | ${pl_batch[$c]} | ${pg_batch[$c]} | $(ratio "${pl_batch[$c]}" "${pg_batch[$c]}") |"
  if (( pg_batch[$c] > best_pg_batch )); then best_pg_batch=${pg_batch[$c]}; fi
  if (( pl_batch[$c] > best_pl_batch )); then best_pl_batch=${pl_batch[$c]}; fi
done
echo
echo "RecordInvoice at 256 / PostgreSQL's best single-event rate: $(ratio "${pl_single[256]}" "$best_pg") (target >= 5x)"
echo "BatchRecordInvoices best / PostgreSQL's best 500-event batch rate: $(ratio "$best_pl_batch" "$best_pg_batch") (target >= 1.0x)"

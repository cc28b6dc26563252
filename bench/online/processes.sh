#!/usr/bin/env bash
# Online lookups from single-threaded client processes: featuredb vs
# PostgreSQL 15, same rows, same client, same run.
#
#   bench/online/processes.sh [KEYS]     (default 1000000)
#
# run.sh measures pgbench -c 8 -j 2: two client threads in one process.
# Model servers often run as several single-threaded processes (gunicorn
# or uvicorn workers) instead, which is the shape here: 8 pgbench
# processes with one connection each (-c 1 -j 1), one key per transaction,
# over each server's Unix-domain socket and over loopback TCP, after a 5 s
# warm-up; the processes' TPS are summed.
#
# BENCH_RECORD=1 appends the results to bench/RESULTS.md; BENCH_NO_BUILD=1
# skips the release build; SECONDS_PER_RUN sets pgbench -T (default 15).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

KEYS=${1:-1000000}
T=${SECONDS_PER_RUN:-15}
bench_prelude

ENTITIES="$WORK/online-entities-$KEYS.csv"
gen_rows "$ENTITIES" "$KEYS" "$KEYS" 1 0
COLUMNS="user_id BIGINT, ts TIMESTAMP, f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 DOUBLE PRECISION, n BIGINT"
lookup_scripts "$KEYS"

trap 'stop_postgres; stop_featuredb' EXIT

# processes HOST PORT LABEL: prints the summed TPS of 8 single-threaded
# pgbench processes (HOST: an address, or the socket's directory)
processes() {
  local host=$1 port=$2 logdir="$WORK/processes-$3" i
  rm -rf "$logdir"; mkdir -p "$logdir"
  for i in $(seq 1 8); do
    "$PGBENCH" -n -M prepared -c 1 -j 1 -T 5 -h "$host" -p "$port" -f "$ONE" >/dev/null 2>&1 &
  done
  wait
  for i in $(seq 1 8); do
    "$PGBENCH" -n -M prepared -c 1 -j 1 -T "$T" -h "$host" -p "$port" -f "$ONE" >"$logdir/$i" 2>&1 &
  done
  wait
  awk '/^tps/ {sum += $3; n++} END { if (n != 8) exit 1; printf "%.0f\n", sum }' "$logdir"/* \
    || { cat "$logdir"/* >&2; exit 1; }
}

start_postgres "$PG_PORT"
psql -p "$PG_PORT" -qc "CREATE TABLE user_features ($COLUMNS, PRIMARY KEY (user_id))"
psql -p "$PG_PORT" -qc "\\copy user_features FROM '$ENTITIES' WITH (FORMAT csv)"
psql -p "$PG_PORT" -qc "VACUUM ANALYZE user_features"
PG_UNIX=$(processes "$WORK/pg-$PG_PORT" "$PG_PORT" pg-unix)
PG_TCP=$(processes 127.0.0.1 "$PG_PORT" pg-tcp)
stop_postgres

start_featuredb "$FDB_PORT"
psql -p "$FDB_PORT" -qc "CREATE TABLE entities ($COLUMNS)"
psql -p "$FDB_PORT" -qc "\\copy entities FROM '$ENTITIES' WITH (FORMAT csv)"
psql -p "$FDB_PORT" -qc "CREATE FEATURE VIEW user_features KEY (user_id) TIMESTAMP ts ONLINE AS SELECT * FROM entities"
psql -p "$FDB_PORT" -qc "REFRESH FEATURE VIEW user_features"
FDB_UNIX=$(processes "$WORK/fdb-$FDB_PORT" "$FDB_PORT" fdb-unix)
FDB_TCP=$(processes 127.0.0.1 "$FDB_PORT" fdb-tcp)
stop_featuredb

ratio() { echo "scale=2; $1 / $2" | bc; }
echo "8 single-threaded processes, Unix socket: postgresql $PG_UNIX tps  featuredb $FDB_UNIX tps  ratio $(ratio "$FDB_UNIX" "$PG_UNIX")x"
echo "8 single-threaded processes, TCP:         postgresql $PG_TCP tps  featuredb $FDB_TCP tps  ratio $(ratio "$FDB_TCP" "$PG_TCP")x"

if [ -n "${BENCH_RECORD:-}" ]; then
  {
    echo
    echo "### Online lookups from single-threaded client processes, $KEYS keys — $(date -u +%Y-%m-%d) ($(nproc) cores)"
    echo
    echo "Command: \`bench/online/processes.sh $KEYS\` at commit $(cd "$BENCH_ROOT" && git rev-parse --short HEAD) (8 pgbench processes, -M prepared -c 1 -j 1 -T $T each, TPS summed; both servers default settings)"
    echo
    echo "| workload | PostgreSQL 15 | featuredb | ratio |"
    echo "|---|---:|---:|---:|"
    echo "| 1-key lookup over Unix sockets, TPS | $PG_UNIX | $FDB_UNIX | $(ratio "$FDB_UNIX" "$PG_UNIX")× |"
    echo "| 1-key lookup over loopback TCP, TPS | $PG_TCP | $FDB_TCP | $(ratio "$FDB_TCP" "$PG_TCP")× |"
  } >> "$BENCH_ROOT/bench/RESULTS.md"
fi

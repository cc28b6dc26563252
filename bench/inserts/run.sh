#!/usr/bin/env bash
# Single-row INSERTs, one after another on one connection (each one
# acknowledged before the next is sent): featuredb vs PostgreSQL 15.
#
#   bench/inserts/run.sh [COUNT]      (default 5000)
#
# Appends the result to bench/RESULTS.md.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

COUNT=${1:-5000}
PG_PORT=${PG_PORT:-55442}
FDB_PORT=${FDB_PORT:-55443}
SQL="$WORK/inserts-$COUNT.sql"
ensure_postgres
(cd "$BENCH_ROOT" && cargo build --release --quiet)
awk -v n="$COUNT" 'BEGIN { for (i = 0; i < n; i++) printf "INSERT INTO events VALUES (%d, %d.5, %d);\n", i, i, i % 97 }' > "$SQL"
trap 'stop_postgres; stop_featuredb' EXIT

timed() {  # PORT
  psql -h 127.0.0.1 -p "$1" -U bench -d featuredb -qc "CREATE TABLE events (id BIGINT, v DOUBLE PRECISION, k INTEGER)"
  local start end count
  start=$(now)
  psql -h 127.0.0.1 -p "$1" -U bench -d featuredb -q -f "$SQL" >/dev/null
  end=$(now)
  count=$(psql -h 127.0.0.1 -p "$1" -U bench -d featuredb -tAc "SELECT count(*) FROM events")
  [ "$count" = "$COUNT" ] || { echo "expected $COUNT rows, found $count" >&2; exit 1; }
  echo "$end - $start" | bc -l
}

start_postgres "$PG_PORT"
PG=$(timed "$PG_PORT"); stop_postgres
start_featuredb "$FDB_PORT"
FDB=$(timed "$FDB_PORT")
FILES=$(find "$WORK/fdb-$FDB_PORT/warehouse" -name '*.parquet' | wc -l)
stop_featuredb

PG_MS=$(echo "scale=3; $PG * 1000 / $COUNT" | bc)
FDB_MS=$(echo "scale=3; $FDB * 1000 / $COUNT" | bc)
printf 'postgresql 15: %.2f s (%s ms per INSERT)\n' "$PG" "$PG_MS"
printf 'featuredb:     %.2f s (%s ms per INSERT, %d data files)\n' "$FDB" "$FDB_MS" "$FILES"
{
  echo
  echo "### $COUNT single-row INSERTs, one connection — $(date -u +%Y-%m-%d) ($(nproc) cores)"
  echo
  echo "Command: \`bench/inserts/run.sh $COUNT\` (psql -f, each INSERT acknowledged before the next; default settings, fsync on)"
  echo
  echo "| system | seconds | ms per INSERT |"
  echo "|---|---:|---:|"
  printf '| PostgreSQL 15 | %.2f | %s |\n' "$PG" "$PG_MS"
  printf '| featuredb | %.2f | %s |\n' "$FDB" "$FDB_MS"
  echo
  echo "featuredb acknowledges small INSERTs from its write-ahead log and commits them to Iceberg in batches ($FILES data files for $COUNT INSERTs)."
} >> "$BENCH_ROOT/bench/RESULTS.md"

#!/usr/bin/env bash
# COPY FROM STDIN throughput: featuredb vs PostgreSQL 15, same data, same
# client (psql \copy, CSV), same run.
#
#   bench/copy/run.sh [ROWS]          (default 10000000)
#
# Prints rows/s for both and the ratio, and appends the result to
# bench/RESULTS.md.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

ROWS=${1:-10000000}
DATA="$WORK/copy-$ROWS.csv"
PG_PORT=${PG_PORT:-55432}
FDB_PORT=${FDB_PORT:-55433}
SCHEMA="CREATE TABLE events (user_id BIGINT, ts TIMESTAMP, f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 BIGINT)"

ensure_postgres
(cd "$BENCH_ROOT" && cargo build --release --quiet)

if [ ! -s "$DATA" ]; then
  echo "generating $ROWS rows (fixed seed) ..." >&2
  awk -v n="$ROWS" 'BEGIN {
    srand(42); base = 1704067200;  # 2024-01-01 00:00:00 UTC
    for (i = 0; i < n; i++) {
      t = base + int(rand() * 31536000);
      printf "%d,%s,%.6f,%.6f,%d\n", int(rand() * 1000000), strftime("%Y-%m-%d %H:%M:%S", t, 1),
        rand() * 1000, rand() * 2 - 1, int(rand() * 100000)
    }
  }' > "$DATA"
fi
BYTES=$(stat -c %s "$DATA")

trap 'stop_postgres; stop_featuredb' EXIT

timed_copy() {  # PORT USER
  local port=$1 user=$2 start end
  psql -h 127.0.0.1 -p "$port" -U "$user" -d featuredb -qc "$SCHEMA" >/dev/null
  start=$(now)
  psql -h 127.0.0.1 -p "$port" -U "$user" -d featuredb -qc "\\copy events FROM '$DATA' WITH (FORMAT csv)" >/dev/null
  end=$(now)
  local count
  count=$(psql -h 127.0.0.1 -p "$port" -U "$user" -d featuredb -tAc "SELECT count(*) FROM events")
  [ "$count" = "$ROWS" ] || { echo "expected $ROWS rows, found $count" >&2; exit 1; }
  echo "$end - $start" | bc -l
}

start_postgres "$PG_PORT"
PG_SECONDS=$(timed_copy "$PG_PORT" bench)
stop_postgres

start_featuredb "$FDB_PORT"
FDB_SECONDS=$(timed_copy "$FDB_PORT" bench)
FDB_FILES=$(find "$WORK/fdb-$FDB_PORT/warehouse" -name '*.parquet' | wc -l)
FDB_BYTES=$(du -sb "$WORK/fdb-$FDB_PORT/warehouse" | cut -f1)
stop_featuredb

PG_RATE=$(echo "$ROWS / $PG_SECONDS" | bc)
FDB_RATE=$(echo "$ROWS / $FDB_SECONDS" | bc)
RATIO=$(echo "scale=2; $FDB_RATE / $PG_RATE" | bc)

printf 'rows %d (%.0f MB csv)\n' "$ROWS" "$(echo "$BYTES/1000000" | bc -l)"
printf 'postgresql 15: %8.2f s  %10d rows/s\n' "$PG_SECONDS" "$PG_RATE"
printf 'featuredb:     %8.2f s  %10d rows/s  (%d data files, %d MB on disk)\n' "$FDB_SECONDS" "$FDB_RATE" "$FDB_FILES" "$((FDB_BYTES / 1000000))"
printf 'ratio featuredb/postgresql: %sx\n' "$RATIO"

RESULTS="$BENCH_ROOT/bench/RESULTS.md"
{
  echo
  echo "### COPY FROM STDIN, $ROWS rows — $(date -u +%Y-%m-%d) ($(nproc) cores)"
  echo
  echo "Command: \`bench/copy/run.sh $ROWS\` (psql \\copy, CSV, both servers on loopback, default settings, fsync on)"
  echo
  echo "| system | seconds | rows/s |"
  echo "|---|---:|---:|"
  printf '| PostgreSQL 15 | %.2f | %d |\n' "$PG_SECONDS" "$PG_RATE"
  printf '| featuredb | %.2f | %d |\n' "$FDB_SECONDS" "$FDB_RATE"
  echo
  echo "Ratio featuredb / PostgreSQL: **${RATIO}×** (goal ≥ 2×)."
} >> "$RESULTS"

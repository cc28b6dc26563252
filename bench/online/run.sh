#!/usr/bin/env bash
# Online lookups and materialization: featuredb vs PostgreSQL 15, same rows,
# same client (pgbench), same run.
#
#   bench/online/run.sh [KEYS] [SOURCE_ROWS]     (defaults 1000000 10000000)
#
# 1. Lookups: KEYS entities x (3 float, 1 bigint, 1 timestamp) features.
#    featuredb serves an ONLINE feature view from its online store;
#    PostgreSQL a table with a primary key. pgbench -M prepared -c 8 -j 2
#    -T $SECONDS (after a 5 s warm-up), one key per transaction over TCP
#    (loopback) and over each server's Unix-domain socket, then 100 keys
#    per transaction over TCP.
# 2. Materialization: SOURCE_ROWS rows over KEYS keys. featuredb: REFRESH
#    FEATURE VIEW (full), then a 1% append and an incremental REFRESH.
#    PostgreSQL: REFRESH MATERIALIZED VIEW of the latest row per key
#    (DISTINCT ON), then the same 1% applied as an upsert of the newest row
#    per key (its closest incremental equivalent). Then the same for a
#    0.01% append (the fixed cost of an incremental pass).
#
# BENCH_RECORD=1 appends the results to bench/RESULTS.md; BENCH_NO_BUILD=1
# skips the release build; SECONDS_PER_RUN sets pgbench -T (default 30).
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

KEYS=${1:-1000000}
SOURCE_ROWS=${2:-10000000}
T=${SECONDS_PER_RUN:-30}
bench_prelude

online_data "$KEYS" "$SOURCE_ROWS"

COLUMNS="user_id BIGINT, ts TIMESTAMP, f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 DOUBLE PRECISION, n BIGINT"
lookup_scripts "$KEYS"

trap 'stop_postgres; stop_featuredb' EXIT

timed() {  # PORT SQL → seconds
  local start end
  start=$(now)
  psql -p "$1" -v ON_ERROR_STOP=1 -qc "$2" >/dev/null
  end=$(now)
  echo "$end - $start" | bc -l
}

# ---------------------------------------------------------------- lookups
start_postgres "$PG_PORT"
psql -p "$PG_PORT" -qc "CREATE TABLE user_features ($COLUMNS, PRIMARY KEY (user_id))"
psql -p "$PG_PORT" -qc "\\copy user_features FROM '$ENTITIES' WITH (FORMAT csv)"
psql -p "$PG_PORT" -qc "VACUUM ANALYZE user_features"
read -r PG_TPS PG_AVG PG_P99 <<<"$(run_pgbench 127.0.0.1 "$PG_PORT" "$ONE" pg-one)"
read -r PG_UTPS PG_UAVG PG_UP99 <<<"$(run_pgbench "$WORK/pg-$PG_PORT" "$PG_PORT" "$ONE" pg-one-unix)"
read -r PG_BTPS PG_BAVG PG_BP99 <<<"$(run_pgbench 127.0.0.1 "$PG_PORT" "$BATCH" pg-batch)"

# Materialization, PostgreSQL side.
psql -p "$PG_PORT" -qc "CREATE TABLE events ($COLUMNS)"
psql -p "$PG_PORT" -qc "\\copy events FROM '$SOURCE' WITH (FORMAT csv)"
psql -p "$PG_PORT" -qc "CREATE MATERIALIZED VIEW latest AS SELECT DISTINCT ON (user_id) * FROM events ORDER BY user_id, ts DESC WITH NO DATA"
PG_FULL=$(timed "$PG_PORT" "REFRESH MATERIALIZED VIEW latest")
psql -p "$PG_PORT" -qc "CREATE TABLE latest_t AS SELECT * FROM latest; ALTER TABLE latest_t ADD PRIMARY KEY (user_id); CREATE TABLE delta ($COLUMNS)"
psql -p "$PG_PORT" -qc "\\copy delta FROM '$DELTA' WITH (FORMAT csv)"
PG_INCR=$(timed "$PG_PORT" "BEGIN; INSERT INTO events SELECT * FROM delta; INSERT INTO latest_t SELECT DISTINCT ON (user_id) * FROM delta ORDER BY user_id, ts DESC ON CONFLICT (user_id) DO UPDATE SET ts = excluded.ts, f1 = excluded.f1, f2 = excluded.f2, f3 = excluded.f3, n = excluded.n WHERE excluded.ts >= latest_t.ts; COMMIT")
psql -p "$PG_PORT" -qc "CREATE TABLE small_delta ($COLUMNS)"
psql -p "$PG_PORT" -qc "\\copy small_delta FROM '$SMALL_DELTA' WITH (FORMAT csv)"
PG_SMALL=$(timed "$PG_PORT" "BEGIN; INSERT INTO events SELECT * FROM small_delta; INSERT INTO latest_t SELECT DISTINCT ON (user_id) * FROM small_delta ORDER BY user_id, ts DESC ON CONFLICT (user_id) DO UPDATE SET ts = excluded.ts, f1 = excluded.f1, f2 = excluded.f2, f3 = excluded.f3, n = excluded.n WHERE excluded.ts >= latest_t.ts; COMMIT")
stop_postgres

# ---------------------------------------------------------------- featuredb
FEATUREDB_TARGET_PARTITIONS=2 start_featuredb "$FDB_PORT"
psql -p "$FDB_PORT" -qc "CREATE TABLE entities ($COLUMNS)"
psql -p "$FDB_PORT" -qc "\\copy entities FROM '$ENTITIES' WITH (FORMAT csv)"
psql -p "$FDB_PORT" -qc "CREATE FEATURE VIEW user_features KEY (user_id) TIMESTAMP ts ONLINE AS SELECT * FROM entities"
psql -p "$FDB_PORT" -qc "REFRESH FEATURE VIEW user_features"
# Parity spot check before timing anything.
A=$(psql -p "$FDB_PORT" -tAc "SELECT f1, n FROM user_features WHERE user_id = 4242")
B=$(awk -F, '$1 == 4242 {v = $3; sub(/0+$/, "", v); sub(/\.$/, "", v); printf "%s|%d", v, $6}' "$ENTITIES")
[ "$A" = "$B" ] || { echo "lookup mismatch: '$A' vs '$B'" >&2; exit 1; }
read -r FDB_TPS FDB_AVG FDB_P99 <<<"$(run_pgbench 127.0.0.1 "$FDB_PORT" "$ONE" fdb-one)"
read -r FDB_UTPS FDB_UAVG FDB_UP99 <<<"$(run_pgbench "$WORK/fdb-$FDB_PORT" "$FDB_PORT" "$ONE" fdb-one-unix)"
read -r FDB_BTPS FDB_BAVG FDB_BP99 <<<"$(run_pgbench 127.0.0.1 "$FDB_PORT" "$BATCH" fdb-batch)"

psql -p "$FDB_PORT" -qc "CREATE TABLE events ($COLUMNS)"
psql -p "$FDB_PORT" -qc "\\copy events FROM '$SOURCE' WITH (FORMAT csv)"
psql -p "$FDB_PORT" -qc "CREATE FEATURE VIEW latest KEY (user_id) TIMESTAMP ts ONLINE AS SELECT * FROM events"
FDB_FULL=$(timed "$FDB_PORT" "REFRESH FEATURE VIEW latest")
psql -p "$FDB_PORT" -qc "\\copy events FROM '$DELTA' WITH (FORMAT csv)"
# A full refresh warms the cache with the new generation in the background
# (about a second for 1M rows); let it finish so that the incremental
# refresh is timed alone, as PostgreSQL's upsert is.
sleep 5
FDB_INCR=$(timed "$FDB_PORT" "REFRESH FEATURE VIEW latest")
psql -p "$FDB_PORT" -qc "\\copy events FROM '$SMALL_DELTA' WITH (FORMAT csv)"
FDB_SMALL=$(timed "$FDB_PORT" "REFRESH FEATURE VIEW latest")
JOBS=$(psql -p "$FDB_PORT" -tAc "SELECT kind || ' ' || rows_in || ' in, ' || online_keys || ' keys, ' || round(duration_ms) || ' ms' FROM featuredb.jobs WHERE view_name = 'public.latest' ORDER BY job_id" | paste -sd ';')
stop_featuredb

ratio() { echo "scale=2; $1 / $2" | bc; }
FULL_RATE=$(echo "$SOURCE_ROWS / $FDB_FULL" | bc)
echo "lookups, 1 key:    postgresql ${PG_TPS} tps (avg ${PG_AVG} ms, p99 ${PG_P99} ms)  featuredb ${FDB_TPS} tps (avg ${FDB_AVG} ms, p99 ${FDB_P99} ms)  ratio $(ratio "$FDB_TPS" "$PG_TPS")x"
echo "lookups, 1 key, Unix socket: postgresql ${PG_UTPS} tps (avg ${PG_UAVG} ms, p99 ${PG_UP99} ms)  featuredb ${FDB_UTPS} tps (avg ${FDB_UAVG} ms, p99 ${FDB_UP99} ms)  ratio $(ratio "$FDB_UTPS" "$PG_UTPS")x"
echo "lookups, 100 keys: postgresql ${PG_BTPS} tps (avg ${PG_BAVG} ms, p99 ${PG_BP99} ms)  featuredb ${FDB_BTPS} tps (avg ${FDB_BAVG} ms, p99 ${FDB_BP99} ms)  ratio $(ratio "$FDB_BTPS" "$PG_BTPS")x"
printf 'full refresh of %d rows:  postgresql %.2f s  featuredb %.2f s (%d rows/s)\n' "$SOURCE_ROWS" "$PG_FULL" "$FDB_FULL" "$FULL_RATE"
printf '1%% incremental:           postgresql %.3f s  featuredb %.3f s\n' "$PG_INCR" "$FDB_INCR"
printf '0.01%% incremental:        postgresql %.3f s  featuredb %.3f s\n' "$PG_SMALL" "$FDB_SMALL"
echo "featuredb jobs: $JOBS"

if [ -n "${BENCH_RECORD:-}" ]; then
  {
    echo
    echo "### Online lookups and materialization, $KEYS keys, $SOURCE_ROWS source rows — $(date -u +%Y-%m-%d) ($(nproc) cores)"
    echo
    echo "Command: \`bench/online/run.sh $KEYS $SOURCE_ROWS\` at commit $(cd "$BENCH_ROOT" && git rev-parse --short HEAD) (pgbench -M prepared -c 8 -j 2 -T $T on loopback TCP unless noted; both servers default settings, fsync on; featuredb with 2 partitions)"
    echo
    echo "| workload | PostgreSQL 15 | featuredb | ratio |"
    echo "|---|---:|---:|---:|"
    echo "| 1-key lookup, TPS | $PG_TPS | $FDB_TPS | $(ratio "$FDB_TPS" "$PG_TPS")× |"
    echo "| 1-key lookup, avg / p99 ms | $PG_AVG / $PG_P99 | $FDB_AVG / $FDB_P99 | |"
    echo "| 1-key lookup over Unix sockets, TPS | $PG_UTPS | $FDB_UTPS | $(ratio "$FDB_UTPS" "$PG_UTPS")× |"
    echo "| 1-key lookup over Unix sockets, avg / p99 ms | $PG_UAVG / $PG_UP99 | $FDB_UAVG / $FDB_UP99 | |"
    echo "| 100-key lookup, TPS | $PG_BTPS | $FDB_BTPS | $(ratio "$FDB_BTPS" "$PG_BTPS")× |"
    echo "| 100-key lookup, avg / p99 ms | $PG_BAVG / $PG_BP99 | $FDB_BAVG / $FDB_BP99 | |"
    printf '| full refresh, s (PG: REFRESH MATERIALIZED VIEW, DISTINCT ON) | %.2f | %.2f | %s× time |\n' "$PG_FULL" "$FDB_FULL" "$(ratio "$FDB_FULL" "$PG_FULL")"
    printf '| 1%% incremental, s (PG: upsert of the newest row per key) | %.3f | %.3f | %s× time |\n' "$PG_INCR" "$FDB_INCR" "$(ratio "$FDB_INCR" "$PG_INCR")"
    printf '| 0.01%% incremental, s (same) | %.3f | %.3f | %s× time |\n' "$PG_SMALL" "$FDB_SMALL" "$(ratio "$FDB_SMALL" "$PG_SMALL")"
    echo
    echo "featuredb full refresh: $FULL_RATE source rows/s (goal ≥ 5M). Jobs: $JOBS."
  } >> "$BENCH_ROOT/bench/RESULTS.md"
fi

#!/usr/bin/env bash
# Streaming features: featuredb's STREAMING windowed view against what a
# PostgreSQL 15 user would build — the same table with an index on
# (card_id, ts), a latest-row table kept by a trigger, and the windows
# computed by a query per lookup — in one run, on the same machine.
#
#   bench/streaming/run.sh [KEYS] [ROWS]     (default 100000 keys, 1000000 rows)
#
# Measures (T seconds each, default 20):
#   1. single-row prepared INSERTs, one client: latency avg and p99;
#   2. batched ingest, INSERT … SELECT of 1,000 rows, 2 clients: rows/s;
#   3. windowed lookups (4 clients) while 1,000-row batches arrive at a
#      fixed rate (20 batches/s): lookup p99;
#   4. freshness: a write then a lookup on another connection until it
#      shows the write: write-ack → visible p50/p99 (one lookup included);
#   and featuredb's memory for the windows (bytes per key).
# Appends the results to bench/RESULTS.md.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

KEYS=${1:-100000}
ROWS=${2:-1000000}
T=${T:-20}
bench_prelude
bench_venv "$BENCH_ROOT/bench/streaming/requirements.txt"
trap 'stop_postgres; stop_featuredb' EXIT

# Rows spread over the last 7 days (relative to now: the windows see them).
DATA="$WORK/streaming-$ROWS-$KEYS.csv"
awk -v n="$ROWS" -v keys="$KEYS" -v now="$(date -u +%s)" 'BEGIN {
  srand(11);
  for (i = 0; i < n; i++) {
    t = now - int(rand() * 7 * 86400);
    printf "%d,%s+00,%.2f,%d\n", int(rand() * keys) + 1, strftime("%Y-%m-%d %H:%M:%S", t, 1), rand() * 100, i
  }
}' > "$DATA"

WINDOWS="WINDOW w10m AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '10 minutes' PRECEDING AND CURRENT ROW),
         w1h AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1 hour' PRECEDING AND CURRENT ROW),
         w7d AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '7 days' PRECEDING AND CURRENT ROW)"
TABLE="CREATE TABLE transactions (card_id BIGINT, ts TIMESTAMPTZ, amount DOUBLE PRECISION, seq BIGINT)"

FDB_SETUP="$TABLE;
\\copy transactions FROM '$DATA' WITH (FORMAT csv)
CREATE FEATURE VIEW card_activity KEY (card_id) TIMESTAMP ts ONLINE STREAMING AS
SELECT card_id, ts, seq,
       count(*) OVER w10m AS tx_10m, sum(amount) OVER w1h AS amount_1h,
       avg(amount) OVER w7d AS avg_amount_7d, max(amount) OVER w7d AS max_amount_7d
FROM transactions $WINDOWS;"
FDB_LOOKUP="SELECT seq, tx_10m, amount_1h, avg_amount_7d, max_amount_7d FROM card_activity WHERE card_id = "

PG_SETUP="$TABLE;
\\copy transactions FROM '$DATA' WITH (FORMAT csv)
CREATE INDEX ON transactions (card_id, ts);
CREATE TABLE latest (card_id BIGINT PRIMARY KEY, ts TIMESTAMPTZ, seq BIGINT);
INSERT INTO latest SELECT DISTINCT ON (card_id) card_id, ts, seq FROM transactions ORDER BY card_id, ts DESC;
CREATE FUNCTION keep_latest() RETURNS trigger LANGUAGE plpgsql AS \$\$
BEGIN
  INSERT INTO latest VALUES (NEW.card_id, NEW.ts, NEW.seq)
  ON CONFLICT (card_id) DO UPDATE SET ts = EXCLUDED.ts, seq = EXCLUDED.seq WHERE latest.ts <= EXCLUDED.ts;
  RETURN NULL;
END \$\$;
CREATE TRIGGER keep_latest AFTER INSERT ON transactions FOR EACH ROW EXECUTE FUNCTION keep_latest();
VACUUM ANALYZE;"
PG_LOOKUP="SELECT l.seq, w.tx_10m, w.amount_1h, w.avg_amount_7d, w.max_amount_7d FROM latest l,
 LATERAL (SELECT count(*) FILTER (WHERE ts >= now() - INTERVAL '10 minutes') AS tx_10m,
                 sum(amount) FILTER (WHERE ts >= now() - INTERVAL '1 hour') AS amount_1h,
                 avg(amount) AS avg_amount_7d, max(amount) AS max_amount_7d
          FROM transactions t WHERE t.card_id = l.card_id
           AND t.ts >= now() - INTERVAL '7 days' AND t.ts <= now()) w
 WHERE l.card_id = "

INSERT1="$WORK/streaming-insert1.sql"
printf '\\set k random(1, %d)\n\\set a random(1, 10000)\nINSERT INTO transactions VALUES (:k, now(), :a / 100.0, 0);\n' "$KEYS" > "$INSERT1"
BATCH="$WORK/streaming-batch.sql"
printf 'INSERT INTO transactions SELECT CAST(floor(random() * %d) AS BIGINT) + 1, now(), random() * 100, 0 FROM generate_series(1, 1000);\n' "$KEYS" > "$BATCH"

# stats PORT SCRIPT CLIENTS: "tps avg_ms p99_ms" (pgbench_stats in lib.sh).
stats() {
  pgbench_stats 127.0.0.1 "$1" "$2" "streaming-$1-$(basename "$2" .sql)" -c "$3" -j "$3"
}

# measure SYSTEM PORT LOOKUP_SQL: every figure for one server.
measure() {
  local system=$1 port=$2 lookup=$3 lookup_script="$WORK/streaming-lookup-$1.sql"
  printf '\\set k random(1, %d)\n%s:k;\n' "$KEYS" "$lookup" > "$lookup_script"
  # Warm-up: caches, connections.
  "$PGBENCH" -n -M prepared -c 4 -j 4 -T 3 -h 127.0.0.1 -p "$port" -f "$lookup_script" >/dev/null 2>&1
  read -r _ INS_AVG INS_P99 <<<"$(stats "$port" "$INSERT1" 1)"
  read -r BATCH_TPS _ _ <<<"$(stats "$port" "$BATCH" 2)"
  # Lookups while batches arrive at a fixed rate.
  "$PGBENCH" -n -M prepared -c 1 -j 1 -T "$T" -R 20 -h 127.0.0.1 -p "$port" -f "$BATCH" >"$WORK/streaming-ingest-$system.out" 2>&1 &
  local ingest=$!
  read -r LOOKUP_TPS _ LOOKUP_P99 <<<"$(stats "$port" "$lookup_script" 4)"
  wait "$ingest"
  read -r FRESH_P50 FRESH_P99 FRESH_MAX FRESH_POLLS <<<"$("$PY" "$BENCH_ROOT/bench/streaming/freshness.py" "$port" "$lookup%s" 2000 200 "$KEYS")"
  printf '%s: insert avg %s ms p99 %s ms; batched %.0f rows/s; lookups %s/s p99 %s ms during ingest; freshness p50 %s p99 %s max %s ms (%s lookups a write)\n' \
    "$system" "$INS_AVG" "$INS_P99" "$(echo "$BATCH_TPS * 1000" | bc -l)" "$LOOKUP_TPS" "$LOOKUP_P99" "$FRESH_P50" "$FRESH_P99" "$FRESH_MAX" "$FRESH_POLLS"
  eval "${system}_INS_AVG=$INS_AVG ${system}_INS_P99=$INS_P99 ${system}_BATCH_ROWS=$(echo "$BATCH_TPS * 1000" | bc -l)"
  eval "${system}_LOOKUP_TPS=$LOOKUP_TPS ${system}_LOOKUP_P99=$LOOKUP_P99 ${system}_FRESH_P50=$FRESH_P50 ${system}_FRESH_P99=$FRESH_P99"
}

start_postgres "$PG_PORT"
psql -h 127.0.0.1 -p "$PG_PORT" -U bench -d featuredb -q <<<"$PG_SETUP" >/dev/null
measure PG "$PG_PORT" "$PG_LOOKUP"
stop_postgres

start_featuredb "$FDB_PORT"
psql -h 127.0.0.1 -p "$FDB_PORT" -U bench -d featuredb -q <<<"$FDB_SETUP" >/dev/null
measure FDB "$FDB_PORT" "$FDB_LOOKUP"
read -r WKEYS WROWS WBYTES <<<"$(psql -h 127.0.0.1 -p "$FDB_PORT" -U bench -d featuredb -tAF' ' -c "SELECT window_keys, window_rows, window_bytes FROM featuredb.streams")"
STORES=$(psql -h 127.0.0.1 -p "$FDB_PORT" -U bench -d featuredb -tAc "SELECT count(*) FROM featuredb.jobs")
stop_featuredb
BYTES_PER_KEY=$(echo "$WBYTES / $WKEYS" | bc)
echo "featuredb windows: $WKEYS keys, $WROWS rows, $WBYTES bytes ($BYTES_PER_KEY bytes a key); $STORES refresh jobs"

ratio() { echo "scale=2; $1 / $2" | bc -l; }
{
  echo
  echo "### Streaming windowed features, $KEYS keys, $ROWS rows over 7 days — $(date -u +%Y-%m-%d) ($(nproc) cores)"
  echo
  echo "Command: \`bench/streaming/run.sh $KEYS $ROWS\` (T=$T s per figure; pgbench -M prepared; PostgreSQL: index on (card_id, ts), latest-row table kept by a trigger, windows by a query per lookup)"
  echo
  echo "| figure | PostgreSQL 15 | featuredb | ratio |"
  echo "|---|---:|---:|---:|"
  printf '| single-row INSERT latency avg / p99 (ms) | %s / %s | %s / %s | %s |\n' "$PG_INS_AVG" "$PG_INS_P99" "$FDB_INS_AVG" "$FDB_INS_P99" "$(ratio "$FDB_INS_AVG" "$PG_INS_AVG")"
  printf '| batched ingest, 1,000-row INSERTs, 2 clients (rows/s) | %.0f | %.0f | %s |\n' "$PG_BATCH_ROWS" "$FDB_BATCH_ROWS" "$(ratio "$FDB_BATCH_ROWS" "$PG_BATCH_ROWS")"
  printf '| windowed lookups during ingest (lookups/s, 4 clients) | %.0f | %.0f | %s |\n' "$PG_LOOKUP_TPS" "$FDB_LOOKUP_TPS" "$(ratio "$FDB_LOOKUP_TPS" "$PG_LOOKUP_TPS")"
  printf '| windowed lookup p99 during ingest (ms) | %s | %s | %s |\n' "$PG_LOOKUP_P99" "$FDB_LOOKUP_P99" "$(ratio "$FDB_LOOKUP_P99" "$PG_LOOKUP_P99")"
  printf '| freshness, write-ack → visible p50 / p99 (ms, one lookup included) | %s / %s | %s / %s | |\n' "$PG_FRESH_P50" "$PG_FRESH_P99" "$FDB_FRESH_P50" "$FDB_FRESH_P99"
  echo
  echo "featuredb kept $WROWS rows of $WKEYS keys in memory for the windows: $BYTES_PER_KEY bytes a key. $STORES refresh jobs stored the streams (one per flush)."
} >> "$BENCH_ROOT/bench/RESULTS.md"

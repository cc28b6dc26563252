#!/usr/bin/env bash
# Two featuredb builds side by side in one run: the benchmarks of bench/
# (COPY, full and incremental refresh, online lookups, the AS OF join), each
# build in turn, ROUNDS times, on the same data. For a change that must not
# move performance (a restructuring), or to measure one that should.
#
#   bench/compare.sh BEFORE_BIN AFTER_BIN [ROUNDS]     (default 2 rounds)
#
# Per round and build, on a fresh data directory:
#   - COPY of 10M rows (the online benchmark's source, psql \copy, CSV);
#   - REFRESH of a view of them over 1M keys (full), then after a 1% and a
#     0.01% append (incremental): wall time through psql and the job's own
#     duration (featuredb.jobs);
#   - lookups of the 1M-key view with pgbench -M prepared -c 8 -j 2 -T $T
#     after a 5 s warm-up: one key over TCP and over the Unix socket, 100
#     keys over TCP;
#   - the large AS OF join of bench/asof (1M spine rows × 10M), best of 3
#     after a warm-up.
# Then, per measurement, the values of each build and the ratio of the
# medians (after / before). The peers (PostgreSQL, DuckDB) are not run:
# bench/online/run.sh and bench/asof/run.sh compare with them.
#
# SECONDS_PER_RUN sets pgbench -T (default 20). BENCH_RECORD=1 appends the
# table to bench/RESULTS.md.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

BEFORE=$1
AFTER=$2
ROUNDS=${3:-2}
T=${SECONDS_PER_RUN:-20}
KEYS=1000000
ROWS=10000000
ensure_postgres
PGBENCH="$(pg_bin)/pgbench"
FDB_PORT=${FDB_PORT:-55463}
export PGHOST=127.0.0.1 PGUSER=bench PGDATABASE=featuredb
export FEATUREDB_TARGET_PARTITIONS=2

online_data "$KEYS" "$ROWS"
bench_venv
ASOF="$WORK/asof/n1000000-m10000000-k100000"
[ -s "$ASOF/features.csv" ] || "$PY" "$BENCH_ROOT/bench/asof/gen.py" 1000000 10000000 100000 "$ASOF"

COLUMNS="user_id BIGINT, ts TIMESTAMP, f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 DOUBLE PRECISION, n BIGINT"
lookup_scripts "$KEYS"
ASOF_QUERY="SELECT count(*), sum(f1), sum(f3) FROM spine s ASOF LEFT JOIN features f ON s.user_id = f.user_id AND s.ts >= f.ts"

trap stop_featuredb EXIT
fpsql() { psql -X -p "$FDB_PORT" -v ON_ERROR_STOP=1 "$@"; }
timed() {  # SQL → seconds through psql
  local start end
  start=$(now); fpsql -qc "$1" >/dev/null; end=$(now)
  echo "$end - $start" | bc -l
}
last_job_ms() { fpsql -tAc "SELECT round(duration_ms) FROM featuredb.jobs ORDER BY job_id DESC LIMIT 1"; }

declare -A VALUES  # "measure|build" → space-separated values
record() { VALUES["$1|$2"]+="$3 "; }

measure() {  # BUILD_LABEL BINARY
  local label=$1 out
  FDB_BIN=$2 start_featuredb "$FDB_PORT"
  fpsql -qc "CREATE TABLE entities ($COLUMNS)" -c "CREATE TABLE events ($COLUMNS)"
  fpsql -qc "\\copy entities FROM '$ENTITIES' WITH (FORMAT csv)"
  fpsql -qc "CREATE FEATURE VIEW user_features KEY (user_id) TIMESTAMP ts ONLINE AS SELECT * FROM entities"
  fpsql -qc "REFRESH FEATURE VIEW user_features"
  record "COPY 10M rows, s" "$label" "$(timed "\\copy events FROM '$SOURCE' WITH (FORMAT csv)")"
  fpsql -qc "CREATE FEATURE VIEW latest KEY (user_id) TIMESTAMP ts ONLINE AS SELECT * FROM events"
  record "full refresh 10M rows, s" "$label" "$(timed "REFRESH FEATURE VIEW latest")"
  record "full refresh job, ms" "$label" "$(last_job_ms)"
  fpsql -qc "\\copy events FROM '$DELTA' WITH (FORMAT csv)"
  sleep 5  # the full refresh's cache warm-up runs in the background
  record "1% incremental, s" "$label" "$(timed "REFRESH FEATURE VIEW latest")"
  record "1% incremental job, ms" "$label" "$(last_job_ms)"
  fpsql -qc "\\copy events FROM '$SMALL_DELTA' WITH (FORMAT csv)"
  record "0.01% incremental, s" "$label" "$(timed "REFRESH FEATURE VIEW latest")"
  record "0.01% incremental job, ms" "$label" "$(last_job_ms)"
  read -r tps _ p99 <<<"$(run_pgbench 127.0.0.1 "$FDB_PORT" "$ONE" "cmp-$label-one")"
  record "1-key lookups TCP, tps" "$label" "$tps"
  record "1-key lookups TCP, p99 ms" "$label" "$p99"
  read -r tps _ _ <<<"$(run_pgbench "$WORK/fdb-$FDB_PORT" "$FDB_PORT" "$ONE" "cmp-$label-unix")"
  record "1-key lookups Unix socket, tps" "$label" "$tps"
  read -r tps _ _ <<<"$(run_pgbench 127.0.0.1 "$FDB_PORT" "$BATCH" "cmp-$label-batch")"
  record "100-key lookups TCP, tps" "$label" "$tps"
  fpsql -qc "CREATE TABLE spine (user_id BIGINT, ts TIMESTAMP, label BIGINT)" \
    -c "CREATE TABLE features (user_id BIGINT, ts TIMESTAMP, f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 BIGINT)"
  fpsql -qc "\\copy spine FROM '$ASOF/spine.csv' WITH (FORMAT csv)"
  fpsql -qc "\\copy features FROM '$ASOF/features.csv' WITH (FORMAT csv)"
  local script="\\timing on"
  for _ in 0 1 2 3; do script+=$'\n'"$ASOF_QUERY;"; done
  out=$(fpsql -qtA <<<"$script")
  record "AS OF 1M x 10M, best s" "$label" \
    "$(awk '/^Time: / && seen++ { print $2 / 1000 }' <<<"$out" | sort -g | head -1)"
  stop_featuredb
}

for round in $(seq 1 "$ROUNDS"); do
  echo "round $round: before ($BEFORE)" >&2
  measure before "$BEFORE"
  echo "round $round: after ($AFTER)" >&2
  measure after "$AFTER"
done

# Values as read: integers from 1000 up, three significant digits below.
show() { tr ' ' '\n' | grep -v '^$' | awk '{ if ($1 >= 1000) printf "%d ", $1 + 0.5; else printf "%.3g ", $1 }'; }
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
TABLE=$(
  echo "| measurement | before | after | after / before (medians) |"
  echo "|---|---|---|---:|"
  for m in "COPY 10M rows, s" "full refresh 10M rows, s" "full refresh job, ms" "1% incremental, s" \
           "1% incremental job, ms" "0.01% incremental, s" "0.01% incremental job, ms" \
           "1-key lookups TCP, tps" "1-key lookups TCP, p99 ms" "1-key lookups Unix socket, tps" \
           "100-key lookups TCP, tps" "AS OF 1M x 10M, best s"; do
    b=${VALUES["$m|before"]}; a=${VALUES["$m|after"]}
    ratio=$(echo "scale=3; $(median <<<"$a") / $(median <<<"$b")" | bc)
    printf '| %s | %s| %s| %s |\n' "$m" "$(show <<<"$b")" "$(show <<<"$a")" "$ratio"
  done
)
echo "$TABLE"
if [ -n "${BENCH_RECORD:-}" ]; then
  {
    echo
    echo "### Before / after, $ROUNDS rounds — $(date -u +%Y-%m-%d) ($(nproc) cores)"
    echo
    echo "Command: \`bench/compare.sh BEFORE AFTER $ROUNDS\` (each build in turn per round, fresh data directory; pgbench -M prepared -c 8 -j 2 -T $T; 2 partitions)"
    echo
    echo "$TABLE"
  } >> "$BENCH_ROOT/bench/RESULTS.md"
fi

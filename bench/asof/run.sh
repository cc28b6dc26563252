#!/usr/bin/env bash
# ASOF LEFT JOIN (point-in-time feature lookup): featuredb vs DuckDB, same
# data, same run, 2 threads each.
#
#   bench/asof/run.sh [small|large|all]      (default all)
#
#   small: spine 100000 rows, features 1000000 rows, 10000 keys
#   large: spine 1000000 rows, features 10000000 rows, 100000 keys
#
# Times, best of 3 after 1 warm-up:
#   SELECT count(*), sum(f1), sum(f3) FROM spine s
#   ASOF LEFT JOIN features f ON s.user_id = f.user_id AND s.ts >= f.ts
# featuredb over the wire (psql \timing: client-side, query sent to result
# received), DuckDB in-process (Python, perf_counter around execute+fetchall).
# Loading is timed separately (featuredb: psql \copy) and is not in the
# query time. The results must agree (count and sum(f3) exactly, sum(f1) to
# a relative 1e-9), else the script stops with exit status 1.
#
# If featuredb fails (e.g. it does not support the query), its error is
# printed, DuckDB still runs, and the script exits with status 2 at the end.
#
# Environment:
#   BENCH_RECORD=1      append the result to bench/RESULTS.md (only complete,
#                       agreeing results are recorded)
#   BENCH_NO_BUILD=1    skip `cargo build --release` and use the existing
#                       target/release/featuredb
#   FDB_PORT            featuredb's port (default 55453)
#
# Data (CSV, fixed seed) is generated once under target/bench/asof/ and
# reused; Python packages come from bench/asof/requirements.txt, installed
# into target/bench-venv.
set -euo pipefail
source "$(dirname "$0")/../lib.sh"

HERE="$BENCH_ROOT/bench/asof"
THREADS=2
RUNS=3
FDB_PORT=${FDB_PORT:-55453}
QUERY="SELECT count(*), sum(f1), sum(f3) FROM spine s ASOF LEFT JOIN features f ON s.user_id = f.user_id AND s.ts >= f.ts"

case "${1:-all}" in
  small|large) CASES=("$1") ;;
  all) CASES=(small large) ;;
  *) echo "usage: $0 [small|large|all]" >&2; exit 64 ;;
esac

bench_venv

if [ "${BENCH_NO_BUILD:-}" != 1 ]; then
  (cd "$BENCH_ROOT" && cargo build --release --quiet)
fi
[ -x "$FDB_BIN" ] || { echo "no $FDB_BIN" >&2; exit 1; }

# featuredb's query parallelism (DataFusion target_partitions); it defaults
# to the number of CPUs, set explicitly so both systems use $THREADS.
export FEATUREDB_TARGET_PARTITIONS=$THREADS
trap stop_featuredb EXIT
mkdir -p "$WORK/asof"
ERR="$WORK/asof/featuredb-stderr.txt"

fpsql() {  # psql against the featuredb under test; errors to stderr, exit != 0
  psql -X -h 127.0.0.1 -p "$FDB_PORT" -U bench -d featuredb -v ON_ERROR_STOP=1 "$@"
}

fdb_stop() { stop_featuredb; FDB_PID=""; }  # so the EXIT trap kills no reused pid

fdb_fail() {  # WHAT: records featuredb's error (from $ERR) and stops it
  FDB_ERROR="$1: $(cat "$ERR")"
  fdb_stop
  return 1
}

# run_featuredb DIR N M_ROWS: loads and queries a fresh featuredb. Sets
# FDB_LOAD_SPINE and FDB_LOAD_FEATURES (seconds), FDB_RUNS (seconds, comma
# separated), FDB_BEST and FDB_RESULT ("count|sum_f1|sum_f3"); or sets
# FDB_ERROR and returns 1.
run_featuredb() {
  local dir=$1 n=$2 m=$3 start end out count
  FDB_ERROR="" FDB_LOAD_SPINE="" FDB_LOAD_FEATURES=""
  start_featuredb "$FDB_PORT"
  fpsql -qc "CREATE TABLE spine (user_id BIGINT, ts TIMESTAMP, label BIGINT)" \
    -c "CREATE TABLE features (user_id BIGINT, ts TIMESTAMP, f1 DOUBLE PRECISION, f2 DOUBLE PRECISION, f3 BIGINT)" \
    >/dev/null 2>"$ERR" || { fdb_fail "CREATE TABLE"; return 1; }

  start=$(now)
  fpsql -qc "\\copy spine FROM '$dir/spine.csv' WITH (FORMAT csv)" >/dev/null 2>"$ERR" \
    || { fdb_fail "\\copy spine"; return 1; }
  end=$(now)
  FDB_LOAD_SPINE=$(echo "$end - $start" | bc -l)
  start=$(now)
  fpsql -qc "\\copy features FROM '$dir/features.csv' WITH (FORMAT csv)" >/dev/null 2>"$ERR" \
    || { fdb_fail "\\copy features"; return 1; }
  end=$(now)
  FDB_LOAD_FEATURES=$(echo "$end - $start" | bc -l)

  count=$(fpsql -tAc "SELECT count(*) FROM spine" 2>"$ERR") || { fdb_fail "count(*)"; return 1; }
  [ "$count" = "$n" ] || { echo "spine: expected $n rows, found $count" >"$ERR"; fdb_fail "after \\copy"; return 1; }
  count=$(fpsql -tAc "SELECT count(*) FROM features" 2>"$ERR") || { fdb_fail "count(*)"; return 1; }
  [ "$count" = "$m" ] || { echo "features: expected $m rows, found $count" >"$ERR"; fdb_fail "after \\copy"; return 1; }

  # One psql session, the query 1 + $RUNS times; \timing prints
  # "Time: X ms" after each result.
  local script="\\timing on"
  for _ in $(seq 0 "$RUNS"); do script+=$'\n'"$QUERY;"; done
  out=$(fpsql -qtA -F'|' <<<"$script" 2>"$ERR") || { fdb_fail "query"; return 1; }
  fdb_stop
  FDB_RESULT=$(awk '!/^Time: / && NF { r = $0 } END { print r }' <<<"$out")
  # Every run but the first (the warm-up), in seconds.
  FDB_RUNS=$(awk '/^Time: / && seen++ { printf "%s%.4f", (n++ ? "," : ""), $2 / 1000 }' <<<"$out")
  FDB_BEST=$(tr ',' '\n' <<<"$FDB_RUNS" | sort -g | head -1)
  if [ -z "$FDB_RESULT" ] || [ -z "$FDB_BEST" ]; then
    echo "$out" >"$ERR"; fdb_fail "could not parse psql output"; return 1
  fi
}

STATUS=0
for CASE in "${CASES[@]}"; do
  case "$CASE" in
    small) N=100000;  M=1000000;  K=10000 ;;
    large) N=1000000; M=10000000; K=100000 ;;
  esac
  DIR="$WORK/asof/n$N-m$M-k$K"
  if [ ! -s "$DIR/spine.csv" ] || [ ! -s "$DIR/features.csv" ]; then
    echo "generating $CASE data (fixed seed) in $DIR ..." >&2
    "$PY" "$HERE/gen.py" "$N" "$M" "$K" "$DIR"
  fi
  # gen.py drops duplicate (user_id, ts) feature rows: count what is there.
  M_ROWS=$(wc -l < "$DIR/features.csv")

  echo "== $CASE: spine $N rows, features $M_ROWS rows, $K keys ==" >&2
  FDB_OK=1
  run_featuredb "$DIR" "$N" "$M_ROWS" || FDB_OK=0

  DUCK=$("$PY" "$HERE/duck.py" "$DIR" "$THREADS" "$RUNS")
  read -r DUCK_VERSION DUCK_LOAD DUCK_BEST DUCK_RUNS DUCK_RESULT < <("$PY" -c '
import json, sys
d = json.loads(sys.argv[1])
print(d["version"], "%.2f" % d["load_seconds"], "%.4f" % d["best"],
      ",".join("%.4f" % t for t in d["runs"]), "%s|%r|%s" % (d["count"], d["sum_f1"], d["sum_f3"]))
' "$DUCK")

  echo "reported: best of $RUNS runs after 1 warm-up, $THREADS threads each; load not included" >&2
  printf 'duckdb %s:  best %.3f s  (runs %s; in-process; load %s s)  result %s\n' \
    "$DUCK_VERSION" "$DUCK_BEST" "$DUCK_RUNS" "$DUCK_LOAD" "$DUCK_RESULT"
  if [ "$FDB_OK" = 0 ]; then
    echo "featuredb:     FAILED — $FDB_ERROR" >&2
    if [ -n "${FDB_LOAD_FEATURES:-}" ]; then
      printf 'featuredb load (psql \\copy): spine %.2f s, features %.2f s\n' "$FDB_LOAD_SPINE" "$FDB_LOAD_FEATURES" >&2
    fi
    echo "(featuredb not compared and not recorded for $CASE)" >&2
    STATUS=2
    continue
  fi
  printf 'featuredb:     best %.3f s  (runs %s; over the wire, psql \\timing; load: spine %.2f s, features %.2f s)  result %s\n' \
    "$FDB_BEST" "$FDB_RUNS" "$FDB_LOAD_SPINE" "$FDB_LOAD_FEATURES" "$FDB_RESULT"

  # count and sum(f3) exactly; sum(f1) is a float sum in an unspecified order.
  if ! "$PY" -c '
import sys
a, b = (r.split("|") for r in sys.argv[1:3])
ok = int(a[0]) == int(b[0]) and int(a[2]) == int(b[2]) \
    and abs(float(a[1]) - float(b[1])) <= 1e-9 * max(abs(float(a[1])), abs(float(b[1])))
sys.exit(0 if ok else 1)
' "$FDB_RESULT" "$DUCK_RESULT"; then
    echo "RESULTS DIFFER ($CASE): featuredb $FDB_RESULT, duckdb $DUCK_RESULT (count|sum_f1|sum_f3)" >&2
    exit 1
  fi
  echo "results agree" >&2

  RATIO=$(echo "scale=2; $FDB_BEST / $DUCK_BEST" | bc)
  BLOCK=$(
    echo "### ASOF LEFT JOIN, $CASE ($N spine rows, $M_ROWS feature rows, $K keys) — $(date -u +%Y-%m-%d) ($(nproc) cores)"
    echo
    echo "Command: \`bench/asof/run.sh $CASE\` (same CSVs; $THREADS threads each; best of $RUNS after 1 warm-up; featuredb over the wire, psql \\timing; DuckDB $DUCK_VERSION in-process from Python; load not included)"
    echo
    echo "| system | seconds |"
    echo "|---|---:|"
    printf '| DuckDB %s | %.3f |\n' "$DUCK_VERSION" "$DUCK_BEST"
    printf '| featuredb | %.3f |\n' "$FDB_BEST"
    echo
    printf 'Ratio featuredb / DuckDB (time, lower is better): **%s×**. featuredb load (psql \\copy): spine %.2f s, features %.2f s.\n' \
      "$RATIO" "$FDB_LOAD_SPINE" "$FDB_LOAD_FEATURES"
  )
  echo
  echo "$BLOCK"
  echo
  if [ "${BENCH_RECORD:-}" = 1 ]; then
    printf '\n%s\n' "$BLOCK" >> "$BENCH_ROOT/bench/RESULTS.md"
    echo "appended to bench/RESULTS.md" >&2
  fi
done
exit "$STATUS"

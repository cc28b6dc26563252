# Helpers shared by the benchmark scripts: a throw-away PostgreSQL 15 and a
# featuredb release server, each on its own port and data directory.
# shellcheck shell=bash

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${BENCH_WORK:-$BENCH_ROOT/target/bench}"
mkdir -p "$WORK"

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/15/bin /usr/lib/postgresql/*/bin; do
    if [ -x "$dir/initdb" ]; then echo "$dir"; return; fi
  done
  return 1
}

# Installs PostgreSQL 15 from Debian's packages if it is missing.
ensure_postgres() {
  if ! pg_bin >/dev/null; then
    echo "installing postgresql-15 ..." >&2
    if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq postgresql-15 >/dev/null;
    else sudo apt-get update -qq && sudo apt-get install -y -qq postgresql-15 >/dev/null; fi
  fi
  command -v psql >/dev/null || { echo "psql not found" >&2; exit 1; }
}

# bench_prelude: PostgreSQL installed, the release build (unless
# BENCH_NO_BUILD=1), the servers' ports (PG_PORT, FDB_PORT), PGBENCH, and
# the client environment both servers are reached with.
bench_prelude() {
  ensure_postgres
  PG_PORT=${PG_PORT:-55442}
  FDB_PORT=${FDB_PORT:-55443}
  PGBENCH="$(pg_bin)/pgbench"
  export PGHOST=127.0.0.1 PGUSER=bench PGDATABASE=featuredb
  [ -n "${BENCH_NO_BUILD:-}" ] || (cd "$BENCH_ROOT" && cargo build --release --quiet)
}

# start_postgres PORT: a fresh cluster under $WORK/pg-PORT (default
# settings, fsync on), with a database named featuredb.
start_postgres() {
  local port=$1 dir="$WORK/pg-$1" bin
  bin=$(pg_bin)
  rm -rf "$dir"; mkdir -p "$dir"
  local run_as=()
  if [ "$(id -u)" = 0 ]; then chown -R postgres "$dir"; run_as=(runuser -u postgres --); fi
  "${run_as[@]}" "$bin/initdb" -D "$dir/data" -A trust -U bench >"$dir/initdb.log" 2>&1
  "${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -o "-p $port -k $dir -c listen_addresses=127.0.0.1" -l "$dir/log" -w start >/dev/null
  psql -h 127.0.0.1 -p "$port" -U bench -d postgres -qc "CREATE DATABASE featuredb" >/dev/null
  PG_STOP_CMD=("${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop)
}

stop_postgres() {
  "${PG_STOP_CMD[@]}" >/dev/null 2>&1 || true
}

# The featuredb binary the scripts start: the release build, or FDB_BIN
# (bench/compare.sh runs two builds side by side this way).
FDB_BIN="${FDB_BIN:-$BENCH_ROOT/target/release/featuredb}"

# start_featuredb PORT: the featuredb binary on a fresh data directory.
# FDB_LOG_LEVEL (default warn) sets its log filter, e.g. featuredb=debug to
# log each refresh's phases into $WORK/fdb-PORT.log.
start_featuredb() {
  local port=$1 dir="$WORK/fdb-$1"
  # A server left on the port by an earlier run would answer instead of
  # this one, its data directory deleted under it.
  if psql -h 127.0.0.1 -p "$port" -U bench -d featuredb -qc "SELECT 1" >/dev/null 2>&1; then
    echo "port $port is taken by another server; stop it first" >&2; exit 1
  fi
  rm -rf "$dir"
  "$FDB_BIN" serve --listen "127.0.0.1:$port" --data-dir "$dir" \
    --log-level "${FDB_LOG_LEVEL:-warn}" >"$WORK/fdb-$port.log" 2>&1 &
  FDB_PID=$!
  for _ in $(seq 1 100); do
    kill -0 "$FDB_PID" 2>/dev/null || break
    psql -h 127.0.0.1 -p "$port" -U bench -d featuredb -qc "SELECT 1" >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "featuredb did not start; see $WORK/fdb-$port.log" >&2; exit 1
}

stop_featuredb() {
  [ -n "${FDB_PID:-}" ] && kill "$FDB_PID" 2>/dev/null && wait "$FDB_PID" 2>/dev/null || true
}

now() { date +%s.%N; }

# gen_rows FILE ROWS KEYS SEED FIRST_T: rows of (user_id, ts, f1, f2, f3, n)
# over KEYS keys (each key once when ROWS = KEYS), times over a year from
# FIRST_T seconds after 2024-01-01, fixed seed; kept once generated.
gen_rows() {
  [ -s "$1" ] && return
  echo "generating $1 ..." >&2
  awk -v n="$2" -v keys="$3" -v seed="$4" -v first="$5" 'BEGIN {
    srand(seed); base = 1704067200 + first;
    for (i = 0; i < n; i++) {
      k = (n == keys) ? i + 1 : int(rand() * keys) + 1;
      t = base + int(rand() * 31536000);
      printf "%d,%s,%.6f,%.6f,%.6f,%d\n", k, strftime("%Y-%m-%d %H:%M:%S", t, 1),
        rand() * 1000, rand() * 2 - 1, rand(), int(rand() * 100000)
    }
  }' > "$1"
}

# online_data KEYS ROWS: the online benchmark's CSVs, generated once:
# ENTITIES (each key once), SOURCE (ROWS rows over the keys), DELTA (a 1%
# append, a year later) and SMALL_DELTA (0.01%, two years later).
online_data() {
  ENTITIES="$WORK/online-entities-$1.csv"
  SOURCE="$WORK/online-source-$2-$1.csv"
  DELTA="$WORK/online-delta-$2-$1.csv"
  SMALL_DELTA="$WORK/online-small-delta-$2-$1.csv"
  gen_rows "$ENTITIES" "$1" "$1" 1 0
  gen_rows "$SOURCE" "$2" "$1" 2 0
  gen_rows "$DELTA" "$(($2 / 100))" "$1" 3 31536000
  gen_rows "$SMALL_DELTA" "$(($2 / 10000))" "$1" 4 63072000
}

# run_pgbench HOST PORT SCRIPT LABEL: prints "tps avg_ms p99_ms" after a 5 s
# warm-up and $T seconds of pgbench -M prepared -c 8 -j 2 (HOST is an
# address, or a directory holding the server's Unix-domain socket).
run_pgbench() {
  # A 5 s warm-up (caches, connections) for both systems, not measured.
  "$PGBENCH" -n -M prepared -c 8 -j 2 -T 5 -h "$1" -p "$2" -f "$3" >/dev/null 2>&1 || true
  pgbench_stats "$1" "$2" "$3" "$4" -c 8 -j 2
}

# pgbench_stats HOST PORT SCRIPT LABEL [PGBENCH OPTIONS...]: prints "tps
# avg_ms p99_ms" of $T seconds of pgbench -M prepared with the options.
pgbench_stats() {
  local host=$1 port=$2 script=$3 label=$4 logdir="$WORK/pgbench-$4"
  shift 4
  rm -rf "$logdir"; mkdir -p "$logdir"
  (cd "$logdir" && "$PGBENCH" -n -M prepared "$@" -T "$T" -h "$host" -p "$port" -f "$script" -l >"$logdir/out" 2>&1) \
    || { cat "$logdir/out" >&2; exit 1; }
  local tps avg p99
  tps=$(awk '/^tps/ {print $3}' "$logdir/out")
  avg=$(awk '/^latency average/ {print $4}' "$logdir/out")
  # Per-transaction logs: the third field is the latency in microseconds.
  p99=$(cat "$logdir"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {printf "%.3f", a[int(NR*0.99)]/1000}')
  echo "$tps $avg $p99"
}

# bench_venv [REQUIREMENTS]: PY, a Python with REQUIREMENTS (default
# bench/asof/requirements.txt) installed into a venv under target/ named
# after its directory (reinstalled when the file changes, as
# tests/interop.rs does).
bench_venv() {
  local requirements="${1:-$BENCH_ROOT/bench/asof/requirements.txt}" venv
  venv="$BENCH_ROOT/target/bench-venv"
  [ -z "${1:-}" ] || venv="$BENCH_ROOT/target/bench-venv-$(basename "$(dirname "$1")")"
  PY="$venv/bin/python"
  if ! cmp -s "$requirements" "$venv/installed-requirements.txt"; then
    echo "installing $requirements into $venv ..." >&2
    [ -x "$PY" ] || python3 -m venv "$venv"
    "$PY" -m pip install --quiet --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$venv/installed-requirements.txt"
  fi
}

# lookup_scripts KEYS: pgbench scripts reading user_features by key over
# 1..KEYS: ONE (one key a transaction) and BATCH (100 keys, IN (...)).
lookup_scripts() {
  ONE="$WORK/online-one.sql"
  printf '\\set id random(1, %d)\nSELECT * FROM user_features WHERE user_id = :id;\n' "$1" > "$ONE"
  BATCH="$WORK/online-batch.sql"
  {
    for i in $(seq 1 100); do printf '\\set k%d random(1, %d)\n' "$i" "$1"; done
    printf 'SELECT * FROM user_features WHERE user_id IN ('
    for i in $(seq 1 100); do printf ':k%d' "$i"; [ "$i" -lt 100 ] && printf ', '; done
    printf ');\n'
  } > "$BATCH"
}

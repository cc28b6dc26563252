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

# start_featuredb PORT: the release build on a fresh data directory.
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
  "$BENCH_ROOT/target/release/featuredb" serve --listen "127.0.0.1:$port" --data-dir "$dir" \
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

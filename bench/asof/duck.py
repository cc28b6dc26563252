"""DuckDB side of the ASOF JOIN benchmark.

    duck.py DATA_DIR THREADS RUNS

Loads DATA_DIR/spine.csv and DATA_DIR/features.csv into in-memory tables
(untimed), then runs the benchmark query once to warm up and RUNS more
times, timing execute + fetchall with time.perf_counter. Prints one JSON
object: the version, load time, every timed run, the best, and the result.
"""

import json
import os
import sys
import time

import duckdb

QUERY = ("SELECT count(*), sum(f1), sum(f3) FROM spine s "
         "ASOF LEFT JOIN features f ON s.user_id = f.user_id AND s.ts >= f.ts")

COLUMNS = {
    "spine": {"user_id": "BIGINT", "ts": "TIMESTAMP", "label": "BIGINT"},
    "features": {"user_id": "BIGINT", "ts": "TIMESTAMP", "f1": "DOUBLE",
                 "f2": "DOUBLE", "f3": "BIGINT"},
}


def main():
    data, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")

    start = time.perf_counter()
    for table, columns in COLUMNS.items():
        cols = ", ".join(f"{name} {ty}" for name, ty in columns.items())
        con.execute(f"CREATE TABLE {table} ({cols})")
        # Explicit columns and format: no sniffing, the same types as featuredb.
        spec = "{" + ", ".join(f"'{name}': '{ty}'" for name, ty in columns.items()) + "}"
        path = os.path.join(data, f"{table}.csv")
        con.execute(f"INSERT INTO {table} SELECT * FROM read_csv('{path}', header = false, "
                    f"delim = ',', columns = {spec}, timestampformat = '%Y-%m-%d %H:%M:%S.%f')")
    load = time.perf_counter() - start

    con.execute(QUERY).fetchall()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        rows = con.execute(QUERY).fetchall()
        times.append(time.perf_counter() - start)
    count, sum_f1, sum_f3 = rows[0]
    print(json.dumps({
        "version": duckdb.__version__,
        "load_seconds": load,
        "runs": times,
        "best": min(times),
        "count": count,
        "sum_f1": sum_f1,
        "sum_f3": sum_f3,
    }))


if __name__ == "__main__":
    main()

"""Write-acknowledged → visible on another connection, one key at a time.

Each round inserts one row (a new sequence number for a random key) on a
writer connection; once the INSERT is acknowledged, a reader connection
looks the key up until it returns that sequence number. Prints p50, p99
and max in milliseconds, and how many lookups a round needed.

    python freshness.py PORT LOOKUP_SQL ROUNDS RATE KEYS
"""

import random
import statistics
import sys
import time

import psycopg

port, lookup, rounds, rate, keys = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
dsn = f"host=127.0.0.1 port={port} user=bench dbname=featuredb"
writer = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
reader = psycopg.connect(dsn, autocommit=True, prepare_threshold=0)
insert = "INSERT INTO transactions VALUES (%s, now(), %s, %s)"
rng = random.Random(7)
latencies, polls = [], []
seq = 10_000_000
interval = 1.0 / rate
next_at = time.perf_counter()
for _ in range(rounds):
    seq += 1
    key = rng.randint(1, keys)
    writer.execute(insert, (key, rng.random() * 100, seq))
    acknowledged = time.perf_counter()
    tries = 0
    while True:
        tries += 1
        row = reader.execute(lookup, (key,)).fetchone()
        if row is not None and row[0] == seq:
            break
        if time.perf_counter() - acknowledged > 5:
            sys.exit(f"key {key} not visible 5 s after its write")
    latencies.append((time.perf_counter() - acknowledged) * 1000)
    polls.append(tries)
    next_at += interval
    time.sleep(max(0.0, next_at - time.perf_counter()))
latencies.sort()
p = lambda q: latencies[min(len(latencies) - 1, int(len(latencies) * q))]
print(f"{p(0.5):.3f} {p(0.99):.3f} {latencies[-1]:.3f} {statistics.mean(polls):.2f}")

"""Data for the ASOF JOIN benchmark, from a fixed seed.

    gen.py N M K OUT_DIR

Writes OUT_DIR/spine.csv (user_id, ts, label) with N rows and
OUT_DIR/features.csv (user_id, ts, f1, f2, f3) with at most M rows, over
user ids 1..K. Timestamps are uniform over 2024 at microsecond resolution,
written as `YYYY-MM-DD HH:MM:SS.ffffff`. CSV, no header.

Feature rows have distinct (user_id, ts): with ties, which feature row an
ASOF JOIN picks is unspecified, and the systems compared could pick
differently.
"""

import os
import sys

import numpy as np
import pyarrow as pa
import pyarrow.csv as csv

SEED = 42
START_US = 1_704_067_200_000_000  # 2024-01-01 00:00:00
YEAR_US = 366 * 86_400 * 1_000_000  # 2024 is a leap year


def timestamps(rng, n):
    return pa.array(START_US + rng.integers(0, YEAR_US, n, dtype=np.int64), pa.timestamp("us"))


def write(table, path):
    # Written under a temporary name and renamed, so an interrupted run
    # never leaves a truncated file that run.sh would take as done.
    tmp = path + ".tmp"
    csv.write_csv(table, tmp, csv.WriteOptions(include_header=False))
    os.replace(tmp, path)


def main():
    n, m, k = (int(a) for a in sys.argv[1:4])
    out = sys.argv[4]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)

    user = rng.integers(1, k + 1, m, dtype=np.int64)
    offset = rng.integers(0, YEAR_US, m, dtype=np.int64)
    # (user_id, ts) as one int64 to find duplicates; keep the first of each,
    # in generation order (the rows stay unsorted).
    assert k * YEAR_US < 2**63
    _, first = np.unique((user - 1) * YEAR_US + offset, return_index=True)
    keep = np.sort(first)
    features = pa.table({
        "user_id": user[keep],
        "ts": pa.array(START_US + offset[keep], pa.timestamp("us")),
        "f1": rng.random(m)[keep] * 1000,
        "f2": rng.random(m)[keep] * 2 - 1,
        "f3": rng.integers(0, 100_000, m, dtype=np.int64)[keep],
    })

    spine = pa.table({
        "user_id": rng.integers(1, k + 1, n, dtype=np.int64),
        "ts": timestamps(rng, n),
        "label": rng.integers(0, 2, n, dtype=np.int64),
    })

    write(spine, os.path.join(out, "spine.csv"))
    write(features, os.path.join(out, "features.csv"))
    print(f"spine: {spine.num_rows} rows, features: {features.num_rows} rows "
          f"({m - features.num_rows} duplicate (user_id, ts) dropped), {k} keys",
          file=sys.stderr)


if __name__ == "__main__":
    main()

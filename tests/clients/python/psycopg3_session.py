"""psycopg 3 against featuredb: a scripted session whose printed output is
compared with psycopg3_session.expected by tests/clients.rs."""
import datetime
import decimal
import sys

import psycopg

conninfo = sys.argv[1]


def show(label, value):
    print(f"{label}: {value!r}")


with psycopg.connect(conninfo, autocommit=True) as conn:
    show("server_version", conn.info.parameter_status("server_version") is not None)
    conn.execute(
        "CREATE TABLE pg3_types (id BIGINT NOT NULL, i INT, s SMALLINT, f DOUBLE PRECISION,"
        " r REAL, n NUMERIC(10,2), t TEXT, v VARCHAR(10), b BOOLEAN, d DATE,"
        " ts TIMESTAMP, tz TIMESTAMPTZ, by BYTEA, arr BIGINT[], tags TEXT[])"
    )
    row = (
        1, 2, 3, 1.5, 2.5, decimal.Decimal("12.34"), "hello", "varchar", True,
        datetime.date(2024, 5, 1), datetime.datetime(2024, 5, 1, 10, 0, 0),
        datetime.datetime(2024, 5, 1, 10, 0, 0, tzinfo=datetime.timezone.utc),
        b"\x00\x01", [1, 2, 3], ["a", "b"],
    )
    conn.execute(
        "INSERT INTO pg3_types VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        row,
    )
    conn.execute(
        "INSERT INTO pg3_types (id) VALUES (%s)", (2,)
    )
    for binary in (False, True):
        cur = conn.cursor(binary=binary)
        cur.execute("SELECT * FROM pg3_types ORDER BY id")
        rows = cur.fetchall()
        show(f"rows binary={binary}", rows)
        show("same as inserted", rows[0] == row)

    # Prepared statements executed many times, server-side (prepare=True).
    total = 0
    for i in range(8):
        total += conn.execute("SELECT %s::bigint + id FROM pg3_types WHERE id = 1", (i,), prepare=True).fetchone()[0]
    show("prepared sum", total)

    # executemany and a COPY from the client.
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO pg3_types (id, t) VALUES (%s, %s)", [(10 + i, f"m{i}") for i in range(5)])
        with cur.copy("COPY pg3_types (id, t) FROM STDIN") as copy:
            for i in range(3):
                copy.write_row((20 + i, f"c{i}"))
        show("count", cur.execute("SELECT count(*) FROM pg3_types").fetchone())
        with cur.copy("COPY (SELECT id, t FROM pg3_types WHERE id >= 20 ORDER BY id) TO STDOUT") as copy:
            show("copy out", [r for r in copy.rows()])

    # An error, then the same connection keeps working.
    try:
        conn.execute("SELECT * FROM no_such_table")
    except psycopg.Error as e:
        show("error", (e.sqlstate, type(e).__name__))
    show("after error", conn.execute("SELECT 1").fetchone())

    # Pipeline mode.
    with conn.pipeline():
        c1 = conn.execute("SELECT count(*) FROM pg3_types")
        c2 = conn.execute("SELECT %s::text", ("piped",))
    show("pipeline", (c1.fetchone(), c2.fetchone()))

# A transaction block: a failed statement aborts it until rollback.
with psycopg.connect(conninfo) as conn:
    conn.execute("SELECT 1")
    show("in transaction", conn.info.transaction_status.name)
    try:
        conn.execute("SELECT 1/0")
    except psycopg.Error as e:
        show("error in block", e.sqlstate)
    show("status", conn.info.transaction_status.name)
    try:
        conn.execute("SELECT 1")
    except psycopg.Error as e:
        show("aborted", e.sqlstate)
    conn.rollback()
    show("after rollback", conn.execute("SELECT 2").fetchone())
    conn.commit()

    # Row-limited fetches from a server-side (named) cursor: DECLARE, a
    # Describe of the cursor's portal, FETCH FORWARD 2 until done, CLOSE.
    try:
        with conn.cursor(name="big") as cur:
            cur.itersize = 2
            cur.execute("SELECT id FROM pg3_types ORDER BY id")
            show("named cursor", [r[0] for r in cur])
    except psycopg.Error as e:
        show("named cursor", e.sqlstate)
    conn.rollback()
    show("after named cursor", conn.execute("SELECT 3").fetchone())

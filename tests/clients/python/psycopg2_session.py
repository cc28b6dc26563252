"""psycopg2 against featuredb: a scripted session whose printed output is
compared with psycopg2_session.expected by tests/clients.rs."""
import datetime
import decimal
import io
import sys

import psycopg2
import psycopg2.errors

conn = psycopg2.connect(sys.argv[1])
conn.autocommit = True
cur = conn.cursor()


def show(label, value):
    print(f"{label}: {value!r}")


cur.execute(
    "CREATE TABLE pg2_types (id BIGINT NOT NULL, n NUMERIC(10,2), t TEXT, b BOOLEAN,"
    " d DATE, ts TIMESTAMP, tz TIMESTAMPTZ, arr INT[])"
)
cur.execute(
    "INSERT INTO pg2_types VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
    (1, decimal.Decimal("1.50"), "x'y", False, datetime.date(2024, 1, 2),
     datetime.datetime(2024, 1, 2, 3, 4, 5),
     datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc), [1, None, 3]),
)
cur.executemany("INSERT INTO pg2_types (id, t) VALUES (%s, %s)", [(i, None) for i in range(2, 9)])
cur.execute("SELECT * FROM pg2_types WHERE id = %s", (1,))
show("row", cur.fetchone())
show("description", [(d.name, d.type_code) for d in cur.description])
cur.execute("SELECT count(*), count(t) FROM pg2_types")
show("counts", cur.fetchone())

# COPY both ways.
cur.copy_expert("COPY pg2_types (id, t) FROM STDIN WITH (FORMAT csv)", io.StringIO("100,a\n101,\n"))
out = io.StringIO()
cur.copy_expert("COPY (SELECT id, t FROM pg2_types WHERE id >= 100 ORDER BY id) TO STDOUT WITH (FORMAT csv)", out)
show("copy out", out.getvalue())

# Error and recovery on the same connection.
try:
    cur.execute("SELECT nope FROM pg2_types")
except psycopg2.Error as e:
    show("error", e.pgcode)
cur.execute("SELECT 42")
show("after error", cur.fetchone())

# A transaction block.
conn.autocommit = False
cur.execute("INSERT INTO pg2_types (id) VALUES (200)")
conn.commit()
cur.execute("SELECT count(*) FROM pg2_types WHERE id = 200")
show("committed", cur.fetchone())
conn.rollback()

# Named (server-side) cursors: DECLARE … CURSOR WITHOUT HOLD, FETCH FORWARD 3.
try:
    named = conn.cursor(name="big")
    named.itersize = 3
    named.execute("SELECT id FROM pg2_types ORDER BY id")
    show("named cursor", [r[0] for r in named])
except psycopg2.Error as e:
    show("named cursor", e.pgcode)
conn.rollback()
cur = conn.cursor()
cur.execute("SELECT 7")
show("after named cursor", cur.fetchone())
conn.close()

"""SQLAlchemy 2 (with psycopg 3) and pandas against featuredb: the
inspector, Core selects with bound parameters, read_sql and to_sql. Output
compared with sqlalchemy_session.expected by tests/clients.rs."""
import sys
from decimal import Decimal

import sqlalchemy as sa

params = dict(kv.split("=", 1) for kv in sys.argv[1].split())
url = sa.URL.create(
    "postgresql+psycopg",
    username=params["user"],
    host=params["host"],
    port=int(params["port"]),
    database=params["dbname"],
)
engine = sa.create_engine(url)


def show(label, value):
    print(f"{label}: {value!r}")


with engine.begin() as conn:
    conn.execute(sa.text(
        "CREATE TABLE sa_events (user_id BIGINT NOT NULL, ts TIMESTAMPTZ, amount NUMERIC(10,2), note VARCHAR(20))"
    ))
    conn.execute(sa.text("CREATE ENTITY sa_user (user_id BIGINT)"))
    conn.execute(sa.text(
        "CREATE FEATURE VIEW sa_spend ENTITY sa_user TIMESTAMP ts AS SELECT user_id, ts, amount FROM sa_events"
    ))
    conn.execute(
        sa.text("INSERT INTO sa_events VALUES (:u, :ts, :a, :n)"),
        [{"u": 1, "ts": "2024-05-01 10:00:00+00", "a": Decimal("12.50"), "n": "first"},
         {"u": 2, "ts": "2024-05-02 10:00:00+00", "a": 99.0, "n": None}],
    )

inspector = sa.inspect(engine)
show("schemas", inspector.get_schema_names())
show("tables", inspector.get_table_names())
show("views", inspector.get_view_names())
show("has_table", (inspector.has_table("sa_events"), inspector.has_table("nope")))
show("columns", [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns("sa_events")])
show("view columns", [(c["name"], str(c["type"])) for c in inspector.get_columns("sa_spend")])

metadata = sa.MetaData()
events = sa.Table("sa_events", metadata, autoload_with=engine)
with engine.connect() as conn:
    rows = conn.execute(
        sa.select(events.c.user_id, events.c.amount)
        .where(events.c.amount > sa.bindparam("min"))
        .order_by(events.c.user_id),
        {"min": 10},
    ).all()
    show("core select", rows)

# pandas: read_sql with parameters, to_sql into a new table, and a chunked
# read (a server-side cursor).
import pandas as pd

frame = pd.read_sql(
    sa.text("SELECT user_id, amount, note FROM sa_events WHERE user_id >= :u ORDER BY user_id"),
    engine,
    params={"u": 1},
)
print(frame.to_string())
out = pd.DataFrame({
    "k": [1, 2, 3],
    "x": [0.5, None, 2.5],
    "label": ["a", None, "c"],
    "flag": [True, False, True],
    "at": pd.to_datetime(["2024-01-01 00:00", "2024-01-02 12:30", None]),
})
show("to_sql rows", out.to_sql("pd_out", engine, index=False))
print(pd.read_sql("SELECT * FROM pd_out ORDER BY k", engine).to_string())
with engine.connect().execution_options(stream_results=True, max_row_buffer=2) as conn:
    chunks = pd.read_sql("SELECT k FROM pd_out ORDER BY k", conn, chunksize=2)
    show("chunks", [list(chunk["k"]) for chunk in chunks])

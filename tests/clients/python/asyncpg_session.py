"""asyncpg against featuredb: its prepared statements are binary and it
introspects types it does not know. Output compared with
asyncpg_session.expected by tests/clients.rs."""
import asyncio
import datetime
import decimal
import sys

import asyncpg


def show(label, value):
    print(f"{label}: {value!r}")


async def main():
    params = dict(kv.split("=", 1) for kv in sys.argv[1].split())
    conn = await asyncpg.connect(
        host=params["host"], port=int(params["port"]), user=params["user"], database=params["dbname"]
    )
    await conn.execute(
        "CREATE TABLE apg (id BIGINT NOT NULL, n NUMERIC(10,2), t TEXT, ts TIMESTAMPTZ, arr BIGINT[], tags TEXT[], f DOUBLE PRECISION)"
    )
    await conn.executemany(
        "INSERT INTO apg VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (1, decimal.Decimal("1.25"), "one", datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc), [1, 2], ["a"], 0.5),
            (2, None, None, None, None, None, None),
        ],
    )
    show("rows", [tuple(r) for r in await conn.fetch("SELECT * FROM apg ORDER BY id")])
    stmt = await conn.prepare("SELECT id, arr FROM apg WHERE id = $1")
    show("prepared", [tuple(await stmt.fetchrow(i)) if await stmt.fetchrow(i) else None for i in (1, 2, 3)])
    show("array param", await conn.fetchval("SELECT count(*) FROM apg WHERE id = ANY($1::bigint[])", [1, 2]))
    try:
        await conn.execute("SELECT * FROM nope")
    except asyncpg.PostgresError as e:
        show("error", e.sqlstate)
    show("after error", await conn.fetchval("SELECT 1"))
    async with conn.transaction():
        show("cursor", [r["id"] async for r in conn.cursor("SELECT id FROM apg ORDER BY id", prefetch=1)])
    await conn.copy_records_to_table("apg", records=[(3, None, "three", None, None, None, 1.5)])
    show("after copy", await conn.fetchval("SELECT count(*) FROM apg"))
    await conn.close()


asyncio.run(main())

// node-postgres against featuredb: untyped parameters (pg sends every
// parameter as text with type 0), prepared statements by name, a cursor,
// COPY, an error and recovery, a transaction block. The printed output is
// compared with session.expected by tests/clients.rs.
const { Client } = require("pg");
const Cursor = require("pg-cursor");
const { from: copyFrom, to: copyTo } = require("pg-copy-streams");
const { pipeline } = require("node:stream/promises");
const { Readable, Writable } = require("node:stream");

function show(label, value) {
  console.log(`${label}: ${JSON.stringify(value)}`);
}

async function main() {
  const params = Object.fromEntries(process.argv[2].split(" ").map((kv) => kv.split("=")));
  const client = new Client({
    host: params.host,
    port: Number(params.port),
    user: params.user,
    database: params.dbname,
  });
  await client.connect();
  await client.query(
    "CREATE TABLE node_t (id BIGINT NOT NULL, n NUMERIC(10,2), t TEXT, b BOOLEAN, ts TIMESTAMPTZ, tags TEXT[])"
  );
  // Untyped parameters: the server infers every type.
  await client.query("INSERT INTO node_t VALUES ($1, $2, $3, $4, $5, $6)", [
    1, "1.50", "one", true, "2024-01-01T00:00:00Z", ["a", "b"],
  ]);
  await client.query("INSERT INTO node_t VALUES ($1, $2, $3, $4, $5, $6)", [2, null, null, null, null, null]);
  const all = await client.query("SELECT id, n, t, b, ts, tags FROM node_t ORDER BY id");
  show("rows", all.rows.map((r) => ({ ...r, ts: r.ts && r.ts.toISOString() })));
  show("fields", all.fields.map((f) => [f.name, f.dataTypeID]));
  // A named prepared statement, executed many times.
  let sum = 0;
  for (let i = 0; i < 7; i++) {
    const r = await client.query({ name: "by_id", text: "SELECT id + $1 AS v FROM node_t WHERE id = $2", values: [i, 1] });
    sum += Number(r.rows[0].v);
  }
  show("prepared sum", sum);
  // Row-limited fetches through a portal.
  const cursor = client.query(new Cursor("SELECT id FROM node_t ORDER BY id"));
  const first = await cursor.read(1);
  const rest = await cursor.read(10);
  await cursor.close();
  show("cursor", [first.map((r) => r.id), rest.map((r) => r.id)]);
  // COPY in and out.
  await pipeline(Readable.from(["3,three\n", "4,four\n"]), client.query(copyFrom("COPY node_t (id, t) FROM STDIN WITH (FORMAT csv)")));
  let copied = "";
  await pipeline(
    client.query(copyTo("COPY (SELECT id, t FROM node_t WHERE id >= 3 ORDER BY id) TO STDOUT WITH (FORMAT csv)")),
    new Writable({ write(chunk, _enc, done) { copied += chunk; done(); } })
  );
  show("copy out", copied);
  // An error, then the same connection keeps working.
  try {
    await client.query("SELECT * FROM nope WHERE x = $1", [1]);
  } catch (e) {
    show("error", e.code);
  }
  show("after error", (await client.query("SELECT 1 AS one")).rows);
  // A transaction block that fails and rolls back.
  await client.query("BEGIN");
  try {
    await client.query("SELECT 1/0");
  } catch (e) {
    show("in block", e.code);
  }
  try {
    await client.query("SELECT 1");
  } catch (e) {
    show("aborted", e.code);
  }
  await client.query("ROLLBACK");
  show("count", (await client.query("SELECT count(*) AS c FROM node_t")).rows);
  await client.end();
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});

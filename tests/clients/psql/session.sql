-- A psql session against a fresh featuredb: DDL, \copy both ways, and the
-- describe commands on tables, feature views and services.
CREATE TABLE events (user_id BIGINT NOT NULL, ts TIMESTAMPTZ, amount NUMERIC(10,2), channel VARCHAR(16), tags TEXT[]);
CREATE ENTITY customer (user_id BIGINT);
CREATE FEATURE VIEW customer_spend ENTITY customer TIMESTAMP ts TTL INTERVAL '30 days' ONLINE
  WITH (description = 'spend per customer')
  AS SELECT user_id, ts, amount, amount > 100 AS big FROM events;
CREATE FEATURE SERVICE fraud_model AS customer_spend (amount, big);
\copy events FROM 'tests/clients/psql/events.csv' WITH (FORMAT csv, HEADER)
\copy (SELECT user_id, amount FROM events ORDER BY user_id) TO 'target/psql-client-copy.csv' WITH (FORMAT csv)
CREATE TABLE copied (user_id BIGINT, amount NUMERIC(10,2));
\copy copied FROM 'target/psql-client-copy.csv' WITH (FORMAT csv)
SELECT count(*), sum(amount) FROM copied;
\d
\dt
\dv
\dn
\du
\df
\d events
\d+ events
\d customer_spend
\d+ customer_spend
\d fraud_model
\dv+
\dv featuredb.*
\d nosuch
\l
\dT int4
\dT+ int4
\dp
\dt+
\x on
SELECT * FROM events ORDER BY user_id LIMIT 2;
\x off
\timing on
SELECT 1 AS one;
\timing off
SELECT name FROM featuredb.feature_views;

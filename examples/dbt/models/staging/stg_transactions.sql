-- A view over the seed: dbt creates it with CREATE VIEW and swaps it in with ALTER ... RENAME.
select
    txn_id,
    customer_id,
    amount,
    ts
from {{ ref('raw_transactions') }}

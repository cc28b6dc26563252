-- An incremental model (append strategy): later runs insert only rows newer than what the table holds.
{{ config(materialized='incremental') }}

select txn_id, customer_id, amount, ts
from {{ ref('stg_transactions') }}
{% if is_incremental() %}
where ts > (select max(ts) from {{ this }})
{% endif %}

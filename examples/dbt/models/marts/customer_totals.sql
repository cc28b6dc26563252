-- A table model: CREATE TABLE ... AS, then renamed over the previous build.
select
    c.customer_id,
    c.segment,
    count(t.txn_id) as transactions,
    coalesce(sum(t.amount), 0) as total_amount
from {{ ref('customers') }} c
left join {{ ref('stg_transactions') }} t on t.customer_id = c.customer_id
group by c.customer_id, c.segment

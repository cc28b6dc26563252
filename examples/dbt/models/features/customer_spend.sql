-- A feature view defined by dbt: the featuredb package's `feature_view` materialization issues
-- CREATE OR REPLACE FEATURE VIEW with the entity, timestamp, TTL and ONLINE from this config,
-- then REFRESH FEATURE VIEW so the online store serves it. (The seed's events are from 2024;
-- a TTL shorter than their age would expire them online.)
{{ config(
    materialized='feature_view',
    entity='customer',
    timestamp='ts',
    ttl='3650 days',
    online=true,
    tags=['spend', 'customer'],
    description='Running spend per customer'
) }}

select
    customer_id,
    ts,
    amount,
    sum(amount) over (partition by customer_id order by ts) as spend_to_date
from {{ ref('stg_transactions') }}

{{ config(materialized='view') }}
select user_id, ts, amount, channel from {{ ref('raw_events') }}

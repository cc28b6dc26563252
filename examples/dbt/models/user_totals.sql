{{ config(materialized='table') }}
select user_id, count(*) as events, sum(amount) as total from {{ ref('stg_events') }} group by user_id

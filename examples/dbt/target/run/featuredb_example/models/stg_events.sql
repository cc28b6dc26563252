
  create view "featuredb"."public"."stg_events__dbt_tmp"
    
    
  as (
    
select user_id, ts, amount, channel from "featuredb"."public"."raw_events"
  );
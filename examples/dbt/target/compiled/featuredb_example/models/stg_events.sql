
select user_id, ts, amount, channel from "featuredb"."public"."raw_events"
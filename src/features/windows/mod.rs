//! Windowed features: aggregates over a sliding window of event time,
//! written as standard window functions.
//!
//! ```sql
//! SELECT card_id, ts, count(*) OVER w10m AS tx_10m, sum(amount) OVER w1h AS amount_1h
//! FROM transactions
//! WINDOW w10m AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '10 minutes' PRECEDING AND CURRENT ROW),
//!        w1h  AS (PARTITION BY card_id ORDER BY ts RANGE BETWEEN INTERVAL '1 hour' PRECEDING AND CURRENT ROW)
//! ```
//!
//! **What a windowed view means when read as of time t** (a query as of
//! now, `FOR SYSTEM_TIME AS OF t`, an online lookup): the view's other
//! columns come from the key's newest row at or before t, as for every
//! view; each windowed feature is the aggregate over the key's rows with
//! event time in `[t − W, t]` — what the window frame computes for a row
//! at time t. So values decay as time passes with no new events (a card
//! idle for an hour has `tx_10m = 0`, or NULL for avg/min/max), rather
//! than staying at what they were at the key's last event. Read as a
//! history (`FOR SYSTEM_TIME ALL`) the view is its query: each row with
//! its windows at its own time.
//!
//! A view is windowed when a window function's frame is `RANGE BETWEEN
//! INTERVAL '…' PRECEDING AND CURRENT ROW`; every window function of such a
//! view must then be one of [`WindowFunction`], partitioned by the view's
//! key and ordered by its event time, a whole select item. Intervals are
//! fixed durations (a day is 24 hours; months are refused).
//!
//! The rows the windows aggregate are those of the **base query**: the
//! view's query with each window item replaced by its argument (named
//! `featuredb_window_arg_N`) and the WINDOW clause removed.

mod definition;
mod evaluate;
mod read;

pub use definition::{
    ARGUMENT_PREFIX, WindowFeature, WindowFunction, WindowedView, check_event_time, windowed_query,
    windowed_view,
};
pub use evaluate::{WindowArguments, evaluate_windows, oldest_needed};
pub use read::as_of_sql;

//! Point-in-time (AS OF) joins.
//!
//! For each row of the left side (the spine) with key k and time t, an AS OF
//! join finds the right-side row with key k and the greatest time ≤ t
//! (`>=`; `>` asks for < t; `<=` and `<` look forward for the least time
//! ≥ t or > t), among rows within the tolerance (and a feature view's TTL).
//! Ties on time go to the row written last; NULL keys and times never
//! match; a LEFT join returns every spine row exactly once, in the order it
//! came in.
//!
//! The data flows the way every query's does:
//!
//! - `featuredb_sql::asof` rewrites the syntaxes (DuckDB's, Snowflake's,
//!   `fv FOR SYSTEM_TIME AS OF s.ts`) into one AST form;
//! - [`ast`] turns that into an ordinary join DataFusion can plan, marked by
//!   a call to [`MARKER_FUNCTION`] in its condition, and reads tables in
//!   write order so ties can be broken;
//! - [`logical`] replaces each marked join by an [`logical::AsOfJoin`] node
//!   (an analyzer rule, after type coercion) and pushes filters below it;
//! - [`exec`] executes it ([`exec::AsOfJoinExec`]), with the matching
//!   itself in [`matcher`].

pub mod ast;
pub mod exec;
pub mod logical;
pub mod matcher;
pub mod planner;

/// The function marking a join as AS OF in the plan DataFusion builds:
/// `featuredb_asof_join(tolerance, ttl, tie)`, each argument NULL when
/// absent. It is never evaluated.
pub const MARKER_FUNCTION: &str = "featuredb_asof_join";

/// Prefix of the hidden column that breaks ties on time (the right side's
/// write order), numbered per SELECT.
pub const TIE_COLUMN_PREFIX: &str = "featuredb_asof_tie_";

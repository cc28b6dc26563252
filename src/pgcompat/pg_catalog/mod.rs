//! PostgreSQL's system catalog as clients probe it: psql's `\d`, drivers'
//! type introspection, SQLAlchemy's inspector, BI tools' schema browsers.
//!
//! Most of `pg_catalog` comes from datafusion-pg-catalog: PostgreSQL 15's
//! static tables (`pg_type` with the real OIDs, `pg_proc`, `pg_operator`,
//! `pg_am`, …), catalog functions, and SQL rewrites that make the catalog
//! queries clients send plannable by DataFusion (`::regclass`, `= ANY`,
//! unqualified `pg_class`, `pg_catalog.` qualifiers, …). The tables that
//! describe featuredb's own objects (`pg_namespace`, `pg_class`,
//! `pg_attribute`, `pg_description`, `pg_views`) are built here from the
//! offline store and the registry, live on every query, so that columns
//! carry their declared types (`numeric(10,2)`, `timestamp with time zone`,
//! `text[]`) and feature views and services appear as views.

mod functions;
mod information_schema;
mod relations;
mod rewrite;
mod rows;
mod schema;

pub use information_schema::INFORMATION_SCHEMA;
pub use relations::Relations;
pub use rewrite::{known_query, rewrite};
pub use schema::{
    PG_CATALOG_SCHEMA, information_schema, register_functions, register_search_path_functions,
    schema,
};

//! What a pass computes from a view's definition: the SQL of its rows
//! (all of them, or those of some input commits), the offline table's
//! columns, and where keys and event time are in each row.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, SetExpr, TableFactor, Value,
};
use featuredb_catalog::names::quote_ident;
use featuredb_catalog::{ColumnDef, ColumnType, FeatureViewVersion, QualifiedName, TableSchemaDef};

use crate::error::{Error, Result};
use crate::features::temporal::{TemporalClause, parse_query, view_sql};
use crate::offline::write_order::WRITE_ORDER_COLUMN;
use crate::online::storable;

/// The definition fields a materialization depends on.
pub fn shape_of(view: &FeatureViewVersion) -> String {
    let view = view.materialized_form();
    serde_json::json!({
        "query": view.query,
        "keys": view.keys,
        "timestamp": view.timestamp,
        "columns": view.columns,
    })
    .to_string()
}

/// Offline table names of a view: `<schema>__<view>__g<generation>`.
pub(super) fn offline_table_prefix(view: &QualifiedName) -> String {
    format!("{}__{}__g", view.schema, view.name)
}

/// The column carrying each computed row's tie-breaker.
pub(super) const TIE_COLUMN: &str = "featuredb_refresh_tie";

/// Which rows of the view a pass computes.
pub(super) enum Rows {
    /// The rows of input commits in `(after, through]` (views over one
    /// table).
    Range { after: i64, through: i64 },
    /// Every row (any view).
    All,
}

/// The write-ordered query of a one-table view, reading only the commits
/// in `(after, through]`.
pub(super) fn ranged_query(write_ordered: &str, after: i64, through: i64) -> Result<String> {
    let mut query = parse_query(write_ordered)?;
    let SetExpr::Select(select) = query.body.as_mut() else {
        return Err(Error::internal("write-ordered query is not a SELECT"));
    };
    let Some(TableFactor::Table {
        args: Some(args), ..
    }) = select.from.first_mut().map(|f| &mut f.relation)
    else {
        return Err(Error::internal(
            "write-ordered query reads no table function",
        ));
    };
    let text = |s: &str| {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(
            Value::SingleQuotedString(s.to_string()),
        )))
    };
    let number = |n: i64| {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::value(Value::Number(
            n.to_string(),
            false,
        ))))
    };
    args.args.truncate(2);
    args.args.push(text(WRITE_ORDER_COLUMN));
    args.args.push(number(after));
    args.args.push(number(through));
    Ok(query.to_string())
}

/// The SQL computing a pass's rows: the view's columns and a tie-breaker
/// (greater wins among rows with the same key and event time).
pub(super) fn rows_sql(view: &FeatureViewVersion, rows: &Rows) -> Result<String> {
    let columns: Vec<String> = view.columns.iter().map(|c| quote_ident(&c.name)).collect();
    match rows {
        Rows::Range { after, through } => {
            let write_ordered = view.write_ordered_query.as_deref().ok_or_else(|| {
                Error::internal("incremental refresh of a view without write order")
            })?;
            Ok(format!(
                "SELECT {}, {WRITE_ORDER_COLUMN} AS {TIE_COLUMN} FROM ({}) AS featuredb_history",
                columns.join(", "),
                ranged_query(write_ordered, *after, *through)?
            ))
        }
        Rows::All => Ok(view_sql(
            view,
            &TemporalClause::AsOfJoinHistory {
                tie_column: TIE_COLUMN.to_string(),
            },
        )),
    }
}

/// The declared columns of a view's offline table.
pub(super) fn offline_schema(view: &FeatureViewVersion) -> Result<TableSchemaDef> {
    let columns = view
        .columns
        .iter()
        .map(|c| {
            let data_type = c.column_type.clone().ok_or_else(|| {
                Error::FeatureNotSupported(format!(
                    "column {} of type {} cannot be materialized",
                    c.name, c.data_type
                ))
            })?;
            Ok(ColumnDef {
                name: c.name.clone(),
                data_type,
                nullable: true,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(TableSchemaDef { columns })
}

/// Whether every column of the view can be held online.
pub fn online_storable(view: &FeatureViewVersion) -> Result<()> {
    for column in &view.columns {
        let storable = column
            .column_type
            .as_ref()
            .is_some_and(|t| storable(&t.to_arrow()));
        if !storable {
            return Err(Error::FeatureNotSupported(format!(
                "column {} of type {} cannot be held in the online store",
                column.name, column.data_type
            )));
        }
    }
    match view.timestamp_type() {
        Some(
            ColumnType::Timestamp
            | ColumnType::TimestampTz
            | ColumnType::Date
            | ColumnType::SmallInt
            | ColumnType::Integer
            | ColumnType::BigInt,
        ) => Ok(()),
        _ => Err(Error::FeatureNotSupported(format!(
            "the online store needs a timestamp, date or integer event time; {} is not",
            view.timestamp
        ))),
    }
}

/// Where a view's columns are in the rows a refresh computes.
pub struct RowShape {
    /// The view's columns in their declared types.
    pub target: Arc<Schema>,
    pub key_indices: Vec<usize>,
    pub key_types: Vec<DataType>,
    pub ts_index: usize,
}

impl RowShape {
    /// The view's columns of `batch` (its first columns; a tie-breaker may
    /// follow) in the view's declared types, as a refresh writes them.
    pub fn cast(&self, batch: &RecordBatch) -> Result<RecordBatch> {
        if batch.num_columns() < self.target.fields().len() {
            return Err(Error::internal("rows do not have the view's columns"));
        }
        let columns = self
            .target
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(field, column)| {
                if column.data_type() == field.data_type() {
                    Ok(column.clone())
                } else {
                    cast(column, field.data_type())
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(RecordBatch::try_new(self.target.clone(), columns)?)
    }

    pub fn of(view: &FeatureViewVersion) -> Result<Self> {
        let target = Arc::new(Schema::new(
            view.columns
                .iter()
                .map(|c| {
                    let data_type = c
                        .column_type
                        .as_ref()
                        .map(ColumnType::to_arrow)
                        .unwrap_or(DataType::Null);
                    datafusion::arrow::datatypes::Field::new(&c.name, data_type, true)
                })
                .collect::<Vec<_>>(),
        ));
        let key_indices: Vec<usize> = view
            .keys
            .iter()
            .map(|k| view.columns.iter().position(|c| &c.name == k))
            .collect::<Option<_>>()
            .ok_or_else(|| Error::internal("a key column is missing from the view"))?;
        let ts_index = view
            .columns
            .iter()
            .position(|c| c.name == view.timestamp)
            .ok_or_else(|| Error::internal("the timestamp column is missing from the view"))?;
        let key_types = key_indices
            .iter()
            .map(|&i| target.field(i).data_type().clone())
            .collect();
        Ok(Self {
            target,
            key_indices,
            key_types,
            ts_index,
        })
    }
}

//! The COPY statement: `FROM STDIN` into a table (the data comes next, see
//! [`crate::copy`]), `TO STDOUT` and `TO 'file'` from a table or a query.

use datafusion::sql::sqlparser::ast;
use featuredb_catalog::QualifiedName;
use featuredb_catalog::names::quote_ident;
use featuredb_sql::Statement;
use featuredb_sql::copy::{CopyDirection, CopyRelation, CopyStatement};

use super::outcome::{CommandTag, Outcome};
use super::session::Session;
use crate::copy::{CopyEncoder, CopyFromStdin, CopyTarget};
use crate::error::{Error, Result};

impl Session {
    pub(crate) async fn copy(&mut self, sql: &str, copy: &CopyStatement) -> Result<Outcome> {
        match &copy.direction {
            CopyDirection::FromStdin => {
                let CopyRelation::Table { name, columns } = &copy.source else {
                    return Err(Error::internal("COPY FROM with a query"));
                };
                let target = match self.names().temp_table_named(name) {
                    Some(temp) => {
                        let table = self.temp.get(&temp).ok_or_else(|| {
                            Error::internal(format!("temporary table {temp} vanished"))
                        })?;
                        CopyTarget::Temporary {
                            name: temp,
                            definition: table.definition.clone(),
                            table: table.provider.clone(),
                        }
                    }
                    None => CopyTarget::Table(self.names().lookup_table(name)?),
                };
                let sink = CopyFromStdin::new(
                    target,
                    columns,
                    copy.options.clone(),
                    self.settings.time_zone(),
                )
                .await?;
                Ok(Outcome::CopyIn(Box::new(sink)))
            }
            CopyDirection::ToStdout | CopyDirection::ToFile(_) => {
                let (query_sql, statement) = match &copy.source {
                    CopyRelation::Table { name, columns } => {
                        let (qualified, definition) = match self.names().temp_table_named(name) {
                            Some(temp) => {
                                let table = self.temp.get(&temp).ok_or_else(|| {
                                    Error::internal(format!("temporary table {temp} vanished"))
                                })?;
                                (
                                    QualifiedName::new(
                                        crate::pgcompat::temp_tables::TEMP_SCHEMA,
                                        temp,
                                    ),
                                    table.definition.clone(),
                                )
                            }
                            None => {
                                let table = self.names().lookup_table(name)?;
                                (table.name.clone(), table.definition().clone())
                            }
                        };
                        for column in columns {
                            if definition.column(column).is_none() {
                                return Err(Error::UndefinedColumn {
                                    table: qualified.name.clone(),
                                    column: column.clone(),
                                });
                            }
                        }
                        let list = if columns.is_empty() {
                            "*".to_string()
                        } else {
                            columns
                                .iter()
                                .map(|c| quote_ident(c))
                                .collect::<Vec<_>>()
                                .join(", ")
                        };
                        let query_sql = format!(
                            "SELECT {list} FROM {}.{}",
                            quote_ident(&qualified.schema),
                            quote_ident(&qualified.name)
                        );
                        let Statement::Query(statement) =
                            featuredb_sql::parse_statement(&query_sql)?
                        else {
                            return Err(Error::internal("COPY TO produced a non-query"));
                        };
                        (query_sql, statement)
                    }
                    CopyRelation::Query(query) => (
                        sql.to_string(),
                        Box::new(ast::Statement::Query(query.clone())),
                    ),
                };
                let (plan, params) = self.planner.plan_query(&query_sql, &statement, &[]).await?;
                if !params.is_empty() {
                    return Err(Error::FeatureNotSupported(
                        "COPY does not take parameters".to_string(),
                    ));
                }
                let Outcome::Rows { schema, stream, .. } = self.run_plan(plan, Vec::new()).await?
                else {
                    return Err(Error::FeatureNotSupported(
                        "COPY (…) TO requires a query that returns rows".to_string(),
                    ));
                };
                let schema = match &copy.source {
                    CopyRelation::Query(query) => crate::pgcompat::column_names::rename_columns(
                        &schema,
                        &crate::pgcompat::column_names::postgres_column_names(
                            query,
                            schema.fields().len(),
                        ),
                    ),
                    CopyRelation::Table { .. } => schema,
                };
                let names = schema.fields().iter().map(|f| f.name().clone()).collect();
                let encoder = CopyEncoder::new(copy.options.clone(), self.output_context(), names);
                if let CopyDirection::ToFile(path) = &copy.direction {
                    let rows = crate::copy::to_file::write(
                        path,
                        copy.options.format,
                        encoder,
                        schema,
                        stream,
                    )
                    .await?;
                    return Ok(Outcome::Command(CommandTag::with_rows("COPY", rows)));
                }
                Ok(Outcome::CopyOut {
                    encoder,
                    format: copy.options.format,
                    columns: schema.fields().len(),
                    stream,
                })
            }
        }
    }
}

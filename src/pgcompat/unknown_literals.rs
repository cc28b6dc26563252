//! String constants compared with booleans are booleans.
//!
//! In PostgreSQL a quoted constant has no type until its context gives it
//! one, so `indisprimary = 'f'` (SQLAlchemy's index reflection, which
//! Superset runs) compares two booleans. DataFusion types the constant as
//! text and finds no common type for text and boolean. This expression
//! planner sees each comparison as it is planned (with the input's schema)
//! and turns such constants into booleans, with PostgreSQL's spellings
//! (`t`, `true`, `yes`, `on`, `1`, … in any case, unambiguous prefixes
//! included); anything else is PostgreSQL's `invalid input syntax for type
//! boolean`. Other types need no help: DataFusion already casts a string
//! compared with a number, date or timestamp to that type.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, Result, ScalarValue};
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::sql::sqlparser::ast::BinaryOperator;

#[derive(Debug, Default)]
pub struct BooleanLiterals;

impl ExprPlanner for BooleanLiterals {
    fn plan_binary_op(
        &self,
        mut expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        let comparison = matches!(
            expr.op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        );
        if comparison {
            let is_boolean = |e: &Expr| {
                e.get_type(schema)
                    .is_ok_and(|data_type| data_type == DataType::Boolean)
            };
            if is_boolean(&expr.left)
                && let Some(value) = string_constant(&expr.right)
            {
                expr.right = boolean(value)?;
            } else if is_boolean(&expr.right)
                && let Some(value) = string_constant(&expr.left)
            {
                expr.left = boolean(value)?;
            }
        }
        Ok(PlannerResult::Original(expr))
    }
}

fn string_constant(expr: &Expr) -> Option<&str> {
    match expr {
        Expr::Literal(
            ScalarValue::Utf8(Some(text))
            | ScalarValue::Utf8View(Some(text))
            | ScalarValue::LargeUtf8(Some(text)),
            _,
        ) => Some(text),
        _ => None,
    }
}

/// PostgreSQL's boolean input: `t`/`true`/`y`/`yes`/`on`/`1` and
/// `f`/`false`/`n`/`no`/`off`/`0`, case-insensitive, surrounding blanks
/// ignored, unambiguous prefixes of the words accepted.
fn boolean(text: &str) -> Result<Expr> {
    let word = text.trim().to_ascii_lowercase();
    let matches = |full: &str, shortest: usize| word.len() >= shortest && full.starts_with(&word);
    let value = if matches("true", 1) || matches("yes", 1) || matches("on", 2) || word == "1" {
        true
    } else if matches("false", 1) || matches("no", 1) || matches("off", 2) || word == "0" {
        false
    } else {
        return Err(crate::error::Error::InvalidTextRepresentation {
            message: format!("invalid input syntax for type boolean: \"{text}\""),
        }
        .into());
    };
    Ok(Expr::Literal(ScalarValue::Boolean(Some(value)), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_spellings() {
        for (text, expected) in [
            ("t", true),
            ("TRUE", true),
            (" yes ", true),
            ("on", true),
            ("1", true),
            ("f", false),
            ("fal", false),
            ("No", false),
            ("off", false),
            ("0", false),
        ] {
            let Expr::Literal(ScalarValue::Boolean(Some(value)), _) = boolean(text).unwrap() else {
                panic!("{text}");
            };
            assert_eq!(value, expected, "{text}");
        }
        for bad in ["o", "maybe", "", "2", "tru e"] {
            assert!(boolean(bad).is_err(), "{bad}");
        }
    }
}

//! Integer arithmetic that fails on overflow, as PostgreSQL's does.
//!
//! DataFusion adds, subtracts and multiplies integers with wrapping
//! kernels: `CAST(2147483647 AS INT) + 1::INT` is -2147483648, a wrong
//! answer in a feature, silently. PostgreSQL fails with `integer out of
//! range` (22003). This analyzer rule runs after type coercion and turns
//! `+`, `-` and `*` on two operands of one integer type into
//! [`CheckedArithmetic`], which uses Arrow's checked kernels.

use datafusion::arrow::compute::kernels::numeric;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::error::ArrowError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ScalarFunctionArgs,
    ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;

#[derive(Debug, Default)]
pub struct CheckedIntegerArithmetic;

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn name(&self) -> &str {
        "featuredb_checked_integer_arithmetic"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        super::expr_rewrite::rewrite_expressions(plan, rewrite)
    }
}

fn rewrite(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let operation = match op {
        Operator::Plus => Operation::Add,
        Operator::Minus => Operation::Subtract,
        Operator::Multiply => Operation::Multiply,
        _ => return Ok(Transformed::no(expr)),
    };
    let (Ok(left_type), Ok(right_type)) = (left.get_type(schema), right.get_type(schema)) else {
        return Ok(Transformed::no(expr));
    };
    if left_type != right_type || integer_name(&left_type).is_none() {
        return Ok(Transformed::no(expr));
    }
    let udf = ScalarUDF::from(CheckedArithmetic::new(operation));
    Ok(Transformed::yes(
        udf.call(vec![left.as_ref().clone(), right.as_ref().clone()]),
    ))
}

/// PostgreSQL's name of an integer type.
fn integer_name(data_type: &DataType) -> Option<&'static str> {
    match data_type {
        DataType::Int16 => Some("smallint"),
        DataType::Int32 => Some("integer"),
        DataType::Int64 => Some("bigint"),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Operation {
    Add,
    Subtract,
    Multiply,
}

/// `a + b`, `a - b` or `a * b` on one integer type, failing on overflow.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct CheckedArithmetic {
    operation: Operation,
    signature: Signature,
}

impl CheckedArithmetic {
    fn new(operation: Operation) -> Self {
        Self {
            operation,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CheckedArithmetic {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        match self.operation {
            Operation::Add => "featuredb_checked_add",
            Operation::Subtract => "featuredb_checked_subtract",
            Operation::Multiply => "featuredb_checked_multiply",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        Ok(args[0].clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [left, right] = args.args.as_slice() else {
            return datafusion::common::internal_err!("{} takes two arguments", self.name());
        };
        let data_type = left.data_type();
        let scalars = matches!(
            (left, right),
            (ColumnarValue::Scalar(_), ColumnarValue::Scalar(_))
        );
        let datum = |value: &ColumnarValue| -> Result<Box<dyn numeric_datum::Datum>> {
            Ok(match value {
                ColumnarValue::Array(array) => Box::new(array.clone()),
                ColumnarValue::Scalar(scalar) => Box::new(scalar.to_scalar()?),
            })
        };
        let (left, right) = (datum(left)?, datum(right)?);
        let (left, right) = (left.as_ref().as_datum(), right.as_ref().as_datum());
        let result = match self.operation {
            Operation::Add => numeric::add(left, right),
            Operation::Subtract => numeric::sub(left, right),
            Operation::Multiply => numeric::mul(left, right),
        };
        let array = result.map_err(|error| -> datafusion::error::DataFusionError {
            match error {
                ArrowError::ArithmeticOverflow(_) => crate::error::Error::NumericValueOutOfRange {
                    message: format!(
                        "{} out of range",
                        integer_name(&data_type).unwrap_or("integer")
                    ),
                }
                .into_datafusion(),
                other => datafusion::error::DataFusionError::ArrowError(Box::new(other), None),
            }
        })?;
        Ok(if scalars {
            ColumnarValue::Scalar(datafusion::common::ScalarValue::try_from_array(&array, 0)?)
        } else {
            ColumnarValue::Array(array)
        })
    }
}

/// Arrays and scalars both as Arrow `Datum`s.
mod numeric_datum {
    use datafusion::arrow::array::{ArrayRef, Scalar};

    pub trait Datum {
        fn as_datum(&self) -> &dyn datafusion::arrow::array::Datum;
    }

    impl Datum for ArrayRef {
        fn as_datum(&self) -> &dyn datafusion::arrow::array::Datum {
            self
        }
    }

    impl Datum for Scalar<ArrayRef> {
        fn as_datum(&self) -> &dyn datafusion::arrow::array::Datum {
            self
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use datafusion::arrow::array::{Array, Int32Array};
    use datafusion::arrow::datatypes::Field;
    use datafusion::common::ScalarValue;

    fn run(
        operation: Operation,
        left: ColumnarValue,
        right: ColumnarValue,
    ) -> Result<ColumnarValue> {
        let udf = CheckedArithmetic::new(operation);
        let field = Arc::new(Field::new("x", DataType::Int32, true));
        udf.invoke_with_args(ScalarFunctionArgs {
            args: vec![left, right],
            arg_fields: vec![field.clone(), field.clone()],
            number_rows: 2,
            return_field: field,
            config_options: Arc::new(ConfigOptions::default()),
        })
    }

    #[test]
    fn overflow_is_an_error() {
        let array = ColumnarValue::Array(Arc::new(Int32Array::from(vec![1, i32::MAX])));
        let one = ColumnarValue::Scalar(ScalarValue::Int32(Some(1)));
        let error = run(Operation::Add, array.clone(), one.clone()).unwrap_err();
        assert!(
            error.to_string().contains("integer out of range"),
            "{error}"
        );
        let ColumnarValue::Array(difference) = run(Operation::Subtract, array, one).unwrap() else {
            panic!("array in, array out");
        };
        assert_eq!(difference.len(), 2);
        let ColumnarValue::Scalar(product) = run(
            Operation::Multiply,
            ColumnarValue::Scalar(ScalarValue::Int32(Some(6))),
            ColumnarValue::Scalar(ScalarValue::Int32(Some(7))),
        )
        .unwrap() else {
            panic!("scalars in, scalar out");
        };
        assert_eq!(product, ScalarValue::Int32(Some(42)));
    }
}

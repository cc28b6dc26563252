//! Functions PostgreSQL clients call to learn about the server and session:
//! `version()`, `current_database()`, `current_schema()`, `current_user`,
//! `current_setting(name)`, `pg_backend_pid()`.
//!
//! Session-dependent functions capture the values they return; the session
//! registers them again whenever those values change.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringBuilder};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DataFusionError, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarUDF, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use featuredb_catalog::DEFAULT_DATABASE;

use super::pg_semantics::PG_TEXT_FUNCTION;
use super::settings::SERVER_VERSION;
use crate::pgtypes::{ColumnEncoder, OutputContext};

/// What `version()` returns: PostgreSQL's shape, so tools that parse it work.
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} on {}-unknown-linux-gnu, compiled by rustc, 64-bit",
        std::env::consts::ARCH
    )
}

fn constant(name: &str, value: Option<String>) -> ScalarUDF {
    let value = ScalarValue::Utf8(value);
    create_udf(
        name,
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(value.clone()))),
    )
}

/// Registers the functions whose values never change in a session.
pub fn register_static(ctx: &SessionContext, user: &str, backend_pid: i32) {
    ctx.register_udf(ScalarUDF::from(Format::new()));
    ctx.register_udf(constant("version", Some(version_string())));
    ctx.register_udf(constant(
        "current_database",
        Some(DEFAULT_DATABASE.to_string()),
    ));
    for name in ["current_user", "session_user", "user", "current_role"] {
        ctx.register_udf(constant(name, Some(user.to_string())));
    }
    ctx.register_udf(create_udf(
        "pg_backend_pid",
        vec![],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::Int32(Some(backend_pid))))),
    ));
}

/// `set_config` calls waiting for their statement to complete.
pub type DeferredSettings = Arc<std::sync::Mutex<Vec<(String, String, bool)>>>;

/// `set_config(name, value, is_local)`: returns `value`; the session
/// applies the setting when the statement completes.
pub fn set_config(deferred: DeferredSettings) -> ScalarUDF {
    create_udf(
        "set_config",
        vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
        DataType::Utf8,
        Volatility::Volatile,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let names = datafusion::common::cast::as_string_array(&arrays[0])?;
            let values = datafusion::common::cast::as_string_array(&arrays[1])?;
            let local = datafusion::common::cast::as_boolean_array(&arrays[2])?;
            let mut calls = deferred.lock().unwrap_or_else(|e| e.into_inner());
            for row in 0..names.len() {
                if names.is_valid(row) && values.is_valid(row) {
                    calls.push((
                        names.value(row).to_string(),
                        values.value(row).to_string(),
                        local.is_valid(row) && local.value(row),
                    ));
                }
            }
            Ok(ColumnarValue::Array(arrays[1].clone()))
        }),
    )
}

/// Registers the functions that depend on session settings.
pub fn register_settings(
    ctx: &SessionContext,
    current_schema: Option<String>,
    settings: HashMap<String, String>,
    output: OutputContext,
) {
    ctx.register_udf(ScalarUDF::from(PgText::new(output)));
    ctx.register_udf(constant("current_schema", current_schema));
    let settings = Arc::new(settings);
    ctx.register_udf(create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args| current_setting(&settings, args)),
    ));
}

fn current_setting(
    settings: &HashMap<String, String>,
    args: &[ColumnarValue],
) -> datafusion::error::Result<ColumnarValue> {
    let lookup = |name: &str| -> datafusion::error::Result<String> {
        settings.get(&name.to_lowercase()).cloned().ok_or_else(|| {
            DataFusionError::External(Box::new(crate::error::Error::UnknownSetting(
                name.to_string(),
            )))
        })
    };
    match &args[0] {
        ColumnarValue::Scalar(ScalarValue::Utf8(Some(name))) => Ok(ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(lookup(name)?)),
        )),
        ColumnarValue::Scalar(_) => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
        ColumnarValue::Array(array) => {
            let names = array.as_string::<i32>();
            let mut out = StringBuilder::with_capacity(names.len(), names.len() * 8);
            for name in names.iter() {
                match name {
                    Some(name) => out.append_value(lookup(name)?),
                    None => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        }
    }
}

/// `pg_text(x)`: `x` as PostgreSQL prints it (what `x::text` means).
#[derive(Debug)]
struct PgText {
    signature: datafusion::logical_expr::Signature,
    output: OutputContext,
}

impl PartialEq for PgText {
    fn eq(&self, other: &Self) -> bool {
        self.output.extra_float_digits == other.output.extra_float_digits
            && self.output.time_zone == other.output.time_zone
    }
}

impl Eq for PgText {}

impl std::hash::Hash for PgText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.output.extra_float_digits.hash(state);
        self.output.time_zone.datafusion_name().hash(state);
    }
}

impl PgText {
    fn new(output: OutputContext) -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::any(1, Volatility::Stable),
            output,
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for PgText {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        PG_TEXT_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let scalar = matches!(args.args[0], ColumnarValue::Scalar(_));
        let array = args.args[0].to_array(if scalar { 1 } else { rows })?;
        let encoder =
            ColumnEncoder::new(array.as_ref()).map_err(crate::error::Error::into_datafusion)?;
        let mut out = StringBuilder::with_capacity(array.len(), array.len() * 16);
        let mut buffer = Vec::new();
        let boolean = array.data_type() == &DataType::Boolean;
        for row in 0..array.len() {
            if encoder.is_null(array.as_ref(), row) {
                out.append_null();
                continue;
            }
            // bool's output function prints t/f, but its cast to text
            // spells the word.
            if boolean {
                let value = array.as_boolean().value(row);
                out.append_value(if value { "true" } else { "false" });
                continue;
            }
            buffer.clear();
            encoder.write_text(row, &self.output, &mut buffer);
            out.append_value(String::from_utf8_lossy(&buffer));
        }
        let result = Arc::new(out.finish());
        if scalar {
            Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
                result.as_ref(),
                0,
            )?))
        } else {
            Ok(ColumnarValue::Array(result))
        }
    }
}

/// `format(formatstr, args…)`: `%s` (the value as text, NULL as empty),
/// `%I` (a quoted identifier), `%L` (a quoted literal, NULL unquoted) and
/// `%%`. Positions (`%2$s`) and widths are not supported.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Format {
    signature: datafusion::logical_expr::Signature,
}

impl Format {
    fn new() -> Self {
        Self {
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Stable),
        }
    }
}

fn quote_identifier(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Format {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        "format"
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let texts: Vec<ArrayRef> = args
            .args
            .iter()
            .map(|arg| {
                let array = arg.to_array(rows)?;
                Ok(datafusion::arrow::compute::cast(&array, &DataType::Utf8)?)
            })
            .collect::<datafusion::error::Result<_>>()?;
        let Some((template, values)) = texts.split_first() else {
            return Err(DataFusionError::Plan(
                "function format() requires at least one argument".to_string(),
            ));
        };
        let template = template.as_string::<i32>();
        let values: Vec<_> = values.iter().map(|v| v.as_string::<i32>()).collect();
        let mut out = StringBuilder::with_capacity(rows, rows * 32);
        for row in 0..rows {
            if template.is_null(row) {
                out.append_null();
                continue;
            }
            let mut result = String::new();
            let mut next = 0usize;
            let mut chars = template.value(row).chars();
            while let Some(c) = chars.next() {
                if c != '%' {
                    result.push(c);
                    continue;
                }
                let spec = chars.next();
                if spec == Some('%') {
                    result.push('%');
                    continue;
                }
                let value = values.get(next).ok_or_else(|| {
                    DataFusionError::Execution("too few arguments for format()".to_string())
                })?;
                next += 1;
                let text = (!value.is_null(row)).then(|| value.value(row));
                match (spec, text) {
                    (Some('s'), text) => result.push_str(text.unwrap_or("")),
                    (Some('I'), Some(text)) => result.push_str(&quote_identifier(text)),
                    (Some('I'), None) => {
                        return Err(DataFusionError::Execution(
                            "null values cannot be formatted as an SQL identifier".to_string(),
                        ));
                    }
                    (Some('L'), Some(text)) => {
                        result.push('\'');
                        result.push_str(&text.replace('\'', "''"));
                        result.push('\'');
                    }
                    (Some('L'), None) => result.push_str("NULL"),
                    (other, _) => {
                        return Err(DataFusionError::Execution(format!(
                            "unrecognized format() type specifier \"{}\"",
                            other.map(String::from).unwrap_or_default()
                        )));
                    }
                }
            }
            out.append_value(result);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

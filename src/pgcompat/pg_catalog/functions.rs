//! Catalog functions datafusion-pg-catalog does not provide, or provides
//! without knowing featuredb's objects: descriptions, view definitions,
//! function signatures (featuredb has no user functions) and sizes.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::cast::as_int64_array;
use datafusion::error::Result as DFResult;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use super::relations::Relations;

type Describe = dyn Fn(i64) -> Option<String> + Send + Sync;

/// A function of an object id answering text (or, for sizes, bigint);
/// arguments after the first (the catalog name of `obj_description`,
/// `pretty` of `pg_get_viewdef`, a column number, a size's fork) are
/// accepted and do not change the answer.
struct OidText {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    describe: Arc<Describe>,
}

impl std::fmt::Debug for OidText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

impl PartialEq for OidText {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.describe, &other.describe)
    }
}

impl Eq for OidText {}

impl std::hash::Hash for OidText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl OidText {
    /// The id may come as a number or as a quoted literal (`'16384'`,
    /// which PostgreSQL reads as an oid); it is cast when called.
    fn udf(name: &'static str, arguments: usize, describe: Arc<Describe>) -> ScalarUDF {
        let signatures = (1..=arguments).map(TypeSignature::Any).collect();
        ScalarUDF::from(Self {
            name,
            signature: Signature::one_of(signatures, Volatility::Stable),
            returns: DataType::Utf8,
            describe,
        })
    }

    /// Sizes are not tracked per relation yet (Iceberg data files live in
    /// the warehouse directory): NULL, which psql prints as empty.
    fn unknown_size(name: &'static str) -> ScalarUDF {
        let signatures = (1..=2).map(TypeSignature::Any).collect();
        ScalarUDF::from(Self {
            name,
            signature: Signature::one_of(signatures, Volatility::Stable),
            returns: DataType::Int64,
            describe: Arc::new(|_| None),
        })
    }
}

impl ScalarUDFImpl for OidText {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> DFResult<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DFResult<ColumnarValue> {
        let rows = args.number_rows;
        if self.returns != DataType::Utf8 {
            return Ok(ColumnarValue::Scalar(ScalarValue::try_from(&self.returns)?));
        }
        let oids = args.args[0].to_array(rows)?;
        let oids = datafusion::arrow::compute::cast(&oids, &DataType::Int64)?;
        let oids = as_int64_array(&oids)?;
        let texts: StringArray = oids
            .iter()
            .map(|oid| oid.and_then(|oid| (self.describe)(oid)))
            .collect();
        Ok(ColumnarValue::Array(Arc::new(texts)))
    }
}

pub fn register(ctx: &SessionContext, relations: &Relations) {
    let nothing: Arc<Describe> = Arc::new(|_| None);
    let described = relations.clone();
    let description: Arc<Describe> = Arc::new(move |oid| described.description(oid));
    let defined = relations.clone();
    let definition: Arc<Describe> = Arc::new(move |oid| defined.definition(oid));
    for udf in [
        OidText::udf("obj_description", 2, description),
        // featuredb has no column comments or shared-object comments.
        OidText::udf("col_description", 2, nothing.clone()),
        OidText::udf("shobj_description", 2, nothing.clone()),
        OidText::udf("pg_get_viewdef", 2, definition),
        // Only built-in functions exist; psql's \df lists user functions.
        OidText::udf("pg_get_function_result", 1, nothing.clone()),
        OidText::udf("pg_get_function_arguments", 1, nothing.clone()),
        OidText::udf("pg_get_function_identity_arguments", 1, nothing.clone()),
        OidText::udf("pg_get_triggerdef", 2, nothing.clone()),
        OidText::udf("pg_get_indexdef", 3, nothing.clone()),
        OidText::udf("pg_tablespace_location", 1, nothing),
    ] {
        ctx.register_udf(udf);
    }
    for name in [
        "pg_relation_size",
        "pg_table_size",
        "pg_indexes_size",
        "pg_total_relation_size",
        "pg_database_size",
    ] {
        ctx.register_udf(OidText::unknown_size(name));
    }
    ctx.register_udf(pg_size_pretty());
    if let Ok(types) = TYPE_NAMES.as_ref() {
        ctx.register_udf(to_regtype(types.clone()));
    }
}

static TYPE_NAMES: std::sync::LazyLock<DFResult<Arc<TypeNames>>> =
    std::sync::LazyLock::new(|| TypeNames::load().map(Arc::new));

/// Type names to oids, from PostgreSQL's `pg_type` snapshot, with the SQL
/// spellings (`integer`, `character varying`, …) and `[]` for arrays.
struct TypeNames {
    oids: std::collections::HashMap<String, (i32, i32)>,
}

impl TypeNames {
    fn load() -> DFResult<Self> {
        use datafusion::arrow::compute::cast;
        let table = super::schema::static_tables()?.pg_type.clone();
        let mut oids = std::collections::HashMap::new();
        for batch in table.data() {
            let column = |name: &str, to: &DataType| -> DFResult<ArrayRef> {
                let index = batch.schema().index_of(name)?;
                Ok(cast(batch.column(index), to)?)
            };
            let names = column("typname", &DataType::Utf8)?;
            let names = datafusion::common::cast::as_string_array(&names)?;
            let type_oids = column("oid", &DataType::Int64)?;
            let type_oids = as_int64_array(&type_oids)?;
            let arrays = column("typarray", &DataType::Int64)?;
            let arrays = as_int64_array(&arrays)?;
            for ((name, oid), array) in names.iter().zip(type_oids.iter()).zip(arrays.iter()) {
                if let (Some(name), Some(oid)) = (name, oid) {
                    oids.insert(name.to_string(), (oid as i32, array.unwrap_or(0) as i32));
                }
            }
        }
        Ok(Self { oids })
    }

    fn oid(&self, name: &str) -> Option<i32> {
        let name = name.trim().to_ascii_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        if let Some(element) = name.strip_suffix("[]") {
            return self
                .oid(element)
                .and_then(|oid| self.oids.values().find(|(o, _)| *o == oid).map(|(_, a)| *a))
                .filter(|array| *array != 0);
        }
        let canonical = match name {
            "integer" | "int" => "int4",
            "smallint" => "int2",
            "bigint" => "int8",
            "real" => "float4",
            "double precision" => "float8",
            "boolean" => "bool",
            "character varying" => "varchar",
            "character" | "char" => "bpchar",
            "decimal" => "numeric",
            "timestamp without time zone" | "timestamp" => "timestamp",
            "timestamp with time zone" => "timestamptz",
            "time without time zone" => "time",
            "time with time zone" => "timetz",
            other => other,
        };
        self.oids.get(canonical).map(|(oid, _)| *oid)
    }
}

/// `to_regtype(text)`: the type's oid, or NULL when there is no such type.
fn to_regtype(types: Arc<TypeNames>) -> ScalarUDF {
    oid_of_name("to_regtype", move |name| types.oid(name))
}

/// A function from an object's name to its oid (NULL when there is none),
/// as `to_regtype` and `to_regclass` are.
pub(super) fn oid_of_name(
    name: &str,
    lookup: impl Fn(&str) -> Option<i32> + Send + Sync + 'static,
) -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Int32,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| {
            let names = ColumnarValue::values_to_arrays(args)?;
            let names = datafusion::common::cast::as_string_array(&names[0])?;
            let oids: datafusion::arrow::array::Int32Array =
                names.iter().map(|n| n.and_then(&lookup)).collect();
            Ok(ColumnarValue::Array(Arc::new(oids) as ArrayRef))
        }),
    )
}

/// `pg_size_pretty(bigint)`: bytes, kB, MB, GB, TB, PB as PostgreSQL
/// rounds them (half up, switching unit at 10240).
fn pg_size_pretty() -> ScalarUDF {
    datafusion::logical_expr::create_udf(
        "pg_size_pretty",
        vec![DataType::Int64],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| {
            let sizes = ColumnarValue::values_to_arrays(args)?;
            let sizes: &Int64Array = as_int64_array(&sizes[0])?;
            let texts: StringArray = sizes.iter().map(|s| s.map(size_pretty)).collect();
            Ok(ColumnarValue::Array(Arc::new(texts) as ArrayRef))
        }),
    )
}

fn size_pretty(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes.unsigned_abs() < 10 * 1024 {
        return format!("{bytes} bytes");
    }
    let mut size = bytes;
    for (i, unit) in UNITS.iter().enumerate() {
        // Halve first, round, then halve again: PostgreSQL's half-up.
        let half = size / 512;
        let rounded = (half + half.signum()) / 2;
        if rounded.unsigned_abs() < 10 * 1024 || i == UNITS.len() - 1 {
            return format!("{rounded} {unit}");
        }
        size /= 1024;
    }
    unreachable!("the last unit always returns")
}

#[cfg(test)]
mod tests {
    use super::size_pretty;

    #[test]
    fn sizes_print_like_postgres() {
        assert_eq!(size_pretty(0), "0 bytes");
        assert_eq!(size_pretty(10239), "10239 bytes");
        assert_eq!(size_pretty(10240), "10 kB");
        assert_eq!(size_pretty(1_048_576), "1024 kB");
        assert_eq!(size_pretty(10_485_760), "10 MB");
        assert_eq!(size_pretty(123_456_789_012), "115 GB");
    }
}

//! The server's error type: every failure a client can see is one variant
//! here, carrying the context a PostgreSQL user expects in the message.
//! Which SQLSTATE each means is decided in `sqlstate`.

use datafusion::error::DataFusionError;
use featuredb_sql::ParseError;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Parse(#[from] ParseError),

    #[error("relation \"{name}\" does not exist")]
    UndefinedTable {
        name: String,
        /// 1-based character position of the reference in the statement.
        position: Option<usize>,
    },

    /// A feature view or service named where one must exist (42P01, as
    /// for any relation, with the kind in the message).
    #[error("{kind} \"{name}\" does not exist")]
    UndefinedRelation { kind: &'static str, name: String },

    #[error("schema \"{0}\" does not exist")]
    UndefinedSchema(String),

    /// An entity, feature view version or other registry object that does
    /// not exist (42704).
    #[error("{message}")]
    UndefinedObject { message: String },

    /// A registry object that already exists (42710).
    #[error("{message}")]
    DuplicateObject { message: String },

    /// A definition that is invalid: missing key or timestamp column, wrong
    /// type, cycle (42P17 invalid_object_definition).
    #[error("{message}")]
    InvalidDefinition {
        message: String,
        detail: Option<String>,
    },

    /// A window specification the feature store cannot compute (42P20
    /// windowing_error): a sliding window not over the view's key and
    /// event time, or not a fixed interval.
    #[error("{0}")]
    WindowingError(String),

    /// Dropping something others depend on without CASCADE (2BP01).
    #[error("cannot drop {object} because other objects depend on it")]
    DependentObjectsExist { object: String, detail: String },

    #[error("relation \"{0}\" already exists")]
    DuplicateTable(String),

    /// A table definition PostgreSQL would refuse (42P16), e.g. a
    /// temporary table in a permanent schema.
    #[error("{0}")]
    InvalidTableDefinition(String),

    /// A statement for one kind of object naming another (42809), e.g.
    /// `ALTER VIEW` on a table.
    #[error("{0}")]
    WrongObjectType(String),

    #[error("schema \"{0}\" already exists")]
    DuplicateSchema(String),

    #[error("column \"{column}\" of relation \"{table}\" does not exist")]
    UndefinedColumn { table: String, column: String },

    #[error("column \"{0}\" specified more than once")]
    DuplicateColumn(String),

    #[error("cannot drop schema {schema} because other objects depend on it")]
    DependentObjects { schema: String, detail: String },

    #[error(
        "null value in column \"{column}\" of relation \"{table}\" violates not-null constraint"
    )]
    NotNullViolation { table: String, column: String },

    #[error("value too long for type character varying({max_len})")]
    StringTooLong { max_len: u32 },

    #[error("{message}")]
    InvalidTextRepresentation { message: String },

    #[error("{message}")]
    NumericValueOutOfRange { message: String },

    #[error("{message}")]
    InvalidDatetimeFormat { message: String },

    /// A date, time or timestamp outside what can be stored (22008), e.g.
    /// a binary `infinity` timestamp parameter.
    #[error("{0}")]
    DatetimeFieldOverflow(String),

    #[error("{message}")]
    InvalidBinaryRepresentation { message: String },

    /// A bad row in `COPY … FROM STDIN`. Nothing from that COPY is committed.
    #[error("{message}")]
    BadCopyData {
        message: String,
        /// "COPY t, line 3, column b: \"x\"", as PostgreSQL's CONTEXT field.
        context: String,
        kind: BadCopyDataKind,
    },

    #[error("{0}")]
    InvalidParameterValue(String),

    #[error("unrecognized configuration parameter \"{0}\"")]
    UnknownSetting(String),

    #[error("parameter \"{0}\" cannot be changed")]
    ReadOnlySetting(String),

    #[error("canceling statement due to user request")]
    QueryCanceled,

    #[error("canceling statement due to statement timeout")]
    StatementTimeout,

    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    InFailedTransaction,

    /// A savepoint command outside a transaction block (25P01).
    #[error("{0} can only be used in transaction blocks")]
    NoActiveTransaction(&'static str),

    #[error("savepoint \"{0}\" does not exist")]
    UndefinedSavepoint(String),

    #[error("cursor \"{0}\" already exists")]
    DuplicateCursor(String),

    #[error("cursor \"{0}\" does not exist")]
    UndefinedCursor(String),

    #[error("{0}")]
    FeatureNotSupported(String),

    /// A malformed name or path (42602), e.g. a relative COPY file path.
    #[error("{0}")]
    InvalidName(String),

    /// Operands whose types do not fit together (42804), e.g. the two
    /// times of an AS OF join.
    #[error("{0}")]
    DatatypeMismatch(String),

    /// A join condition of the wrong shape, e.g. an ASOF join without its
    /// inequality (42P10 invalid_column_reference is PostgreSQL's nearest;
    /// it uses 42601 for a malformed statement, as here).
    #[error("{0}")]
    InvalidJoinCondition(String),

    #[error("{0}")]
    Protocol(String),

    #[error("prepared statement \"{0}\" does not exist")]
    UndefinedPreparedStatement(String),

    #[error("portal \"{0}\" does not exist")]
    UndefinedPortal(String),

    #[error("{0}")]
    InsufficientResources(String),

    /// Something larger than the server can hold (54000), e.g. an online
    /// row over its size limit.
    #[error("{0}")]
    ProgramLimitExceeded(String),

    #[error(transparent)]
    DataFusion(#[from] DataFusionError),

    #[error("offline store: {0}")]
    Iceberg(#[from] iceberg::Error),

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },

    /// An object is busy or changed under a statement (55006).
    #[error("{0}")]
    ObjectInUse(String),

    /// The online store (redb) failed to read or write.
    #[error("online store: {0}")]
    OnlineStore(String),

    #[error("internal error: {0}")]
    Internal(String),
}

/// Why a COPY row was rejected (they map to different SQLSTATEs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCopyDataKind {
    /// Malformed line: wrong column count, bad quoting (22P04).
    Format,
    /// A value that does not parse as its column's type (22P02).
    Value,
    /// A number too large for its column's type (22003).
    OutOfRange,
    /// A date or time that does not parse (22007).
    DateTime,
    /// A date or time outside what can be stored, e.g. a binary infinity
    /// (22008).
    DateTimeOverflow,
    /// Bytes that are not valid UTF-8 (22021).
    Encoding,
    /// NULL in a NOT NULL column (23502).
    NotNull,
    /// Too long for VARCHAR(n) (22001).
    TooLong,
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Error::Internal(message.into())
    }

    /// Lifts an error that crossed a DataFusion boundary back into its
    /// original variant (our table providers and execution plans return
    /// `Error` wrapped in `DataFusionError::External`).
    pub fn from_datafusion(err: DataFusionError) -> Self {
        match err {
            DataFusionError::External(inner) => match inner.downcast::<Error>() {
                Ok(ours) => *ours,
                Err(other) => Error::DataFusion(DataFusionError::External(other)),
            },
            DataFusionError::Context(context, inner) => match Error::from_datafusion(*inner) {
                Error::DataFusion(inner) => {
                    Error::DataFusion(DataFusionError::Context(context, Box::new(inner)))
                }
                ours => ours,
            },
            DataFusionError::Shared(shared) => match std::sync::Arc::try_unwrap(shared) {
                Ok(inner) => Error::from_datafusion(inner),
                Err(shared) => Error::DataFusion(DataFusionError::Shared(shared)),
            },
            other => Error::DataFusion(other),
        }
    }

    /// Wraps this error for returning through a DataFusion interface.
    pub fn into_datafusion(self) -> DataFusionError {
        match self {
            Error::DataFusion(inner) => inner,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}

impl From<Error> for DataFusionError {
    fn from(err: Error) -> Self {
        err.into_datafusion()
    }
}

impl From<datafusion::arrow::error::ArrowError> for Error {
    fn from(err: datafusion::arrow::error::ArrowError) -> Self {
        Error::DataFusion(DataFusionError::ArrowError(Box::new(err), None))
    }
}

impl From<featuredb_catalog::RegistryError> for Error {
    fn from(err: featuredb_catalog::RegistryError) -> Self {
        Error::Internal(err.to_string())
    }
}

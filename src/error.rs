use std::fmt;

/// MLflow's error codes, spelled as MLflow's `MlflowException.error_code` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    InvalidParameterValue,
    ResourceAlreadyExists,
    ResourceDoesNotExist,
    InvalidState,
    BadRequest,
    InternalError,
    TemporarilyUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameterValue => "INVALID_PARAMETER_VALUE",
            ErrorCode::ResourceAlreadyExists => "RESOURCE_ALREADY_EXISTS",
            ErrorCode::ResourceDoesNotExist => "RESOURCE_DOES_NOT_EXIST",
            ErrorCode::InvalidState => "INVALID_STATE",
            ErrorCode::BadRequest => "BAD_REQUEST",
            ErrorCode::InternalError => "INTERNAL_ERROR",
            ErrorCode::TemporarilyUnavailable => "TEMPORARILY_UNAVAILABLE",
        }
    }
}

/// The one error type of the core. Every variant maps to an MLflow error code, so the
/// Python layer can raise `MlflowException` with the code MLflow would have used.
#[derive(Debug, Clone, PartialEq)]
pub enum Error {
    /// Input MLflow rejects before touching the store.
    InvalidParameter(String),
    AlreadyExists(String),
    NotFound(String),
    InvalidState(String),
    /// What MLflow's store answers when SQLAlchemy refuses a statement (a value SQLite
    /// cannot bind, a NOT NULL column given NaN): MLflow reports it as a bad request.
    BadRequest(String),
    /// SQLite failures. `transient` ones (locked, busy, full disk, I/O) keep queued data
    /// and are retried; the rest point at a bug or a foreign schema.
    Database {
        message: String,
        transient: bool,
    },
    /// The store is not at MLflow 3.17.2's schema revision (`found` is None when it records
    /// none); MLflow refuses to open such a store.
    SchemaVersion {
        found: Option<String>,
        expected: &'static str,
    },
    /// A write to a store on read-only media.
    ReadOnly,
    /// An operating-system error on a file MLflow touches itself (its store's directory),
    /// which MLflow lets through as Python's `OSError` of that errno.
    Os {
        errno: i32,
        path: String,
    },
    /// The writer thread is gone (it panicked or the process is shutting down).
    WriterStopped,
    /// The process that holds the store for us (the Ray funnel actor, a tracking server)
    /// cannot be reached.
    Unavailable(String),
    /// An error a tracking server answered with a code of its own (UNAUTHENTICATED, ...).
    Remote {
        code: String,
        message: String,
    },
    /// The caller was interrupted (Ctrl-C) while waiting for the writer.
    Interrupted,
    /// What MLflow raises as a bare `MlflowException`, whose code is then INTERNAL_ERROR
    /// even for a caller's mistake (an artifact path that is not in normal form).
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The C library's text for `errno`, as Python's `os.strerror` gives it.
pub fn strerror(errno: i32) -> String {
    let text = std::io::Error::from_raw_os_error(errno).to_string();
    match text.rfind(" (os error") {
        Some(end) => text[..end].to_string(),
        None => text,
    }
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidParameter(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    /// An `MlflowException` of `code`.
    pub fn with_code(code: ErrorCode, message: String) -> Self {
        match code {
            ErrorCode::InvalidParameterValue => Error::InvalidParameter(message),
            ErrorCode::ResourceAlreadyExists => Error::AlreadyExists(message),
            ErrorCode::ResourceDoesNotExist => Error::NotFound(message),
            ErrorCode::InvalidState => Error::InvalidState(message),
            ErrorCode::InternalError => Error::Internal(message),
            ErrorCode::BadRequest => Error::BadRequest(message),
            other => Error::Remote {
                code: other.as_str().to_string(),
                message,
            },
        }
    }

    pub fn os(err: &std::io::Error, path: &std::path::Path) -> Self {
        match err.raw_os_error() {
            Some(errno) => Error::Os {
                errno,
                path: path.to_string_lossy().into_owned(),
            },
            None => Error::Database {
                message: format!("{err}: '{}'", path.display()),
                transient: false,
            },
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            Error::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            Error::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            Error::InvalidState(_) => ErrorCode::InvalidState,
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::ReadOnly => ErrorCode::TemporarilyUnavailable,
            Error::Database { .. }
            | Error::SchemaVersion { .. }
            | Error::Os { .. }
            | Error::WriterStopped
            | Error::Unavailable(_)
            | Error::Remote { .. }
            | Error::Interrupted
            | Error::Internal(_) => ErrorCode::InternalError,
        }
    }

    /// The error another process reported as MLflow's code and message.
    pub fn from_code(code: &str, message: String) -> Self {
        match code {
            "INVALID_PARAMETER_VALUE" => Error::InvalidParameter(message),
            "RESOURCE_ALREADY_EXISTS" => Error::AlreadyExists(message),
            "RESOURCE_DOES_NOT_EXIST" => Error::NotFound(message),
            "INVALID_STATE" => Error::InvalidState(message),
            "BAD_REQUEST" => Error::BadRequest(message),
            "INTERNAL_ERROR" | "" => Error::Unavailable(message),
            other => Error::Remote {
                code: other.to_string(),
                message,
            },
        }
    }

    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Database {
                transient: true,
                ..
            }
        )
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidParameter(m)
            | Error::AlreadyExists(m)
            | Error::NotFound(m)
            | Error::InvalidState(m)
            | Error::BadRequest(m)
            | Error::Unavailable(m)
            | Error::Internal(m)
            | Error::Remote { message: m, .. } => f.write_str(m),
            Error::Database { message, .. } => write!(f, "fastflow store error: {message}"),
            Error::SchemaVersion { found, expected } => write!(
                f,
                "Detected out-of-date database schema (found version {}, but expected \
                 {expected}). Take a backup of your database, then run 'mlflow db upgrade \
                 <database_uri>' to migrate your database to the latest schema. NOTE: schema \
                 migration may result in database downtime - please consult your database's \
                 documentation for more detail.",
                found.as_deref().unwrap_or("None")
            ),
            // MLflow's message is SQLAlchemy's, which starts with the driver's error.
            Error::ReadOnly => {
                f.write_str("(sqlite3.OperationalError) attempt to write a readonly database")
            }
            Error::Os { errno, path } => {
                write!(f, "[Errno {errno}] {}: '{path}'", strerror(*errno))
            }
            Error::WriterStopped => f.write_str("fastflow's background writer has stopped"),
            Error::Interrupted => f.write_str("interrupted while waiting for the fastflow writer"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        if err.sqlite_error_code() == Some(C::ReadOnly) {
            return Error::ReadOnly;
        }
        let transient = match &err {
            rusqlite::Error::SqliteFailure(e, _) => matches!(
                e.code,
                C::DatabaseBusy
                    | C::DatabaseLocked
                    | C::DiskFull
                    | C::SystemIoFailure
                    | C::CannotOpen
                    | C::OutOfMemory
                    | C::FileLockingProtocolFailed
            ),
            _ => false,
        };
        Error::Database {
            message: err.to_string(),
            transient,
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::Database {
            message: err.to_string(),
            transient: true,
        }
    }
}

/// Between the groups of a set of valid choices in a message (see `filter.rs`), for the
/// mapping to Python exceptions, which builds the set as MLflow does and removes it.
pub const SET_GROUP_SEPARATOR: char = '\u{1f}';

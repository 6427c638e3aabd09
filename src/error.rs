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
    /// SQLite failures. `transient` ones (locked, busy, full disk, I/O) keep queued data
    /// and are retried; the rest point at a bug or a foreign schema.
    Database {
        message: String,
        transient: bool,
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
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn invalid(message: impl Into<String>) -> Self {
        Error::InvalidParameter(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound(message.into())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Error::InvalidParameter(_) => ErrorCode::InvalidParameterValue,
            Error::AlreadyExists(_) => ErrorCode::ResourceAlreadyExists,
            Error::NotFound(_) => ErrorCode::ResourceDoesNotExist,
            Error::InvalidState(_) => ErrorCode::InvalidState,
            Error::Database { .. }
            | Error::WriterStopped
            | Error::Unavailable(_)
            | Error::Remote { .. }
            | Error::Interrupted => ErrorCode::InternalError,
        }
    }

    /// The error another process reported as MLflow's code and message.
    pub fn from_code(code: &str, message: String) -> Self {
        match code {
            "INVALID_PARAMETER_VALUE" => Error::InvalidParameter(message),
            "RESOURCE_ALREADY_EXISTS" => Error::AlreadyExists(message),
            "RESOURCE_DOES_NOT_EXIST" => Error::NotFound(message),
            "INVALID_STATE" => Error::InvalidState(message),
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
            | Error::Unavailable(m)
            | Error::Remote { message: m, .. } => f.write_str(m),
            Error::Database { message, .. } => write!(f, "fastflow store error: {message}"),
            Error::WriterStopped => f.write_str("fastflow's background writer has stopped"),
            Error::Interrupted => f.write_str("interrupted while waiting for the fastflow writer"),
        }
    }
}

impl std::error::Error for Error {}

impl From<rusqlite::Error> for Error {
    fn from(err: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
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

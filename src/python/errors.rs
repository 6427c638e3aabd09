//! The one place where core errors become Python exceptions.

use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyType};

use crate::error::Error;

static MLFLOW_EXCEPTION: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `fastflow.exceptions.MlflowException(message, error_code=...)`, MLflow's shape.
pub fn mlflow_exception(py: Python<'_>, message: &str, error_code: &str) -> PyErr {
    let built = (|| -> PyResult<PyErr> {
        let class = MLFLOW_EXCEPTION.import(py, "fastflow.exceptions", "MlflowException")?;
        let kwargs = PyDict::new(py);
        kwargs.set_item("error_code", error_code)?;
        Ok(PyErr::from_value(class.call((message,), Some(&kwargs))?))
    })();
    built.unwrap_or_else(|err| err)
}

pub fn to_pyerr(py: Python<'_>, error: Error) -> PyErr {
    match error {
        Error::Interrupted => PyKeyboardInterrupt::new_err(()),
        Error::Remote { code, message } => mlflow_exception(py, &message, &code),
        // OSError(errno, strerror, filename) picks the subclass (NotADirectoryError, ...)
        // from the errno, as the failing os call would have in MLflow.
        Error::Os { errno, path } => {
            PyOSError::new_err((errno, crate::error::strerror(errno), path))
        }
        other => mlflow_exception(py, &other.to_string(), other.code().as_str()),
    }
}

pub trait IntoPyResult<T> {
    fn into_py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for crate::Result<T> {
    fn into_py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_pyerr(py, e))
    }
}

/// Raises the write failure the writer reported since the last call, if any: MLflow users
/// hear about it from their next call.
pub fn raise_pending(py: Python<'_>, engine: &crate::writer::Engine) -> PyResult<()> {
    match engine.shared.take_error() {
        Some(error) => Err(to_pyerr(py, error)),
        None => Ok(()),
    }
}

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
        other => {
            let message = in_python_set_order(py, other.to_string());
            mlflow_exception(py, &message, other.code().as_str())
        }
    }
}

/// MLflow prints some of its valid choices as a Python set, whose order follows the hashes
/// of its strings (randomised per process by `PYTHONHASHSEED`) and the order they went in.
/// The core lists them as MLflow's source builds them; the same set built here prints in
/// the order MLflow's would in this process. A set literal of constants is compiled into a
/// frozenset (stored in marshal order: length, then bytes) that the new set is filled
/// from; the core lists those in that order.
fn in_python_set_order(py: Python<'_>, message: String) -> String {
    const AFTER: [&str; 2] = ["not one of '{'", "Valid keys are '{'"];
    let Some(start) = AFTER
        .iter()
        .find_map(|prefix| message.find(prefix).map(|at| at + prefix.len() - 2))
    else {
        return message;
    };
    let Some(length) = message[start..].find("'}") else {
        return message;
    };
    let listed = &message[start + 2..start + length];
    let built = (|| -> PyResult<Vec<String>> {
        let separator = format!("', {}'", crate::error::SET_GROUP_SEPARATOR);
        if listed.contains(&separator) {
            // set(first + list(second) + ...): the later groups are small set literals.
            let mut groups = listed.split(&separator);
            let mut items: Vec<String> = groups
                .next()
                .unwrap_or_default()
                .split("', '")
                .map(str::to_string)
                .collect();
            for group in groups {
                let literal = pyo3::types::PySet::new(py, group.split("', '"))?;
                for item in literal.iter() {
                    items.push(item.extract::<String>()?);
                }
            }
            let set = pyo3::types::PySet::new(py, &items)?;
            return set.iter().map(|item| item.extract::<String>()).collect();
        }
        let items: Vec<&str> = listed.split("', '").collect();
        let set = if items.is_sorted_by_key(|item| (item.len(), *item)) {
            // set(frozenset) presizes and copies, which orders differently from adding.
            let frozen = pyo3::types::PyFrozenSet::new(py, &items)?;
            py.get_type::<pyo3::types::PySet>()
                .call1((frozen,))?
                .cast_into::<pyo3::types::PySet>()?
        } else {
            pyo3::types::PySet::new(py, &items)?
        };
        set.iter().map(|item| item.extract::<String>()).collect()
    })();
    let Ok(ordered) = built else {
        return message;
    };
    let listed: Vec<String> = ordered.iter().map(|item| format!("'{item}'")).collect();
    format!(
        "{}{{{}}}{}",
        &message[..start],
        listed.join(", "),
        &message[start + length + 2..]
    )
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

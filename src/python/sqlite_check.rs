//! Glue for `sqlite_library`: finds Python's `_sqlite3` and reports the choice once.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;

use crate::sqlite_library::{self, Choice, PythonSqlite};

static WARNED: AtomicBool = AtomicBool::new(false);

/// Where Python's `_sqlite3` is, found without importing it (`import fastflow` and the
/// first store open stay as cheap as they were).
fn python_sqlite(py: Python<'_>) -> PyResult<PythonSqlite> {
    let spec = py
        .import("importlib.util")?
        .call_method1("find_spec", ("_sqlite3",))?;
    if spec.is_none() {
        return Ok(PythonSqlite::Absent);
    }
    let origin = spec.getattr("origin")?;
    let origin: Option<String> = origin.extract().ok();
    Ok(match origin {
        Some(path) if std::path::Path::new(&path).is_file() => {
            PythonSqlite::Extension(PathBuf::from(path))
        }
        _ => PythonSqlite::BuiltIn,
    })
}

/// Runs the check before the first store opens, and logs its warning the first time.
pub fn ensure_checked(py: Python<'_>) -> PyResult<&'static Choice> {
    if let Some(choice) = sqlite_library::chosen() {
        return Ok(choice);
    }
    // The check only advises: an import system that cannot answer must not stop the store.
    let python = python_sqlite(py).unwrap_or(PythonSqlite::Absent);
    let choice = py.detach(move || sqlite_library::choose(&python));
    if let Some(warning) = choice.warning() {
        if !WARNED.swap(true, Ordering::AcqRel) {
            py.import("logging")?
                .call_method1("getLogger", ("fastflow",))?
                .call_method1("warning", (warning,))?;
        }
    }
    Ok(choice)
}

/// `(verdict, (our file, our version), (Python's file, version) or None, safe mode)`:
/// which SQLite fastflow and Python's `sqlite3` run, as checked at the first store open.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn _sqlite_library(
    py: Python<'_>,
) -> PyResult<(
    &'static str,
    (String, String),
    Option<(String, String)>,
    bool,
)> {
    let choice = ensure_checked(py)?;
    let libraries = &choice.libraries;
    Ok((
        libraries.verdict.as_str(),
        (libraries.ours.file.clone(), libraries.ours.version.clone()),
        libraries
            .python
            .as_ref()
            .map(|l| (l.file.clone(), l.version.clone())),
        choice.safe_mode,
    ))
}

//! Artifact transfers for the Python layer: URIs and paths in, work done without the GIL.

use std::path::PathBuf;

use pyo3::prelude::*;

use super::errors::IntoPyResult;
use crate::artifacts::{self, Repository};

type FileInfoTuple = (String, bool, Option<u64>);

#[pyfunction]
#[pyo3(signature = (artifact_uri, local_path, artifact_path=None, tracking_uri=None))]
pub fn _log_artifact(
    py: Python<'_>,
    artifact_uri: String,
    local_path: PathBuf,
    artifact_path: Option<String>,
    tracking_uri: Option<String>,
) -> PyResult<()> {
    py.detach(move || {
        Repository::open(&artifact_uri, tracking_uri.as_deref())?
            .log_file(&local_path, artifact_path.as_deref())
    })
    .into_py(py)
}

#[pyfunction]
#[pyo3(signature = (artifact_uri, local_dir, artifact_path=None, tracking_uri=None))]
pub fn _log_artifacts(
    py: Python<'_>,
    artifact_uri: String,
    local_dir: PathBuf,
    artifact_path: Option<String>,
    tracking_uri: Option<String>,
) -> PyResult<()> {
    py.detach(move || {
        Repository::open(&artifact_uri, tracking_uri.as_deref())?
            .log_dir(&local_dir, artifact_path.as_deref())
    })
    .into_py(py)
}

#[pyfunction]
#[pyo3(signature = (artifact_uri, path=None, tracking_uri=None))]
pub fn _list_artifacts(
    py: Python<'_>,
    artifact_uri: String,
    path: Option<String>,
    tracking_uri: Option<String>,
) -> PyResult<Vec<FileInfoTuple>> {
    let found = py
        .detach(move || {
            Repository::open(&artifact_uri, tracking_uri.as_deref())?.list(path.as_deref())
        })
        .into_py(py)?;
    Ok(found
        .into_iter()
        .map(|f| (f.path, f.is_dir, f.file_size))
        .collect())
}

#[pyfunction]
#[pyo3(signature = (artifact_uri, path, dst_path, tracking_uri=None))]
pub fn _download_artifacts(
    py: Python<'_>,
    artifact_uri: String,
    path: Option<String>,
    dst_path: PathBuf,
    tracking_uri: Option<String>,
) -> PyResult<String> {
    py.detach(move || {
        Repository::open(&artifact_uri, tracking_uri.as_deref())?
            .download(path.as_deref(), &dst_path)
    })
    .into_py(py)
    .map(|p| p.to_string_lossy().into_owned())
}

#[pyfunction]
#[pyo3(signature = (path=None))]
pub fn _check_artifact_path(py: Python<'_>, path: Option<&str>) -> PyResult<()> {
    artifacts::check_artifact_path(path).into_py(py)
}

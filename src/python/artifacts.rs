//! Artifact transfers for the Python layer: URIs and paths in, the work done on a thread of
//! its own while the caller, without the GIL, stays interruptible.

use std::path::PathBuf;
use std::time::Duration;

use crossbeam_channel::RecvTimeoutError;
use pyo3::prelude::*;

use super::errors::{to_pyerr, IntoPyResult};
use crate::artifacts::{Cancel, Repository};
use crate::error::{Error, Result};

type FileInfoTuple = (String, bool, Option<u64>);

/// Runs `work` on the repository behind `artifact_uri` on a thread of its own and waits for
/// it without the GIL, checking for Ctrl-C: an interrupt cancels the transfer (it stops
/// within one buffer and leaves no partial file) and is raised as it came.
fn transfer<T: Send + 'static>(
    py: Python<'_>,
    artifact_uri: String,
    tracking_uri: Option<String>,
    work: impl FnOnce(Repository) -> Result<T> + Send + 'static,
) -> PyResult<T> {
    let cancel = Cancel::default();
    let (done, result) = crossbeam_channel::bounded(1);
    let worker_cancel = cancel.clone();
    std::thread::Builder::new()
        .name("fastflow-artifacts".into())
        .spawn(move || {
            let outcome = Repository::open(&artifact_uri, tracking_uri.as_deref())
                .and_then(|repository| work(repository.with_cancel(worker_cancel)));
            let _ = done.send(outcome);
        })
        .map_err(|e| to_pyerr(py, Error::InvalidState(format!("Could not start: {e}"))))?;
    let mut interrupt = None;
    let outcome = py.detach(|| loop {
        match result.recv_timeout(Duration::from_millis(100)) {
            Ok(outcome) => return outcome,
            Err(RecvTimeoutError::Timeout) if interrupt.is_none() => {
                if let Err(err) = Python::attach(|py| py.check_signals()) {
                    interrupt = Some(err);
                    cancel.cancel();
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Err(Error::InvalidState(
                    "the artifact transfer stopped without an answer".into(),
                ))
            }
        }
    });
    match interrupt {
        Some(err) => Err(err),
        None => outcome.into_py(py),
    }
}

#[pyfunction]
#[pyo3(signature = (artifact_uri, local_path, artifact_path=None, tracking_uri=None))]
pub fn _log_artifact(
    py: Python<'_>,
    artifact_uri: String,
    local_path: PathBuf,
    artifact_path: Option<String>,
    tracking_uri: Option<String>,
) -> PyResult<()> {
    transfer(py, artifact_uri, tracking_uri, move |repository| {
        repository.log_file(&local_path, artifact_path.as_deref())
    })
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
    transfer(py, artifact_uri, tracking_uri, move |repository| {
        repository.log_dir(&local_dir, artifact_path.as_deref())
    })
}

#[pyfunction]
#[pyo3(signature = (artifact_uri, path=None, tracking_uri=None))]
pub fn _list_artifacts(
    py: Python<'_>,
    artifact_uri: String,
    path: Option<String>,
    tracking_uri: Option<String>,
) -> PyResult<Vec<FileInfoTuple>> {
    let found = transfer(py, artifact_uri, tracking_uri, move |repository| {
        repository.list(path.as_deref())
    })?;
    Ok(found
        .into_iter()
        .map(|f| (f.path, f.is_dir, f.file_size))
        .collect())
}

/// Copies `path` of the repository at `artifact_uri` into the existing directory
/// `dst_path` and returns where it landed.
#[pyfunction]
#[pyo3(signature = (artifact_uri, path, dst_path, tracking_uri=None))]
pub fn _download_artifacts(
    py: Python<'_>,
    artifact_uri: String,
    path: Option<String>,
    dst_path: PathBuf,
    tracking_uri: Option<String>,
) -> PyResult<String> {
    transfer(py, artifact_uri, tracking_uri, move |repository| {
        repository.download(path.as_deref(), &dst_path)
    })
    .map(|p| p.to_string_lossy().into_owned())
}

/// Where `path` of a local repository is, without copying it; None for a remote one.
#[pyfunction]
#[pyo3(signature = (artifact_uri, path, tracking_uri=None))]
pub fn _local_artifact_path(
    py: Python<'_>,
    artifact_uri: &str,
    path: &str,
    tracking_uri: Option<&str>,
) -> PyResult<Option<String>> {
    let repository = Repository::open(artifact_uri, tracking_uri).into_py(py)?;
    let found = repository.local_path(path).into_py(py)?;
    Ok(found.map(|p| p.to_string_lossy().into_owned()))
}

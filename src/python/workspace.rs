//! Registering what a `databricks` tracking URI stands for, resolved by the Python layer.

use pyo3::prelude::*;

use super::errors::IntoPyResult;
use crate::error::Error;
use crate::workspace::{self, Workspace};

/// Makes `uri` reach `host` with a token, or with a username and password.
#[pyfunction]
#[pyo3(signature = (uri, host, *, token=None, username=None, password=None, insecure=false))]
pub fn _register_workspace(
    py: Python<'_>,
    uri: &str,
    host: &str,
    token: Option<&str>,
    username: Option<&str>,
    password: Option<&str>,
    insecure: bool,
) -> PyResult<()> {
    let found = match (token, username, password) {
        (Some(token), _, _) => Workspace::with_token(host, token, insecure),
        (None, Some(username), Some(password)) => {
            Workspace::with_password(host, username, password, insecure)
        }
        _ => {
            return Err(Error::invalid(format!(
                "The Databricks workspace of '{uri}' needs a token, or a username and password"
            )))
            .into_py(py)
        }
    };
    workspace::register(uri, found);
    Ok(())
}

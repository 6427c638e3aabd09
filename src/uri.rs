//! Tracking URIs: SQLite files, and server URIs as they may be shown.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// The database file of a `sqlite:///relative.db` or `sqlite:////absolute.db` URI, made
/// absolute against the current directory as MLflow does.
pub fn sqlite_path(uri: &str) -> Result<PathBuf> {
    let Some(rest) = uri.strip_prefix("sqlite://") else {
        return Err(Error::invalid(format!(
            "fastflow stores runs in SQLite: expected a tracking URI of the form \
             'sqlite:///path/to/mlflow.db', got '{uri}'"
        )));
    };
    let rest = rest.split('?').next().unwrap_or_default();
    let path = rest.strip_prefix('/').unwrap_or(rest);
    if path.is_empty() || path == ":memory:" {
        return Err(Error::invalid(format!(
            "fastflow needs a database file in the tracking URI, got '{uri}'"
        )));
    }
    let path = PathBuf::from(path);
    if path.is_absolute() {
        return Ok(path);
    }
    Ok(std::env::current_dir()?.join(path))
}

/// `uri` with any `user:password@` removed, for messages and reprs.
pub fn redacted(uri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once("://") else {
        return uri.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => uri.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_and_absolute() {
        assert_eq!(
            sqlite_path("sqlite:////tmp/x.db").unwrap(),
            PathBuf::from("/tmp/x.db")
        );
        let rel = sqlite_path("sqlite:///mlflow.db").unwrap();
        assert!(rel.is_absolute() && rel.ends_with("mlflow.db"));
        assert!(sqlite_path("file:///tmp").is_err());
        assert!(sqlite_path("sqlite://").is_err());
    }

    #[test]
    fn credentials_in_uris_are_hidden() {
        assert_eq!(
            redacted("https://ana:pw@host:5000/prefix"),
            "https://***@host:5000/prefix"
        );
        assert_eq!(redacted("http://host/a@b"), "http://host/a@b");
        assert_eq!(redacted("sqlite:///x.db"), "sqlite:///x.db");
    }
}

//! Databricks workspaces named by `databricks` and `databricks://<profile>` tracking URIs.
//!
//! A workspace serves MLflow's REST API, so fastflow's REST store talks to it as to any
//! tracking server. Which host and credentials a URI stands for is decided where MLflow's
//! rules can be followed exactly (environment variables, `~/.databrickscfg`, a Ray driver's
//! context) and registered here before the first request; the REST client looks them up.
//! The credentials live in the `Authorization` header only: nothing here can print them.

use std::collections::HashMap;
use std::sync::LazyLock;

use base64::Engine as _;
use parking_lot::RwLock;

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Workspace {
    /// `https://host[/prefix]`, without a trailing slash.
    pub host: String,
    pub authorization: String,
    pub insecure: bool,
}

impl Workspace {
    /// A personal access token (or any bearer token).
    pub fn with_token(host: &str, token: &str, insecure: bool) -> Workspace {
        Workspace {
            host: normalized_host(host),
            authorization: format!("Bearer {token}"),
            insecure,
        }
    }

    pub fn with_password(host: &str, username: &str, password: &str, insecure: bool) -> Workspace {
        let pair =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        Workspace {
            host: normalized_host(host),
            authorization: format!("Basic {pair}"),
            insecure,
        }
    }
}

/// As Databricks' tools read a host: `https://` unless a scheme is given.
fn normalized_host(host: &str) -> String {
    let host = host.trim().trim_end_matches('/');
    let lower = host.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") {
        host.to_string()
    } else {
        format!("https://{host}")
    }
}

/// Whether `uri` names a workspace (`databricks` or `databricks://<profile>`); Unity
/// Catalog's `databricks-uc` is a registry URI, not this.
pub fn is_workspace_uri(uri: &str) -> bool {
    let scheme = uri.split_once(':').map_or(uri, |(scheme, _)| scheme);
    scheme.eq_ignore_ascii_case("databricks")
}

static WORKSPACES: LazyLock<RwLock<HashMap<String, Workspace>>> =
    LazyLock::new(|| RwLock::new(HashMap::new()));

/// Remembers what `uri` stands for; a later registration (credentials that changed)
/// replaces it for clients made after it.
pub fn register(uri: &str, workspace: Workspace) {
    WORKSPACES.write().insert(uri.to_string(), workspace);
}

/// What `uri` was registered as.
pub fn lookup(uri: &str) -> Result<Workspace> {
    WORKSPACES.read().get(uri).cloned().ok_or_else(|| {
        Error::invalid(format!(
            "No Databricks host and credentials are known for the tracking URI '{uri}'"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_get_a_scheme_and_lose_the_trailing_slash() {
        assert_eq!(
            Workspace::with_token("adb-1.azuredatabricks.net/", "t", false).host,
            "https://adb-1.azuredatabricks.net"
        );
        assert_eq!(
            Workspace::with_token("http://127.0.0.1:8080", "t", false).host,
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn credentials_become_a_header() {
        assert_eq!(
            Workspace::with_token("h", "dapi123", false).authorization,
            "Bearer dapi123"
        );
        assert_eq!(
            Workspace::with_password("h", "ana", "pw", false).authorization,
            "Basic YW5hOnB3"
        );
    }

    #[test]
    fn only_databricks_uris_name_workspaces() {
        assert!(is_workspace_uri("databricks"));
        assert!(is_workspace_uri("databricks://prod"));
        assert!(!is_workspace_uri("databricks-uc"));
        assert!(!is_workspace_uri("http://databricks"));
        register(
            "databricks://unit-test",
            Workspace::with_token("h", "t", false),
        );
        assert_eq!(lookup("databricks://unit-test").unwrap().host, "https://h");
        assert!(lookup("databricks://never").is_err());
    }
}

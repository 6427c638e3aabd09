//! Artifacts through a tracking server's artifact proxy (`mlflow server
//! --serve-artifacts`): `PUT`, `GET` and listing under `/api/2.0/mlflow-artifacts/artifacts`,
//! files streamed from and to disk with the tracking client's auth, TLS and retries.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use super::{check_artifact_path, io_error, write_atomically, Cancel, FileInfo};
use crate::error::{Error, Result};
use crate::rest::{Client, Payload};

const SERVICE: &str = "api/2.0/mlflow-artifacts/artifacts";

pub struct Proxy {
    client: Client,
    /// The run's artifact root under the proxy's root, without slashes at either end.
    root: String,
}

impl Proxy {
    /// `mlflow-artifacts:/path` or `mlflow-artifacts://host:port/path` (what follows the
    /// scheme in `rest`): the server is the tracking server, or the named host reached the
    /// way the tracking URI says (scheme and path prefix).
    pub fn for_scheme(rest: &str, tracking_uri: Option<&str>) -> Result<Proxy> {
        let tracking = tracking_uri
            .filter(|uri| uri.starts_with("http://") || uri.starts_with("https://"))
            .ok_or_else(|| {
                Error::invalid(format!(
                    "When an mlflow-artifacts URI was supplied, the tracking URI must be a \
                     valid http or https URI, but it was currently set to {}. Perhaps you \
                     forgot to set the tracking URI to the running MLflow server.",
                    tracking_uri
                        .map(crate::uri::redacted)
                        .unwrap_or_else(|| "nothing".into())
                ))
            })?;
        let (scheme, after_scheme) = tracking.split_once("://").unwrap_or(("http", tracking));
        let (tracking_host, tracking_prefix) = match after_scheme.find('/') {
            Some(i) => after_scheme.split_at(i),
            None => (after_scheme, ""),
        };
        let (host, path) = match rest.strip_prefix("//") {
            Some(named) => match named.find('/') {
                Some(i) => named.split_at(i),
                None => (named, ""),
            },
            None => ("", rest),
        };
        let host = if host.is_empty() { tracking_host } else { host };
        let base = format!("{scheme}://{host}{}", tracking_prefix.trim_end_matches('/'));
        Ok(Proxy {
            client: Client::new(&base)?,
            root: path.trim_matches('/').to_string(),
        })
    }

    /// The proxy's own URL: `http(s)://host[/prefix]/api/2.0/mlflow-artifacts/artifacts/...`.
    pub fn for_url(url: &str) -> Result<Proxy> {
        let marker = format!("/{SERVICE}");
        let (base, root) = url.split_once(&marker).ok_or_else(|| {
            Error::invalid(format!(
                "'{}' is not an artifact URL of an MLflow tracking server",
                crate::uri::redacted(url)
            ))
        })?;
        Ok(Proxy {
            client: Client::new(base)?,
            root: root.trim_matches('/').to_string(),
        })
    }

    /// The run-root-relative `path` as a path under the proxy's root.
    fn full_path(&self, path: Option<&str>) -> String {
        match (self.root.as_str(), path.filter(|p| !p.is_empty())) {
            ("", None) => String::new(),
            ("", Some(path)) => path.to_string(),
            (root, None) => root.to_string(),
            (root, Some(path)) => format!("{root}/{path}"),
        }
    }

    fn file_url(&self, path: &str) -> String {
        self.client.url(&format!(
            "{SERVICE}/{}",
            encode_path(&self.full_path(Some(path)))
        ))
    }

    fn retries(&self) -> u32 {
        self.client.settings.max_retries
    }

    pub(super) fn log_file(
        &self,
        local: &Path,
        artifact_path: Option<&str>,
        cancel: &Cancel,
    ) -> Result<()> {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let path = match artifact_path.filter(|p| !p.is_empty()) {
            Some(dir) => format!("{dir}/{name}"),
            None => name,
        };
        let url = self.file_url(&path);
        let open = || -> Result<(Box<dyn io::Read + Send>, u64)> {
            let file = fs::File::open(local).map_err(|e| io_error("read", local, e))?;
            let length = file
                .metadata()
                .map_err(|e| io_error("read", local, e))?
                .len();
            let reader = io::BufReader::with_capacity(super::BUFFER, file);
            Ok((Box::new(cancel.reader(reader)), length))
        };
        let payload = Payload::Stream {
            open: &open,
            content_type: mime_type(local),
        };
        self.client
            .send(&url, &[], &payload, self.retries(), None)
            .map(drop)
            .map_err(|error| cancel.explain(error))
    }

    pub(super) fn log_dir(
        &self,
        local: &Path,
        artifact_path: Option<&str>,
        cancel: &Cancel,
    ) -> Result<()> {
        let entries = fs::read_dir(local).map_err(|e| io_error("read", local, e))?;
        let mut entries: Vec<_> = entries
            .collect::<io::Result<_>>()
            .map_err(|e| io_error("read", local, e))?;
        entries.sort_by_key(|entry| entry.file_name());
        for entry in entries {
            let from = entry.path();
            if from.is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let below = match artifact_path.filter(|p| !p.is_empty()) {
                    Some(dir) => format!("{dir}/{name}"),
                    None => name,
                };
                self.log_dir(&from, Some(&below), cancel)?;
            } else {
                self.log_file(&from, artifact_path, cancel)?;
            }
        }
        Ok(())
    }

    pub(super) fn list(&self, path: Option<&str>) -> Result<Vec<FileInfo>> {
        let url = self.client.url(SERVICE);
        let query = [("path", self.full_path(path))];
        let mut response =
            self.client
                .send(&url, &query, &Payload::Nothing, self.retries(), None)?;
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Error::Unavailable(format!("Could not read an artifact listing: {e}")))?;
        let answer: Json = serde_json::from_str(&text).unwrap_or(Json::Null);
        let prefix = path.filter(|p| !p.is_empty());
        let mut found = Vec::new();
        for file in answer
            .get("files")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
        {
            let name = file.get("path").and_then(Json::as_str).unwrap_or_default();
            // A server's answer is not trusted to stay inside the run's artifacts.
            check_artifact_path(Some(name))?;
            if name.is_empty() {
                continue;
            }
            let file_size = file.get("file_size").and_then(|size| match size {
                Json::String(s) => s.parse().ok(),
                other => other.as_u64(),
            });
            found.push(FileInfo {
                path: match prefix {
                    Some(prefix) => format!("{prefix}/{name}"),
                    None => name.to_string(),
                },
                is_dir: file.get("is_dir").and_then(Json::as_bool).unwrap_or(false),
                file_size,
            });
        }
        // Listing a file answers with that file; MLflow's client reports no entries then.
        if let (Some(path), [only]) = (prefix, found.as_slice()) {
            let basename = path.rsplit('/').next().unwrap_or(path);
            if !only.is_dir && only.path == format!("{path}/{basename}") {
                return Ok(Vec::new());
            }
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    pub(super) fn download(
        &self,
        path: Option<&str>,
        landed: &Path,
        cancel: &Cancel,
    ) -> Result<()> {
        let entries = self.list(path)?;
        if entries.is_empty() {
            return match path.filter(|p| !p.is_empty()) {
                Some(path) => self.download_file(path, landed, cancel),
                None => super::create_dir(landed),
            };
        }
        let prefix_len = path.filter(|p| !p.is_empty()).map_or(0, |p| p.len() + 1);
        for entry in entries {
            let target: PathBuf = landed.join(&entry.path[prefix_len..]);
            if entry.is_dir {
                self.download(Some(&entry.path), &target, cancel)?;
            } else {
                self.download_file(&entry.path, &target, cancel)?;
            }
        }
        Ok(())
    }

    fn download_file(&self, path: &str, target: &Path, cancel: &Cancel) -> Result<()> {
        let url = self.file_url(path);
        let response = self
            .client
            .send(&url, &[], &Payload::Nothing, self.retries(), None)
            .map_err(|error| match error {
                Error::Remote { .. } | Error::NotFound(_) => Error::not_found(format!(
                    "No artifact at '{path}' in the run's artifacts: {error}"
                )),
                other => other,
            })?;
        let mut body = cancel.reader(response.into_body().into_reader());
        write_atomically(target, |output, temporary| {
            let mut writer = io::BufWriter::with_capacity(super::BUFFER, output);
            io::copy(&mut body, &mut writer)
                .and_then(|_| io::Write::flush(&mut writer))
                .map_err(|e| cancel.explain(io_error("download into", temporary, e)))
        })
    }
}

/// The content type MLflow's client sends for an uploaded file, by extension.
fn mime_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "txt" | "log" | "py" | "md" | "yaml" | "yml" | "mlmodel" => "text/plain",
        "json" => "application/json",
        "csv" => "text/csv",
        "html" | "htm" => "text/html",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "svg" => "image/svg+xml",
        "pdf" => "application/pdf",
        _ => "application/octet-stream",
    }
}

/// Percent-encodes a path for a URL, keeping its slashes and RFC 3986's unreserved bytes.
fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for byte in path.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_resolve_as_mlflow_resolves_them() {
        let proxy =
            Proxy::for_scheme("/0/abc/artifacts", Some("https://host:5000/mlflow/")).unwrap();
        assert_eq!(proxy.root, "0/abc/artifacts");
        assert_eq!(
            proxy.file_url("a b/c+d.png"),
            "https://host:5000/mlflow/api/2.0/mlflow-artifacts/artifacts/0/abc/artifacts/a%20b/c%2Bd.png"
        );
        let named = Proxy::for_scheme("//other:8080/1/r", Some("http://host:5000")).unwrap();
        assert_eq!(
            named.file_url("f"),
            "http://other:8080/api/2.0/mlflow-artifacts/artifacts/1/r/f"
        );
        let direct =
            Proxy::for_url("http://h:1/api/2.0/mlflow-artifacts/artifacts/2/r/artifacts").unwrap();
        assert_eq!(direct.full_path(Some("x")), "2/r/artifacts/x");
        assert!(Proxy::for_url("http://h:1/elsewhere").is_err());
    }
}

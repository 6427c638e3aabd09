//! HTTP to an MLflow tracking server, configured as MLflow's client is: basic or bearer
//! auth, TLS verified unless told otherwise, a request timeout, and retries of 408, 429,
//! 5xx and connection failures with exponential backoff, jitter and `Retry-After`.
//!
//! Credentials go into headers only: they never appear in an error, a log line or a repr.

use std::io::Read;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::Value as Json;
use ureq::http::Response;
use ureq::tls::{RootCerts, TlsConfig};
use ureq::{Agent, Body, SendBody};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct Settings {
    pub max_retries: u32,
    pub backoff_factor: f64,
    pub backoff_jitter: f64,
    pub timeout: Duration,
}

impl Settings {
    /// MLflow's defaults and environment variables.
    pub fn from_env() -> Self {
        let number = |name: &str, default: f64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.trim().parse::<f64>().ok())
                .unwrap_or(default)
        };
        Settings {
            max_retries: number("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 7.0).max(0.0) as u32,
            backoff_factor: number("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 2.0).max(0.0),
            backoff_jitter: number("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", 1.0).max(0.0),
            timeout: Duration::from_secs_f64(
                number("MLFLOW_HTTP_REQUEST_TIMEOUT", 120.0).max(0.001),
            ),
        }
    }
}

fn env_true(name: &str) -> bool {
    matches!(
        std::env::var(name).map(|v| v.trim().to_ascii_lowercase()),
        Ok(v) if v == "true" || v == "1" || v == "yes"
    )
}

pub struct Client {
    base: String,
    agent: Agent,
    authorization: Option<String>,
    pub settings: Settings,
}

/// What a request carries, which also decides its method: the tracking API reads with
/// `GET` and writes with a JSON `POST`; the artifact proxy takes files by `PUT`.
pub enum Payload<'a> {
    /// A `GET`.
    Nothing,
    /// A `POST`.
    Json(&'a Json),
    /// A `PUT` of a body streamed from a reader, opened afresh for each attempt: its
    /// length, and the content type.
    Stream {
        open: &'a dyn Fn() -> Result<(Box<dyn Read + Send>, u64)>,
        content_type: &'a str,
    },
}

/// What one attempt gave: a successful response, an MLflow error, or a reason to try again.
enum Attempt {
    Done(Response<Body>),
    Failed(Error),
    Retry {
        reason: String,
        after: Option<Duration>,
    },
}

impl Client {
    /// A client for `uri`: a tracking server (`http://host:port[/prefix]`, credentials and
    /// TLS from MLflow's environment variables) or a Databricks workspace
    /// (`databricks[://profile]`, as registered in [`crate::workspace`]).
    pub fn new(uri: &str) -> Result<Client> {
        Client::reaching(uri, uri)
    }

    /// A client for the server at `base`, authenticated as the tracking URI `tracking_uri`
    /// says: a server on a workspace's host (its artifact proxy) carries the workspace's
    /// credentials.
    pub fn reaching(base: &str, tracking_uri: &str) -> Result<Client> {
        if crate::workspace::is_workspace_uri(tracking_uri) {
            let workspace = crate::workspace::lookup(tracking_uri)?;
            let base = if crate::workspace::is_workspace_uri(base) {
                &workspace.host
            } else {
                base
            };
            return Client::build(base, Some(workspace.authorization), workspace.insecure);
        }
        let authorization = match (
            std::env::var("MLFLOW_TRACKING_USERNAME"),
            std::env::var("MLFLOW_TRACKING_PASSWORD"),
            std::env::var("MLFLOW_TRACKING_TOKEN"),
        ) {
            (Ok(user), Ok(password), _) => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
            )),
            (_, _, Ok(token)) => Some(format!("Bearer {token}")),
            _ => None,
        };
        Client::build(
            base,
            authorization,
            env_true("MLFLOW_TRACKING_INSECURE_TLS"),
        )
    }

    fn build(base: &str, authorization: Option<String>, insecure: bool) -> Result<Client> {
        let base = base.trim_end_matches('/').to_string();
        let settings = Settings::from_env();
        let mut tls = TlsConfig::builder();
        if insecure {
            tls = tls.disable_verification(true);
        } else if let Ok(path) = std::env::var("MLFLOW_TRACKING_SERVER_CERT_PATH") {
            let pem = std::fs::read(&path).map_err(|e| {
                Error::invalid(format!(
                    "Could not read MLFLOW_TRACKING_SERVER_CERT_PATH: {e}"
                ))
            })?;
            let certs: Vec<_> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err(Error::invalid(
                    "MLFLOW_TRACKING_SERVER_CERT_PATH holds no PEM certificate",
                ));
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        } else {
            tls = tls.root_certs(RootCerts::PlatformVerifier);
        }
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            // As MLflow's client (requests) does: the timeout bounds each wait on the
            // socket, not a whole transfer, so a large artifact may take as long as it needs.
            .timeout_connect(Some(settings.timeout))
            .timeout_per_read(Some(settings.timeout))
            .timeout_per_write(Some(settings.timeout))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Client {
            base,
            agent,
            authorization,
            settings,
        })
    }

    /// The URL of an endpoint of the tracking API.
    pub fn api_url(&self, endpoint: &str) -> String {
        format!("{}/api/2.0/mlflow/{endpoint}", self.base)
    }

    /// The URL of a path under the server's base (`/api/2.0/mlflow-artifacts/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    fn attempt(&self, url: &str, query: &[(&str, String)], payload: &Payload) -> Attempt {
        let sent = match payload {
            Payload::Nothing => {
                let mut request = self.agent.get(url);
                for (key, value) in query {
                    request = request.query(*key, value);
                }
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                request.call()
            }
            Payload::Json(body) => {
                let mut request = self.agent.post(url);
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                request
                    .content_type("application/json")
                    .send(body.to_string())
            }
            Payload::Stream { open, content_type } => {
                let (reader, length) = match open() {
                    Ok(opened) => opened,
                    Err(error) => return Attempt::Failed(error),
                };
                let mut request = self.agent.put(url);
                if let Some(auth) = &self.authorization {
                    request = request.header("Authorization", auth);
                }
                // Sized, not chunked: what MLflow's client sends and every server takes.
                request
                    .header("Content-Length", length.to_string())
                    .content_type(*content_type)
                    .send(SendBody::from_owned_reader(BodyReader(reader)))
            }
        };
        let mut response = match sent {
            Ok(response) => response,
            Err(ureq::Error::Io(error))
                if error.get_ref().is_some_and(|e| e.is::<BodyReadFailed>()) =>
            {
                // The body's own reader failed (a file cut short, a cancelled transfer): not
                // the connection's fault, so trying again would not help.
                return Attempt::Failed(Error::InvalidState(format!(
                    "Could not read what was to be sent to {}: {error}",
                    crate::uri::redacted(url)
                )));
            }
            Err(error) => {
                return Attempt::Retry {
                    reason: error.to_string(),
                    after: None,
                }
            }
        };
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Attempt::Done(response);
        }
        let retry_after = response
            .headers()
            .get("Retry-After")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| Duration::from_secs_f64(s.max(0.0)));
        let text = response.body_mut().read_to_string().unwrap_or_default();
        let parsed: Option<Json> = serde_json::from_str(&text).ok();
        if status == 408 || status == 429 || (500..600).contains(&status) {
            // The server's own words, if it gave any, say what to fix on its side.
            let said = parsed
                .as_ref()
                .and_then(|j| j.get("message"))
                .and_then(Json::as_str)
                .map(|m| format!(": {}", m.chars().take(300).collect::<String>()))
                .unwrap_or_default();
            return Attempt::Retry {
                reason: format!("response with status code {status}{said}"),
                after: retry_after,
            };
        }
        let Some(answer) = parsed.filter(Json::is_object) else {
            let code = match status {
                401 => "UNAUTHENTICATED",
                403 => "PERMISSION_DENIED",
                404 => "ENDPOINT_NOT_FOUND",
                _ => "BAD_REQUEST",
            };
            return Attempt::Failed(Error::from_code(
                code,
                format!(
                    "API request to endpoint {} failed with error code {status} != 200. \
                     Response body: '{}'",
                    endpoint_of(url),
                    text.chars().take(500).collect::<String>()
                ),
            ));
        };
        Attempt::Failed(rest_exception(&answer))
    }

    /// One request with MLflow's retries: `max_retries` more attempts after the first,
    /// waiting `backoff_factor * 2^(n-1)` seconds plus up to `backoff_jitter` (or what
    /// `Retry-After` asks for). Gives up early when `deadline` passes. Answers with the
    /// successful response, its body not yet read.
    pub fn send(
        &self,
        url: &str,
        query: &[(&str, String)],
        payload: &Payload,
        max_retries: u32,
        deadline: Option<Instant>,
    ) -> Result<Response<Body>> {
        let mut attempt = 0u32;
        loop {
            match self.attempt(url, query, payload) {
                Attempt::Done(response) => return Ok(response),
                Attempt::Failed(error) => return Err(error),
                Attempt::Retry { reason, after } => {
                    if attempt >= max_retries {
                        return Err(Error::Unavailable(format!(
                            "API request to {} failed with exception {reason} (after {} \
                             attempts)",
                            crate::uri::redacted(url),
                            attempt + 1
                        )));
                    }
                    attempt += 1;
                    let backoff = self.settings.backoff_factor * 2f64.powi(attempt as i32 - 1);
                    let wait = after.unwrap_or_else(|| {
                        Duration::from_secs_f64(
                            backoff.min(120.0) + jitter() * self.settings.backoff_jitter,
                        )
                    });
                    if let Some(deadline) = deadline {
                        if Instant::now() + wait > deadline {
                            return Err(Error::Unavailable(format!(
                                "API request to {} failed with exception {reason}",
                                crate::uri::redacted(url)
                            )));
                        }
                    }
                    std::thread::sleep(wait);
                }
            }
        }
    }

    /// A call of the tracking API answered with JSON, retried as [`Client::send`] says.
    pub fn request(
        &self,
        method: &str,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Json>,
        max_retries: u32,
        deadline: Option<Instant>,
    ) -> Result<Json> {
        let empty = Json::Object(serde_json::Map::new());
        let payload = match body {
            Some(body) => Payload::Json(body),
            None if method == "GET" => Payload::Nothing,
            None => Payload::Json(&empty),
        };
        let url = self.api_url(endpoint);
        let mut response = self.send(&url, query, &payload, max_retries, deadline)?;
        let text = response.body_mut().read_to_string().map_err(|e| {
            Error::Unavailable(format!(
                "API request to {} failed while reading the answer: {e}",
                crate::uri::redacted(&url)
            ))
        })?;
        Ok(serde_json::from_str(&text).unwrap_or(Json::Null))
    }

    /// A synchronous call: MLflow's retry budget.
    pub fn call(
        &self,
        method: &str,
        endpoint: &str,
        query: &[(&str, String)],
        body: Option<&Json>,
    ) -> Result<Json> {
        self.request(
            method,
            endpoint,
            query,
            body,
            self.settings.max_retries,
            None,
        )
    }
}

/// MLflow's `RestException` for an error the server answered in JSON: the message is
/// `<error_code as sent>: <message>`, and a code given as an HTTP status (as gateways in
/// front of a workspace send them) is read as the MLflow code of that status.
fn rest_exception(answer: &Json) -> Error {
    let sent = match answer.get("error_code") {
        Some(Json::String(code)) if !code.is_empty() => code.clone(),
        Some(Json::Number(code)) => code.to_string(),
        _ => "INTERNAL_ERROR".to_string(),
    };
    let message = match answer.get("message") {
        Some(Json::String(message)) => format!("{sent}: {message}"),
        Some(other) => format!("{sent}: {other}"),
        None => format!("{sent}: Response: {answer}"),
    };
    let code = match sent.parse::<u16>() {
        Ok(status) => match status {
            400 => "BAD_REQUEST",
            401 => "UNAUTHENTICATED",
            403 => "PERMISSION_DENIED",
            404 => "ENDPOINT_NOT_FOUND",
            409 => "ALREADY_EXISTS",
            429 => "RESOURCE_EXHAUSTED",
            499 => "CANCELLED",
            501 => "NOT_IMPLEMENTED",
            503 => "TEMPORARILY_UNAVAILABLE",
            504 => "DEADLINE_EXCEEDED",
            _ => "INTERNAL_ERROR",
        }
        .to_string(),
        Err(_) => sent,
    };
    Error::from_code(&code, message)
}

/// A request body's reader whose failures can be told apart from the connection's.
struct BodyReader(Box<dyn Read + Send>);

#[derive(Debug)]
struct BodyReadFailed(std::io::Error);

impl std::fmt::Display for BodyReadFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyReadFailed {}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0
            .read(buf)
            .map_err(|e| std::io::Error::other(BodyReadFailed(e)))
    }
}

/// The path of a URL, as MLflow's messages show an endpoint.
fn endpoint_of(url: &str) -> &str {
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    after_scheme.find('/').map_or("/", |i| &after_scheme[i..])
}

/// A number in [0, 1) from the clock: enough to spread retries of many workers apart.
fn jitter() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mixed = (nanos as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (mixed as f64) / ((1u64 << 53) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(answer: &str) -> String {
        rest_exception(&serde_json::from_str(answer).unwrap()).to_string()
    }

    #[test]
    fn errors_read_as_mlflows_rest_exception() {
        assert_eq!(
            shown(r#"{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Run x not found"}"#),
            "RESOURCE_DOES_NOT_EXIST: Run x not found"
        );
        let refused = rest_exception(
            &serde_json::from_str(r#"{"error_code": "403", "message": "Invalid access token."}"#)
                .unwrap(),
        );
        assert_eq!(refused.to_string(), "403: Invalid access token.");
        assert!(matches!(
            refused,
            Error::Remote { ref code, .. } if code == "PERMISSION_DENIED"
        ));
        assert_eq!(shown(r#"{"message": "?"}"#), "INTERNAL_ERROR: ?");
    }
}

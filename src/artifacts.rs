//! A run's artifacts, wherever its `artifact_uri` points: a directory on this machine (a
//! path or a `file://` URI) or a tracking server's artifact proxy (`mlflow-artifacts:`
//! URIs, or the proxy's own `http(s)://` URL). Both keep MLflow's layout,
//! `<artifact_uri>/<artifact_path>/<name>`, and both stream: a large file never sits in
//! memory, and a reader never sees half of one.

mod local;
mod proxy;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::validation::posix_normpath;

const BUFFER: usize = 1 << 20;

/// MLflow's local repository writes each file under this prefix first, skips such names in
/// listings and refuses to log a file so named; fastflow does the same, so that either one
/// ignores the other's unfinished files.
pub const TEMP_PREFIX: &str = ".artifact.uploading.";

#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: Option<u64>,
}

/// MLflow's rule for the directory an artifact is logged into: already in normal form,
/// relative, and inside. MLflow raises it without an error code (INTERNAL_ERROR).
pub fn check_artifact_path(path: Option<&str>) -> Result<()> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let norm = posix_normpath(path);
    if norm != path || norm == "." || norm.starts_with("..") || norm.starts_with('/') {
        return Err(Error::Internal(format!(
            "Invalid artifact path: '{path}'. Names may be treated as files in certain cases, \
             and must not resolve to other names when treated as such. This name would \
             resolve to '{norm}'"
        )));
    }
    Ok(())
}

/// `os.path.abspath`: absolute and normalised, without looking at the file system.
pub fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    PathBuf::from(posix_normpath(&joined.to_string_lossy()))
}

/// `os.path.realpath`: symbolic links followed as far as the path exists, the rest joined.
fn resolve(path: &Path) -> PathBuf {
    fn walk(path: &Path, links: u32) -> PathBuf {
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().unwrap_or_default().join(path)
        };
        let mut out = PathBuf::from("/");
        for component in full.components() {
            match component {
                Component::Normal(name) => {
                    out.push(name);
                    // A loop of links ends where Python's realpath would give up too.
                    if links < 40 {
                        if let Ok(target) = fs::read_link(&out) {
                            let parent = out.parent().map_or_else(|| "/".into(), Path::to_path_buf);
                            out = walk(&parent.join(target), links + 1);
                        }
                    }
                }
                Component::ParentDir => {
                    out.pop();
                }
                _ => {}
            }
        }
        out
    }
    walk(path, 0)
}

/// MLflow's guard against escaping through symbolic links: `target`, resolved, must lie
/// under `base`, resolved. A target that does not exist yet keeps its last name as written.
pub fn check_within(base: &Path, target: &Path) -> Result<()> {
    let real_base = resolve(base);
    let real = if fs::symlink_metadata(target).is_ok() {
        resolve(target)
    } else {
        match (target.parent(), target.components().next_back()) {
            (Some(parent), Some(Component::Normal(name))) => resolve(parent).join(name),
            (Some(parent), Some(Component::ParentDir)) => resolve(parent).join(".."),
            _ => resolve(target),
        }
    };
    if real.starts_with(&real_base) {
        Ok(())
    } else {
        Err(Error::invalid(
            "Invalid path: resolved path is outside the artifact directory",
        ))
    }
}

/// `urllib.parse.unquote`: %XX escapes decoded as UTF-8, invalid sequences replaced.
pub fn unquote(text: &str) -> String {
    if !text.contains('%') {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// MLflow's check of a path read from a run's artifacts: decoded until it stops changing,
/// control characters escaped, and then neither a fragment, a parent, nor absolute.
pub fn check_safe_path(path: &str) -> Result<String> {
    let mut decoded = path.to_string();
    for _ in 0..10 {
        let next = unquote(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    let escaped: String = decoded
        .chars()
        .map(|c| match c as u32 {
            code @ (0..=31 | 127) => format!("%{code:02x}"),
            _ => c.to_string(),
        })
        .collect();
    let bytes = escaped.as_bytes();
    let windows_absolute = bytes.len() >= 3
        && bytes[0].is_ascii_alphabetic()
        && bytes[1] == b':'
        && matches!(bytes[2], b'/' | b'\\');
    if escaped.contains('#')
        || escaped.split('/').any(|part| part == "..")
        || escaped.starts_with('/')
        || escaped.starts_with("\\\\")
        || windows_absolute
    {
        return Err(Error::invalid("Invalid path"));
    }
    Ok(escaped)
}

/// Set from another thread to stop a transfer between two chunks (a Ctrl-C while a large
/// file is copied); the transfer then fails with [`Error::Interrupted`] and leaves nothing.
#[derive(Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Interrupted)
        } else {
            Ok(())
        }
    }

    /// `error`, or [`Error::Interrupted`] if it came of a cancellation.
    fn explain(&self, error: Error) -> Error {
        if self.is_cancelled() {
            Error::Interrupted
        } else {
            error
        }
    }

    /// `inner`, failing its next read once cancelled.
    fn reader<R: Read>(&self, inner: R) -> CancellableRead<R> {
        CancellableRead {
            inner,
            cancel: self.clone(),
        }
    }
}

struct CancellableRead<R> {
    inner: R,
    cancel: Cancel,
}

impl<R: Read> Read for CancellableRead<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.cancel.is_cancelled() {
            // What the error says does not matter: the transfer's caller asks the flag.
            return Err(io::Error::other("transfer cancelled"));
        }
        self.inner.read(buf)
    }
}

/// Where a run's artifacts live.
pub struct Repository {
    /// The URI as given: MLflow names it in a failed download's message.
    uri: String,
    place: Place,
    cancel: Cancel,
}

enum Place {
    Local(PathBuf),
    Proxy(proxy::Proxy),
}

impl Repository {
    /// The repository behind `artifact_uri`; `tracking_uri` locates the server behind a
    /// `mlflow-artifacts:` URI, as it does for MLflow.
    pub fn open(artifact_uri: &str, tracking_uri: Option<&str>) -> Result<Repository> {
        let place = if let Some(rest) = artifact_uri.strip_prefix("mlflow-artifacts:") {
            Place::Proxy(proxy::Proxy::for_scheme(rest, tracking_uri)?)
        } else if artifact_uri.starts_with("http://") || artifact_uri.starts_with("https://") {
            Place::Proxy(proxy::Proxy::for_url(artifact_uri)?)
        } else if let Some(rest) = artifact_uri.strip_prefix("file:") {
            Place::Local(PathBuf::from(unquote(file_uri_path(rest))))
        } else if artifact_uri.contains("://") {
            return Err(Error::invalid(format!(
                "fastflow stores artifacts in local directories and through a tracking \
                 server's artifact proxy; '{}' is neither",
                crate::uri::redacted(artifact_uri)
            )));
        } else {
            // MLflow reads a local artifact location as a URL path, escapes decoded.
            Place::Local(PathBuf::from(unquote(artifact_uri)))
        };
        Ok(Repository {
            uri: artifact_uri.to_string(),
            place,
            cancel: Cancel::default(),
        })
    }

    /// Transfers of this repository stop once `cancel` is cancelled.
    pub fn with_cancel(mut self, cancel: Cancel) -> Repository {
        self.cancel = cancel;
        self
    }

    pub fn is_local(&self) -> bool {
        matches!(self.place, Place::Local(_))
    }

    /// `log_artifact`: one file into `<artifact_path>/<its name>`.
    pub fn log_file(&self, local: &Path, artifact_path: Option<&str>) -> Result<()> {
        check_artifact_path(artifact_path)?;
        match &self.place {
            Place::Local(root) => local::log_file(root, local, artifact_path, &self.cancel),
            Place::Proxy(proxy) => {
                check_local_file(local)?;
                proxy.log_file(local, artifact_path, &self.cancel)
            }
        }
    }

    /// `log_artifacts`: the contents of a directory into `<artifact_path>/`.
    pub fn log_dir(&self, local: &Path, artifact_path: Option<&str>) -> Result<()> {
        check_artifact_path(artifact_path)?;
        match &self.place {
            Place::Local(root) => local::log_dir(root, local, artifact_path, &self.cancel),
            Place::Proxy(proxy) => {
                check_local_dir(local)?;
                proxy.log_dir(local, artifact_path, &self.cancel)
            }
        }
    }

    /// `list_artifacts`: the entries directly under `path`, sorted, with paths relative to
    /// the run's artifact root and sizes of files.
    pub fn list(&self, path: Option<&str>) -> Result<Vec<FileInfo>> {
        match &self.place {
            Place::Local(root) => local::list(root, path),
            Place::Proxy(proxy) => {
                check_artifact_path(path)?;
                proxy.list(path)
            }
        }
    }

    /// `download_artifacts` into the existing directory `dest`: `path` (a file or a
    /// directory, or everything) lands at `dest/<path>`, which is returned.
    pub fn download(&self, path: Option<&str>, dest: &Path) -> Result<PathBuf> {
        match &self.place {
            Place::Local(root) => local::download(&self.uri, root, path, dest, &self.cancel),
            Place::Proxy(proxy) => {
                check_artifact_path(path)?;
                let landed = match path.filter(|p| !p.is_empty()) {
                    Some(path) => dest.join(path),
                    None => dest.to_path_buf(),
                };
                proxy.download(path, &landed, &self.cancel)?;
                Ok(landed)
            }
        }
    }

    /// Where `path` already is on this machine, for a local repository (MLflow hands out
    /// that path rather than a copy when no destination is given); None for a remote one.
    pub fn local_path(&self, path: &str) -> Result<Option<PathBuf>> {
        match &self.place {
            Place::Local(root) => local::local_path(root, path).map(Some),
            Place::Proxy(_) => Ok(None),
        }
    }
}

/// The path of a `file:` URI (what follows the scheme): an authority, if any, is dropped.
fn file_uri_path(rest: &str) -> &str {
    match rest.strip_prefix("//") {
        Some(authority_and_path) => authority_and_path
            .find('/')
            .map_or("", |slash| &authority_and_path[slash..]),
        None => rest,
    }
}

fn check_local_file(local: &Path) -> Result<()> {
    let meta = fs::metadata(local).map_err(|_| {
        Error::invalid(format!(
            "Local file to log does not exist: '{}'",
            local.display()
        ))
    })?;
    if meta.is_dir() {
        return Err(Error::invalid(format!(
            "'{}' is a directory: log it with log_artifacts",
            local.display()
        )));
    }
    if local.file_name().is_none() {
        return Err(Error::invalid(format!(
            "'{}' names no file",
            local.display()
        )));
    }
    Ok(())
}

fn check_local_dir(local: &Path) -> Result<()> {
    let meta = fs::metadata(local).map_err(|_| {
        Error::invalid(format!(
            "Local directory to log does not exist: '{}'",
            local.display()
        ))
    })?;
    if !meta.is_dir() {
        return Err(Error::invalid(format!(
            "'{}' is not a directory: log it with log_artifact",
            local.display()
        )));
    }
    Ok(())
}

fn io_error(action: &str, path: &Path, error: io::Error) -> Error {
    Error::InvalidState(format!("Could not {action} '{}': {error}", path.display()))
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| io_error("create the directory", dir, e))
}

/// Writes `target` through `fill` into a temporary file beside it, renamed into place only
/// when complete and synced; on failure nothing is left behind.
fn write_atomically(
    target: &Path,
    fill: impl FnOnce(&mut File, &Path) -> Result<()>,
) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    create_dir(parent)?;
    let temporary = parent.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut output = File::create(&temporary).map_err(|e| io_error("write", &temporary, e))?;
        fill(&mut output, &temporary)?;
        output
            .sync_all()
            .map_err(|e| io_error("write", &temporary, e))?;
        fs::rename(&temporary, target).map_err(|e| io_error("write", target, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_that_leave_the_run_are_refused() {
        for bad in ["../x", "/abs", "a/../../b", "a//b", "a/./b", ".", "a/"] {
            assert!(check_artifact_path(Some(bad)).is_err(), "{bad}");
        }
        for good in ["a", "a/b", "plots", "a.b/c"] {
            assert!(check_artifact_path(Some(good)).is_ok(), "{good}");
        }
        assert!(check_artifact_path(None).is_ok());
    }

    #[test]
    fn uris_choose_their_repository() {
        let local = Repository::open("/tmp/mlruns/0/r/artifacts", None).unwrap();
        assert!(
            matches!(local.place, Place::Local(p) if p == Path::new("/tmp/mlruns/0/r/artifacts"))
        );
        let file = Repository::open("file:///tmp/x", None).unwrap();
        assert!(matches!(file.place, Place::Local(p) if p == Path::new("/tmp/x")));
        assert!(Repository::open("s3://bucket/x", None).is_err());
        assert!(Repository::open("mlflow-artifacts:/0/r/artifacts", None).is_err());
        assert!(Repository::open("mlflow-artifacts:/0/r", Some("sqlite:///x.db")).is_err());
        let proxied = Repository::open("mlflow-artifacts:/0/r", Some("http://127.0.0.1:5000"));
        assert!(matches!(proxied.unwrap().place, Place::Proxy(_)));
    }

    #[test]
    fn files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let repo =
            Repository::open(dir.path().join("run/artifacts").to_str().unwrap(), None).unwrap();
        let source = dir.path().join("model.bin");
        fs::write(&source, vec![7u8; 3 << 20]).unwrap();
        repo.log_file(&source, Some("models/best")).unwrap();
        let listed = repo.list(Some("models")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "models/best");
        assert!(listed[0].is_dir);
        let files = repo.list(Some("models/best")).unwrap();
        assert_eq!(files[0].file_size, Some(3 << 20));
        fs::create_dir(dir.path().join("out")).unwrap();
        let landed = repo
            .download(Some("models"), &dir.path().join("out"))
            .unwrap();
        assert_eq!(landed, dir.path().join("out/models"));
        assert_eq!(
            fs::read(landed.join("best/model.bin")).unwrap(),
            fs::read(&source).unwrap()
        );
        assert!(repo.log_file(dir.path(), None).is_err());
        assert!(repo.log_file(&dir.path().join("missing"), None).is_err());
    }

    #[test]
    fn an_unwritable_destination_is_an_error_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("not-a-directory");
        fs::write(&blocker, b"x").unwrap();
        let repo = Repository::open(blocker.join("artifacts").to_str().unwrap(), None).unwrap();
        let source = dir.path().join("a.txt");
        fs::write(&source, b"hello").unwrap();
        let error = repo.log_file(&source, None).unwrap_err();
        assert!(error.to_string().contains("Not a directory"), "{error}");
        assert_eq!(fs::read(&blocker).unwrap(), b"x");
    }

    #[test]
    fn a_cancelled_copy_stops_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("artifacts");
        let cancel = Cancel::default();
        let repo = Repository::open(root.to_str().unwrap(), None)
            .unwrap()
            .with_cancel(cancel.clone());
        let source = dir.path().join("big.bin");
        fs::write(&source, vec![1u8; 4 << 20]).unwrap();
        cancel.cancel();
        assert!(matches!(
            repo.log_file(&source, None),
            Err(Error::Interrupted)
        ));
        assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
    }
}

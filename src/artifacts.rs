//! Artifacts in a run's artifact directory on this machine (`artifact_uri` a path or a
//! `file://` URI), laid out as MLflow lays them out: `<artifact_uri>/<artifact_path>/<name>`.
//!
//! Files are streamed through a fixed buffer into a temporary file beside the target and
//! renamed into place, so a large file never sits in memory and a reader never sees half
//! of one. Artifact paths that would leave the run's directory are refused.

use std::fs;
use std::io::{self, BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::validation::posix_normpath;

const BUFFER: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub struct FileInfo {
    pub path: String,
    pub is_dir: bool,
    pub file_size: Option<u64>,
}

/// MLflow's rule: an artifact path must already be in normal form, relative, and inside.
pub fn check_artifact_path(path: Option<&str>) -> Result<()> {
    let Some(path) = path.filter(|p| !p.is_empty()) else {
        return Ok(());
    };
    let norm = posix_normpath(path);
    if norm != path || norm == "." || norm.starts_with("..") || norm.starts_with('/') {
        return Err(Error::invalid(format!(
            "Invalid artifact path: '{path}'. Names may be treated as files in certain cases, \
             and must not resolve to other names when treated as such. This name would \
             resolve to '{norm}'"
        )));
    }
    Ok(())
}

/// The directory behind a run's `artifact_uri`.
pub fn local_root(artifact_uri: &str) -> Result<PathBuf> {
    if let Some(rest) = artifact_uri.strip_prefix("file://") {
        return Ok(PathBuf::from(rest));
    }
    if artifact_uri.contains("://") || artifact_uri.starts_with("mlflow-artifacts:") {
        return Err(Error::invalid(format!(
            "fastflow writes artifacts to local directories; '{artifact_uri}' is not one"
        )));
    }
    Ok(PathBuf::from(artifact_uri))
}

fn io_error(action: &str, path: &Path, error: io::Error) -> Error {
    Error::InvalidState(format!("Could not {action} '{}': {error}", path.display()))
}

fn target_dir(root: &Path, artifact_path: Option<&str>) -> Result<PathBuf> {
    check_artifact_path(artifact_path)?;
    Ok(match artifact_path.filter(|p| !p.is_empty()) {
        Some(path) => root.join(path),
        None => root.to_path_buf(),
    })
}

fn copy_streaming(source: &Path, target: &Path) -> Result<()> {
    let parent = target.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(parent).map_err(|e| io_error("create the directory", parent, e))?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = parent.join(format!(".{name}.{}.partial", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let input = fs::File::open(source).map_err(|e| io_error("read", source, e))?;
        let output = fs::File::create(&temporary).map_err(|e| io_error("write", &temporary, e))?;
        let mut reader = BufReader::with_capacity(BUFFER, input);
        let mut writer = BufWriter::with_capacity(BUFFER, output);
        io::copy(&mut reader, &mut writer).map_err(|e| io_error("copy", source, e))?;
        let output = writer
            .into_inner()
            .map_err(|e| io_error("write", &temporary, e.into_error()))?;
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

/// `log_artifact`: one file into `<root>/<artifact_path>/<its name>`.
pub fn log_file(root: &Path, local: &Path, artifact_path: Option<&str>) -> Result<()> {
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
    let dir = target_dir(root, artifact_path)?;
    let name = local
        .file_name()
        .ok_or_else(|| Error::invalid(format!("'{}' names no file", local.display())))?;
    copy_streaming(local, &dir.join(name))
}

/// `log_artifacts`: the contents of a directory into `<root>/<artifact_path>/`.
pub fn log_dir(root: &Path, local: &Path, artifact_path: Option<&str>) -> Result<()> {
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
    let dir = target_dir(root, artifact_path)?;
    fs::create_dir_all(&dir).map_err(|e| io_error("create the directory", &dir, e))?;
    copy_tree(local, &dir)
}

fn copy_tree(source: &Path, target: &Path) -> Result<()> {
    let entries = fs::read_dir(source).map_err(|e| io_error("read", source, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", source, e))?;
        let from = entry.path();
        let to = target.join(entry.file_name());
        if from.is_dir() {
            fs::create_dir_all(&to).map_err(|e| io_error("create the directory", &to, e))?;
            copy_tree(&from, &to)?;
        } else {
            copy_streaming(&from, &to)?;
        }
    }
    Ok(())
}

/// `list_artifacts`: the entries directly under `path`, sorted, with paths relative to the
/// run's artifact root and sizes of files.
pub fn list(root: &Path, path: Option<&str>) -> Result<Vec<FileInfo>> {
    let dir = target_dir(root, path)?;
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let prefix = path.filter(|p| !p.is_empty());
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| io_error("read", &dir, e))? {
        let entry = entry.map_err(|e| io_error("read", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".partial") && name.starts_with('.') {
            continue;
        }
        let meta = entry
            .metadata()
            .map_err(|e| io_error("read", &entry.path(), e))?;
        found.push(FileInfo {
            path: match prefix {
                Some(prefix) => format!("{prefix}/{name}"),
                None => name,
            },
            is_dir: meta.is_dir(),
            file_size: (!meta.is_dir()).then_some(meta.len()),
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// `download_artifacts`: copies `path` (a file or a directory, or everything) under `dest`
/// and returns where it landed.
pub fn download(root: &Path, path: Option<&str>, dest: &Path) -> Result<PathBuf> {
    let source = target_dir(root, path)?;
    let landed = match path.filter(|p| !p.is_empty()) {
        Some(path) => dest.join(path),
        None => dest.to_path_buf(),
    };
    if source.is_dir() {
        fs::create_dir_all(&landed).map_err(|e| io_error("create the directory", &landed, e))?;
        copy_tree(&source, &landed)?;
    } else if source.is_file() {
        copy_streaming(&source, &landed)?;
    } else {
        return Err(Error::not_found(format!(
            "No artifact at '{}' in the run's artifacts",
            path.unwrap_or_default()
        )));
    }
    Ok(landed)
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
    fn files_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("run/artifacts");
        let source = dir.path().join("model.bin");
        fs::write(&source, vec![7u8; 3 << 20]).unwrap();
        log_file(&root, &source, Some("models/best")).unwrap();
        let listed = list(&root, Some("models")).unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, "models/best");
        assert!(listed[0].is_dir);
        let files = list(&root, Some("models/best")).unwrap();
        assert_eq!(files[0].file_size, Some(3 << 20));
        let landed = download(&root, Some("models"), &dir.path().join("out")).unwrap();
        assert_eq!(
            fs::read(landed.join("best/model.bin")).unwrap(),
            fs::read(&source).unwrap()
        );
        assert!(log_file(&root, dir.path(), None).is_err());
        assert!(log_file(&root, &dir.path().join("missing"), None).is_err());
    }
}

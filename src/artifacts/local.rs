//! Artifacts in a directory on this machine: copies through a fixed buffer.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use super::{create_dir, io_error, is_partial, write_atomically, Cancel, FileInfo};

/// Bytes copied between two looks at a cancellation.
const CHUNK: u64 = 64 << 20;
use crate::error::{Error, Result};

fn target_dir(root: &Path, artifact_path: Option<&str>) -> std::path::PathBuf {
    match artifact_path.filter(|p| !p.is_empty()) {
        Some(path) => root.join(path),
        None => root.to_path_buf(),
    }
}

fn copy_file(source: &Path, target: &Path, cancel: &Cancel) -> Result<()> {
    write_atomically(target, |output, _| {
        let input = File::open(source).map_err(|e| io_error("read", source, e))?;
        // File to file, std lets the kernel copy (copy_file_range, sendfile) without the
        // bytes passing through this process; chunks let a cancellation land in between.
        loop {
            cancel.check()?;
            let copied = io::copy(&mut (&input).take(CHUNK), output)
                .map_err(|e| io_error("copy", source, e))?;
            if copied == 0 {
                return Ok(());
            }
        }
    })
}

fn copy_tree(source: &Path, target: &Path, cancel: &Cancel) -> Result<()> {
    create_dir(target)?;
    let entries = fs::read_dir(source).map_err(|e| io_error("read", source, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| io_error("read", source, e))?;
        let from = entry.path();
        let to = target.join(entry.file_name());
        if from.is_dir() {
            copy_tree(&from, &to, cancel)?;
        } else {
            copy_file(&from, &to, cancel)?;
        }
    }
    Ok(())
}

pub(super) fn log_file(
    root: &Path,
    local: &Path,
    artifact_path: Option<&str>,
    cancel: &Cancel,
) -> Result<()> {
    let name = local.file_name().unwrap_or_default();
    copy_file(local, &target_dir(root, artifact_path).join(name), cancel)
}

pub(super) fn log_dir(
    root: &Path,
    local: &Path,
    artifact_path: Option<&str>,
    cancel: &Cancel,
) -> Result<()> {
    copy_tree(local, &target_dir(root, artifact_path), cancel)
}

pub(super) fn list(root: &Path, path: Option<&str>) -> Result<Vec<FileInfo>> {
    let dir = target_dir(root, path);
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let prefix = path.filter(|p| !p.is_empty());
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| io_error("read", &dir, e))? {
        let entry = entry.map_err(|e| io_error("read", &dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if is_partial(&name) {
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

pub(super) fn download(
    root: &Path,
    path: Option<&str>,
    landed: &Path,
    cancel: &Cancel,
) -> Result<()> {
    let source = target_dir(root, path);
    if source.is_dir() {
        copy_tree(&source, landed, cancel)
    } else if source.is_file() {
        copy_file(&source, landed, cancel)
    } else {
        Err(Error::not_found(format!(
            "No artifact at '{}' in the run's artifacts",
            path.unwrap_or_default()
        )))
    }
}

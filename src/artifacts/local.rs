//! Artifacts in a directory on this machine, with the path rules of MLflow's local
//! repository: names normalised before they are joined, every joined path kept inside the
//! root even through symbolic links, and copies that keep the source's mode and times.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use super::{
    absolute, check_safe_path, check_within, write_atomically, Cancel, FileInfo, TEMP_PREFIX,
};
use crate::error::{Error, ErrorCode, Result};
use crate::validation::posix_normpath;

/// Bytes copied between two looks at a cancellation.
const CHUNK: u64 = 64 << 20;

/// MLflow cuts the report of failed downloads to this many characters.
const FAILURES_SHOWN: usize = 10_000;

fn os_error(error: &io::Error, path: &Path) -> Error {
    Error::os(error, path)
}

/// `os.path.basename`: what follows the last slash, empty after a trailing one.
fn basename(path: &Path) -> String {
    let text = path.to_string_lossy();
    text.rsplit('/').next().unwrap_or_default().to_string()
}

/// `posixpath.dirname`.
fn dirname(path: &str) -> &str {
    match path.rfind('/') {
        Some(at) => {
            let head = &path[..=at];
            if head.chars().all(|c| c == '/') {
                head
            } else {
                head.trim_end_matches('/')
            }
        }
        None => "",
    }
}

/// `os.path.relpath(path, start)`, worked out on the names alone.
fn relpath(path: &Path, start: &Path) -> String {
    let path = absolute(path);
    let start = absolute(start);
    let parts: Vec<_> = path.components().collect();
    let base: Vec<_> = start.components().collect();
    let common = parts.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out: Vec<String> = vec!["..".to_string(); base.len() - common];
    out.extend(
        parts[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if out.is_empty() {
        ".".to_string()
    } else {
        out.join("/")
    }
}

fn joined(root: &Path, path: Option<&str>) -> PathBuf {
    match path.filter(|p| !p.is_empty()) {
        Some(path) => root.join(posix_normpath(path)),
        None => root.to_path_buf(),
    }
}

/// The directory `artifact_path` names, created when missing (before anything is read,
/// as MLflow does, so a failed copy still leaves it).
fn artifact_dir(root: &Path, artifact_path: Option<&str>) -> Result<PathBuf> {
    let dir = joined(root, artifact_path);
    check_within(root, &dir)?;
    fs::create_dir_all(&dir).map_err(|e| os_error(&e, &dir))?;
    Ok(dir)
}

fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Copies `source` into `target` through a temporary file beside it, then gives it the
/// source's mode and times, as `shutil.copy2` does.
fn copy_file(source: &Path, target: &Path, cancel: &Cancel) -> Result<()> {
    let input = File::open(source).map_err(|e| os_error(&e, source))?;
    let meta = input.metadata().map_err(|e| os_error(&e, source))?;
    if meta.is_dir() {
        return Err(os_error(
            &io::Error::from_raw_os_error(libc::EISDIR),
            source,
        ));
    }
    write_atomically(target, |output, temporary| {
        // File to file, std lets the kernel copy (copy_file_range, sendfile) without the
        // bytes passing through this process; chunks let a cancellation land in between.
        loop {
            cancel.check()?;
            let copied = io::copy(&mut (&input).take(CHUNK), output)
                .map_err(|e| super::io_error("copy", source, e))?;
            if copied == 0 {
                break;
            }
        }
        let mut times = fs::FileTimes::new();
        if let Ok(accessed) = meta.accessed() {
            times = times.set_accessed(accessed);
        }
        if let Ok(modified) = meta.modified() {
            times = times.set_modified(modified);
        }
        output
            .set_times(times)
            .and_then(|()| output.set_permissions(meta.permissions()))
            .map_err(|e| super::io_error("write", temporary, e))
    })
}

pub(super) fn log_file(
    root: &Path,
    local: &Path,
    artifact_path: Option<&str>,
    cancel: &Cancel,
) -> Result<()> {
    let dir = artifact_dir(root, artifact_path)?;
    let name = basename(local);
    if name.starts_with(TEMP_PREFIX) {
        return Err(Error::invalid(format!(
            "Invalid artifact file name: '{}'. Artifact names starting with '{TEMP_PREFIX}' \
             are reserved.",
            local.display()
        )));
    }
    let target = dir.join(&name);
    check_within(root, &target)?;
    if same_file(local, &target) {
        return Ok(());
    }
    copy_file(local, &target, cancel)
}

/// MLflow walks `source` as `os.walk` does: a missing source, or a file, copies nothing;
/// a link to a directory becomes an empty directory; unreadable directories are skipped.
fn copy_tree(source: &Path, target: &Path, cancel: &Cancel) -> Result<()> {
    let Ok(entries) = fs::read_dir(source) else {
        return Ok(());
    };
    let mut below = Vec::new();
    for entry in entries.flatten() {
        let from = entry.path();
        let to = target.join(entry.file_name());
        if fs::metadata(&from).is_ok_and(|m| m.is_dir()) {
            if !to.exists() {
                fs::create_dir(&to).map_err(|e| os_error(&e, &to))?;
            }
            if !entry.file_type().is_ok_and(|t| t.is_symlink()) {
                below.push((from, to));
            }
        } else {
            copy_file(&from, &to, cancel)?;
        }
    }
    for (from, to) in below {
        copy_tree(&from, &to, cancel)?;
    }
    Ok(())
}

pub(super) fn log_dir(
    root: &Path,
    local: &Path,
    artifact_path: Option<&str>,
    cancel: &Cancel,
) -> Result<()> {
    let dir = artifact_dir(root, artifact_path)?;
    copy_tree(local, &dir, cancel)
}

pub(super) fn list(root: &Path, path: Option<&str>) -> Result<Vec<FileInfo>> {
    let dir = joined(root, path);
    check_within(root, &dir)?;
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for entry in fs::read_dir(&dir).map_err(|e| os_error(&e, &dir))? {
        let entry = entry.map_err(|e| os_error(&e, &dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(TEMP_PREFIX) {
            continue;
        }
        let full = dir.join(&name);
        let meta = fs::metadata(&full).map_err(|e| os_error(&e, &full))?;
        found.push(FileInfo {
            path: relpath(&full, root),
            is_dir: meta.is_dir(),
            file_size: (!meta.is_dir()).then_some(meta.len()),
        });
    }
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

/// MLflow's `get_local_path`: where `path` is, when no copy is asked for.
pub(super) fn local_path(root: &Path, path: &str) -> Result<PathBuf> {
    let safe = check_safe_path(path)?;
    let local = root.join(posix_normpath(&safe));
    check_within(root, &local)?;
    if !local.exists() {
        return Err(Error::not_found(format!("No such artifact: '{safe}'")));
    }
    Ok(absolute(&local))
}

/// One download as MLflow's repository does it: the entries of a directory, recursively,
/// each file copied on its own; failures of single files are collected and reported
/// together, while a path that leaves the root stops the download at once.
struct Download<'a> {
    root: &'a Path,
    dest: &'a Path,
    cancel: &'a Cancel,
    failures: Vec<(String, Error)>,
}

impl Download<'_> {
    fn tree(&mut self, path: &str) -> Result<()> {
        let content: Vec<FileInfo> = list(self.root, Some(path))?
            .into_iter()
            .filter(|f| f.path != "." && f.path != path)
            .collect();
        if content.is_empty() {
            let dir = self.dest.join(posix_normpath(path));
            check_within(self.dest, &dir)?;
            return fs::create_dir_all(&dir).map_err(|e| os_error(&e, &dir));
        }
        for entry in content {
            if entry.is_dir {
                self.tree(&entry.path)?;
            } else {
                self.file(&entry.path)?;
            }
        }
        Ok(())
    }

    fn file(&mut self, path: &str) -> Result<()> {
        let trimmed = path.trim_end_matches('/');
        let parent = match dirname(trimmed) {
            "" => self.dest.to_path_buf(),
            dir => self.dest.join(posix_normpath(dir)),
        };
        let target = self.dest.join(posix_normpath(trimmed));
        check_within(self.dest, &target)?;
        if !parent.exists() {
            fs::create_dir_all(&parent).map_err(|e| os_error(&e, &parent))?;
        }
        match self.fetch(path, &target) {
            Err(Error::Interrupted) => return Err(Error::Interrupted),
            Err(error) => self.failures.push((path.to_string(), error)),
            Ok(()) => {}
        }
        Ok(())
    }

    fn fetch(&self, path: &str, target: &Path) -> Result<()> {
        let safe = check_safe_path(path)?;
        let source = self.root.join(posix_normpath(&safe));
        check_within(self.root, &source)?;
        if !source.exists() {
            return Err(Error::not_found(format!(
                "No such artifact: '{}'",
                relpath(&source, self.root)
            )));
        }
        copy_file(&source, target, self.cancel)
    }
}

/// What MLflow raises for the files that failed: all of them in one message, with the one
/// code they share (the code of OS errors and internal ones does not count), else
/// INTERNAL_ERROR.
fn failed_downloads(uri: &str, failures: Vec<(String, Error)>) -> Error {
    let report = failures
        .iter()
        .map(|(path, error)| format!("##### File {path} #####\n{error}"))
        .collect::<Vec<_>>()
        .join("\n");
    let report = if report.chars().count() <= FAILURES_SHOWN {
        report
    } else {
        let chars: Vec<char> = report.chars().collect();
        let half = FAILURES_SHOWN / 2;
        format!(
            "{}\n\n*** Error message is too long, truncated ***\n\n{}",
            chars[..half].iter().collect::<String>(),
            chars[chars.len() - half..].iter().collect::<String>()
        )
    };
    let mut codes: Vec<ErrorCode> = failures
        .iter()
        .filter(|(_, e)| !matches!(e, Error::Os { .. }))
        .map(|(_, e)| e.code())
        .filter(|c| *c != ErrorCode::InternalError)
        .collect();
    codes.sort_by_key(|c| c.as_str());
    codes.dedup();
    let message = format!(
        "The following failures occurred while downloading one or more artifacts from \
         {uri}:\n{report}"
    );
    match codes.as_slice() {
        [code] => Error::with_code(*code, message),
        _ => Error::Internal(message),
    }
}

pub(super) fn download(
    uri: &str,
    root: &Path,
    path: Option<&str>,
    dest: &Path,
    cancel: &Cancel,
) -> Result<PathBuf> {
    let dest = absolute(dest);
    if !dest.exists() {
        return Err(Error::not_found(format!(
            "The destination path for downloaded artifacts does not exist! Destination path: \
             {}",
            dest.display()
        )));
    }
    if !dest.is_dir() {
        return Err(Error::invalid(format!(
            "The destination path for downloaded artifacts must be a directory! Destination \
             path: {}",
            dest.display()
        )));
    }
    let path = path.unwrap_or_default();
    let mut download = Download {
        root,
        dest: &dest,
        cancel,
        failures: Vec::new(),
    };
    if path.is_empty() {
        if list(root, None)?.is_empty() {
            return Ok(dest);
        }
        download.tree(path)?;
    } else if root.join(posix_normpath(path)).is_dir() {
        download.tree(path)?;
    } else {
        download.file(path)?;
    }
    if !download.failures.is_empty() {
        return Err(failed_downloads(uri, download.failures));
    }
    Ok(if path.is_empty() {
        dest
    } else {
        dest.join(posix_normpath(path))
    })
}

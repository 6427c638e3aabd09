"""The git tags MLflow puts on a run whose script lives in a git checkout: commit, branch and
the first remote's URL.

MLflow reads them through GitPython, which needs the ``git`` program; fastflow reads the
repository's files (HEAD, refs, packed-refs, config) and asks ``git`` only whether the
script's directory is ignored, so the tags come out the same without the dependency. Like
MLflow, they are read once per process.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

_resolved: dict | None = None


def git_tags() -> dict:
    global _resolved
    if _resolved is None:
        try:
            _resolved = _resolve()
        except OSError:
            _resolved = {}
    return _resolved


def _resolve() -> dict:
    main = sys.argv[0] if sys.argv and sys.argv[0] else None
    # Without the git program MLflow's git library does not load and no tag is written.
    if main is None or shutil.which("git") is None:
        return {}
    path = os.path.dirname(os.path.abspath(main)) if os.path.isfile(main) else main
    if not os.path.exists(path):
        return {}
    found = _find_repository(os.path.abspath(path))
    if found is None:
        return {}
    git_dir, work_tree = found
    common_dir = _common_dir(git_dir)
    head = _read(os.path.join(git_dir, "HEAD"))
    if head is None:
        return {}
    commit = _resolve_ref(head, git_dir, common_dir)
    if commit is None or _ignored(work_tree, path):
        return {}
    tags = {"mlflow.source.git.commit": commit}
    if head.startswith("ref: refs/heads/"):
        tags["mlflow.source.git.branch"] = head[len("ref: refs/heads/") :]
    url = _first_remote_url(common_dir)
    if url is not None:
        tags["mlflow.source.git.repoURL"] = _without_credentials(url)
    return tags


def _find_repository(start: str):
    directory = start
    while True:
        dot_git = os.path.join(directory, ".git")
        if os.path.isdir(dot_git):
            return dot_git, directory
        if os.path.isfile(dot_git):
            # A worktree or submodule: the file points at its git directory.
            text = _read(dot_git) or ""
            if text.startswith("gitdir: "):
                return os.path.normpath(os.path.join(directory, text[8:])), directory
        parent = os.path.dirname(directory)
        if parent == directory:
            return None
        directory = parent


def _common_dir(git_dir: str) -> str:
    shared = _read(os.path.join(git_dir, "commondir"))
    return os.path.normpath(os.path.join(git_dir, shared)) if shared else git_dir


def _resolve_ref(value: str, git_dir: str, common_dir: str, depth: int = 0):
    if not value.startswith("ref: "):
        return value if re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", value) else None
    if depth > 5:
        return None
    name = value[5:]
    for directory in (git_dir, common_dir):
        loose = _read(os.path.join(directory, name))
        if loose is not None:
            return _resolve_ref(loose, git_dir, common_dir, depth + 1)
    packed = _read(os.path.join(common_dir, "packed-refs")) or ""
    for line in packed.splitlines():
        parts = line.split(" ", 1)
        if len(parts) == 2 and parts[1] == name and not line.startswith(("#", "^")):
            return parts[0]
    return None


def _ignored(work_tree: str, path: str) -> bool:
    try:
        done = subprocess.run(
            ["git", "check-ignore", "-q", path],
            cwd=work_tree,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _first_remote_url(common_dir: str):
    config = _read(os.path.join(common_dir, "config")) or ""
    in_remote = False
    first_remote_url = None
    for raw in config.splitlines():
        line = raw.strip()
        if line.startswith("["):
            if first_remote_url is not None:
                return first_remote_url
            in_remote = re.match(r'\[remote\s+"[^"]*"\]', line) is not None
            continue
        if in_remote:
            key, _, value = line.partition("=")
            if key.strip().lower() == "url":
                first_remote_url = value.strip()
    return first_remote_url


def _without_credentials(url: str) -> str:
    parsed = urlsplit(url)
    if not parsed.scheme or "@" not in parsed.netloc:
        return url
    host = parsed.netloc.rpartition("@")[2]
    return urlunsplit((parsed.scheme, host, parsed.path, parsed.query, parsed.fragment))


def _read(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None

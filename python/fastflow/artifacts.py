"""``mlflow.artifacts``: download and read artifacts of a run.

How MLflow turns a run id, a path or a URI into a repository and a path inside it is
URL handling (``urllib.parse`` splits, ``runs:/`` URIs), so it lives here; the
repositories' own path rules and every transfer are in the extension module.
"""

from __future__ import annotations

import json
import os
import posixpath
import tempfile
import urllib.parse

from fastflow import _context, _repositories
from fastflow.entities.run import RunInfo
from fastflow.exceptions import (
    BAD_REQUEST,
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    MlflowException,
)

_RUNS_URI_FORM = "Runs URIs must be of the form 'runs:/<run_id>/run-relative/path/to/artifact'"


def _join_below(prefix, suffix):
    # A suffix is always put below the prefix, even one that starts with a slash.
    if not prefix:
        return suffix
    return posixpath.join(prefix, suffix.lstrip("/"))


def append_to_uri_path(uri, path):
    """``path`` appended to the path of ``uri``, as MLflow builds artifact URIs."""
    parsed = urllib.parse.urlparse(uri)
    if ".." in urllib.parse.unquote(parsed.query):
        raise MlflowException("Invalid query string", error_code=INVALID_PARAMETER_VALUE)
    if not parsed.scheme:
        return _join_below(uri, path)
    prefix = ""
    if not parsed.path.startswith("/"):
        # urlunparse would put back "scheme://" where the URI had "scheme:".
        prefix = parsed.scheme + ":"
        parsed = parsed._replace(scheme="")
    return prefix + urllib.parse.urlunparse(parsed._replace(path=_join_below(parsed.path, path)))


def _split_uri(artifact_uri):
    """The repository holding ``artifact_uri`` and the name of the artifact in it."""
    if os.path.exists(artifact_uri):
        return os.path.dirname(artifact_uri), os.path.basename(artifact_uri)
    parsed = urllib.parse.urlparse(str(artifact_uri))
    prefix = ""
    if parsed.scheme and not parsed.path.startswith("/"):
        prefix = parsed.scheme + ":"
        parsed = parsed._replace(scheme="")
    name = posixpath.basename(parsed.path)
    parent = parsed._replace(path=posixpath.dirname(parsed.path))
    return prefix + urllib.parse.urlunparse(parent), name


def _parse_runs_uri(uri):
    parsed = urllib.parse.urlparse(uri)
    path = parsed.path
    run_id, _, rest = path[1:].partition("/")
    if parsed.scheme != "runs" or not path.startswith("/") or len(path) <= 1 or not run_id:
        raise MlflowException(f"Not a proper runs:/ URI: {uri}. {_RUNS_URI_FORM}")
    return run_id, rest or None


def _run_artifact_uri_of(tracking_uri):
    """Looks a run's artifact URI up in its store (the client sits above this module)."""
    tracker = _context.tracker(tracking_uri)

    def artifact_uri(run_id):
        return RunInfo._from_row(tracker.get_run(run_id, False)[0]).artifact_uri

    return artifact_uri


def _repository(uri, run_artifact_uri):
    """The URI of the repository behind ``uri``: a ``runs:/`` URI names a place among a
    run's artifacts, looked up through ``run_artifact_uri(run_id)``."""
    if urllib.parse.urlparse(uri).scheme != "runs":
        return uri
    run_id, path = _parse_runs_uri(uri)
    root = run_artifact_uri(run_id)
    return root if path is None else append_to_uri_path(root, path)


def _tracking(tracking_uri):
    return tracking_uri or _context.get_tracking_uri()


def _one_source(artifact_uri, run_id, artifact_path):
    if (run_id, artifact_uri).count(None) != 1:
        raise MlflowException(
            "Exactly one of `run_id` or `artifact_uri` must be specified",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if artifact_uri is not None and artifact_path is not None:
        raise MlflowException(
            "`artifact_path` cannot be specified if `artifact_uri` is specified",
            error_code=INVALID_PARAMETER_VALUE,
        )


def _download_from_repository(uri, path, dst_path, tracking_uri):
    if not dst_path:
        # A local repository hands out the artifact where it is, without a copy.
        local = _repositories.local_path(uri, path, tracking_uri)
        if local is not None:
            return local
        dst_path = tempfile.mkdtemp()
    return _repositories.download(uri, path, dst_path, tracking_uri)


def _download_from_uri(artifact_uri, dst_path, tracking_uri, run_artifact_uri):
    root, path = _split_uri(artifact_uri)
    if urllib.parse.urlparse(root).scheme != "runs":
        return _download_from_repository(root, path, dst_path, tracking_uri)
    repository = _repository(root, run_artifact_uri)
    try:
        return _repositories.download(
            repository, path, dst_path or tempfile.mkdtemp(), tracking_uri
        )
    except Exception:
        # MLflow's runs:/ repository answers any failure with this one message.
        raise MlflowException(
            f"Failed to download artifacts from path {path!r}, please ensure that the path "
            "is correct.",
            error_code=RESOURCE_DOES_NOT_EXIST,
        ) from None


def _download(artifact_uri, run_id, artifact_path, dst_path, tracking_uri, run_artifact_uri):
    _one_source(artifact_uri, run_id, artifact_path)
    if dst_path is not None:
        # Imported here: importing fastflow must not load pathlib (see test_without_mlflow).
        import pathlib

        pathlib.Path(dst_path).mkdir(exist_ok=True, parents=True)
    if artifact_uri is not None:
        return _download_from_uri(artifact_uri, dst_path, tracking_uri, run_artifact_uri)
    if run_id and artifact_path:
        uri = f"runs:/{posixpath.join(run_id, artifact_path)}"
        return _download_from_uri(uri, dst_path, tracking_uri, run_artifact_uri)
    path = artifact_path if artifact_path is not None else ""
    return _download_from_repository(run_artifact_uri(run_id), path, dst_path, tracking_uri)


def download_artifacts(
    artifact_uri=None, run_id=None, artifact_path=None, dst_path=None, tracking_uri=None
) -> str:
    """Copies artifacts into ``dst_path`` (created if missing); without one, a local
    artifact's own path, or a copy in a new temporary directory."""
    tracking_uri = _tracking(tracking_uri)
    return _download(
        artifact_uri,
        run_id,
        artifact_path,
        dst_path,
        tracking_uri,
        _run_artifact_uri_of(tracking_uri),
    )


def _list(uri, path, tracking_uri):
    from fastflow.entities import FileInfo

    return [FileInfo(*entry) for entry in _repositories.list_files(uri, path, tracking_uri)]


def _list_for(artifact_uri, run_id, artifact_path, tracking_uri, run_artifact_uri):
    _one_source(artifact_uri, run_id, artifact_path)
    if artifact_uri is not None:
        root, path = _split_uri(artifact_uri)
        return _list(_repository(root, run_artifact_uri), path, tracking_uri)
    return _list(run_artifact_uri(run_id), artifact_path, tracking_uri)


def list_artifacts(artifact_uri=None, run_id=None, artifact_path=None, tracking_uri=None):
    tracking_uri = _tracking(tracking_uri)
    return _list_for(
        artifact_uri, run_id, artifact_path, tracking_uri, _run_artifact_uri_of(tracking_uri)
    )


def _not_utf8(artifact_uri):
    return MlflowException(
        f"Artifact {artifact_uri!r} is not valid UTF-8. To read a file in another encoding, "
        "download it with `mlflow.artifacts.download_artifacts` and open it with the correct "
        "`encoding`.",
        error_code=BAD_REQUEST,
    )


def load_text(artifact_uri) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        landed = download_artifacts(artifact_uri, dst_path=tmp)
        with open(landed, encoding="utf-8") as f:
            try:
                return str(f.read())
            except UnicodeDecodeError as e:
                raise _not_utf8(artifact_uri) from e


def load_dict(artifact_uri) -> dict:
    """A JSON artifact as a dict (MLflow's ``load_dict`` reads JSON only)."""
    with tempfile.TemporaryDirectory() as tmp:
        landed = download_artifacts(artifact_uri, dst_path=tmp)
        with open(landed, encoding="utf-8") as f:
            try:
                return json.load(f)
            except UnicodeDecodeError as e:
                raise _not_utf8(artifact_uri) from e
            except json.JSONDecodeError:
                raise MlflowException(
                    "Unable to form a JSON object from file content", error_code=BAD_REQUEST
                ) from None


__all__ = ["download_artifacts", "list_artifacts", "load_dict", "load_text"]

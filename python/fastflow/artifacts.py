"""``mlflow.artifacts``: download and read artifacts of a run."""

from __future__ import annotations

import json
import os
import tempfile

from fastflow import _context, _fastflow
from fastflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException


def _root(artifact_uri, run_id, tracking_uri):
    if (artifact_uri is None) == (run_id is None):
        raise MlflowException(
            "Exactly one of `run_id` or `artifact_uri` must be specified",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if artifact_uri is not None:
        return artifact_uri
    from fastflow.tracking import MlflowClient

    return MlflowClient(tracking_uri).get_run(run_id).info.artifact_uri


def _split(artifact_uri):
    parent, _, name = artifact_uri.rstrip("/").rpartition("/")
    return parent, name


def download_artifacts(
    artifact_uri=None, run_id=None, artifact_path=None, dst_path=None, tracking_uri=None
) -> str:
    """Copies artifacts to ``dst_path`` (a new temporary directory by default)."""
    root = _root(artifact_uri, run_id, tracking_uri)
    if artifact_uri is not None and not artifact_path:
        # As MLflow does: the URI's last segment is what lands in dst_path.
        root, artifact_path = _split(artifact_uri)
    dst_path = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp()
    return _fastflow._download_artifacts(
        root, artifact_path or None, dst_path, tracking_uri or _context.get_tracking_uri()
    )


def list_artifacts(artifact_uri=None, run_id=None, artifact_path=None, tracking_uri=None):
    from fastflow.entities import FileInfo

    root = _root(artifact_uri, run_id, tracking_uri)
    listed = _fastflow._list_artifacts(
        root, artifact_path, tracking_uri or _context.get_tracking_uri()
    )
    return [FileInfo(*entry) for entry in listed]


def load_text(artifact_uri) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        parent, name = _split(artifact_uri)
        landed = _fastflow._download_artifacts(parent, name, tmp, _context.get_tracking_uri())
        with open(landed, encoding="utf-8") as f:
            return f.read()


def load_dict(artifact_uri) -> dict:
    """A JSON artifact as a dict (MLflow's ``load_dict`` reads JSON only)."""
    text = load_text(artifact_uri)
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        raise MlflowException(
            "Unable to form a JSON object from file content", error_code=INVALID_PARAMETER_VALUE
        ) from None


__all__ = ["download_artifacts", "list_artifacts", "load_dict", "load_text"]

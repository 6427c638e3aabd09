"""Where a run's artifacts go: fastflow's own transfers, or MLflow's artifact repositories.

fastflow streams to local directories (paths, ``file:``) and to a tracking server's artifact
proxy (``mlflow-artifacts:``, its ``http(s)://`` URL) itself, on a thread of its own without
the GIL. Every other location (``s3://``, ``gs://``, ``wasbs://``, ``abfss://``, ``hdfs://``,
``sftp://``, ``ftp://``, ``dbfs:/``, plugin schemes) goes through MLflow's own repository for
it, called as MLflow's client calls it, so it holds the GIL exactly as long as MLflow does
(its cloud SDKs release it while they wait on the network).
"""

from __future__ import annotations

from fastflow import _fastflow, _integrations
from fastflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

_NATIVE_SCHEMES = ("", "file", "mlflow-artifacts", "http", "https")


def _scheme(artifact_uri) -> str:
    scheme, colon, rest = str(artifact_uri).partition(":")
    if not colon or not scheme.isascii() or not scheme.replace("-", "").isalnum():
        return ""
    return scheme.lower()


def native(artifact_uri) -> bool:
    return _scheme(artifact_uri) in _NATIVE_SCHEMES


def _mlflows(artifact_uri, tracking_uri):
    repository = _integrations.ask(_integrations.FOREIGN_ARTIFACTS, artifact_uri, tracking_uri)
    if repository is None:
        from fastflow import _context

        raise MlflowException(
            f"Artifacts at '{_context.redacted(str(artifact_uri))}' are stored through "
            "MLflow's artifact repositories, and MLflow is not available: install it with "
            'pip install "fastflow[mlflow]" (and the client its store needs, e.g. boto3 for '
            "s3://)",
            error_code=INVALID_PARAMETER_VALUE,
        )
    return repository


def log_file(artifact_uri, local_path, artifact_path, tracking_uri) -> None:
    if native(artifact_uri):
        _fastflow._log_artifact(artifact_uri, local_path, artifact_path, tracking_uri)
    else:
        _mlflows(artifact_uri, tracking_uri).log_artifact(local_path, artifact_path)


def log_dir(artifact_uri, local_dir, artifact_path, tracking_uri) -> None:
    if native(artifact_uri):
        _fastflow._log_artifacts(artifact_uri, local_dir, artifact_path, tracking_uri)
    else:
        _mlflows(artifact_uri, tracking_uri).log_artifacts(local_dir, artifact_path)


def list_files(artifact_uri, path, tracking_uri) -> list:
    """``(path, is_dir, file_size)`` of each entry directly under ``path``."""
    if native(artifact_uri):
        return _fastflow._list_artifacts(artifact_uri, path, tracking_uri)
    found = _mlflows(artifact_uri, tracking_uri).list_artifacts(path)
    return [(f.path, f.is_dir, f.file_size) for f in found]


def download(artifact_uri, path, dst_path, tracking_uri) -> str:
    """Copies ``path`` (all of the repository when empty) into the existing directory
    ``dst_path``; answers where it landed."""
    if native(artifact_uri):
        return _fastflow._download_artifacts(artifact_uri, path, dst_path, tracking_uri)
    return _mlflows(artifact_uri, tracking_uri).download_artifacts(path or "", dst_path)


def local_path(artifact_uri, path, tracking_uri):
    """The artifact's own file when the repository is a local directory, else None."""
    if native(artifact_uri):
        return _fastflow._local_artifact_path(artifact_uri, path, tracking_uri)
    return None

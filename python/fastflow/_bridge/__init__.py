"""The MLflow bridge: MLflow's own code (models, registry, autolog, datasets, evaluation, and
every library that calls MLflow) runs on fastflow's runs, store and writer.

Installed once MLflow is in the process: at the first use of a name only MLflow has, when
anyone imports ``mlflow`` after ``fastflow``, or when ``fastflow`` is imported after
``mlflow``. ``import fastflow`` alone never imports MLflow.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading

EXTRA_HINT = 'install MLflow with: pip install "fastflow[mlflow]"'
_OFF_HINT = "the MLflow bridge is off in this process (FASTFLOW_MLFLOW_BRIDGE=0)"

_install_lock = threading.RLock()
_installed = False
# FASTFLOW_MLFLOW_BRIDGE=0 leaves MLflow as it is, for a process that wants both libraries
# side by side, each with its own state (a test that reads with pure MLflow, say).
_off = os.environ.get("FASTFLOW_MLFLOW_BRIDGE", "1").strip().lower() in ("0", "false", "off")


def turn_off() -> None:
    """Keeps the bridge out of this process (children follow FASTFLOW_MLFLOW_BRIDGE)."""
    global _off
    _off = True


def refusal() -> str:
    return _OFF_HINT if _off else EXTRA_HINT


def available() -> bool:
    if _off:
        return False
    if "mlflow" in sys.modules:
        return True
    try:
        return importlib.util.find_spec("mlflow") is not None
    except (ImportError, ValueError):
        return False


def installed() -> bool:
    """Whether MLflow in this process runs on fastflow's state, stores and writer."""
    return _installed


def install() -> None:
    """Makes MLflow's fluent state fastflow's and routes its logging through fastflow."""
    global _installed
    if _installed or _off:
        return
    with _install_lock:
        if _installed:
            return
        import mlflow  # noqa: F401  (the watcher calls back here once it is loaded)

        if _installed:
            return
        from fastflow._bridge import entry_points, state, stores

        state.install()
        stores.install()
        entry_points.install()
        _installed = True


def uninstall() -> None:
    """Gives MLflow back its own fluent state, stores and functions (fastflow's runs stay
    fastflow's); the next use of a name only MLflow has installs the bridge again."""
    global _installed
    with _install_lock:
        if not _installed:
            return
        from fastflow._bridge import undo

        undo.undo_all()
        _installed = False


def turn_on() -> None:
    global _off
    _off = False


def mlflow_attribute(owner: str, name: str, source: str = "mlflow"):
    """``owner.name`` for a name fastflow leaves to MLflow: MLflow's ``source.name``."""
    if name.startswith("__"):
        raise AttributeError(f"module {owner!r} has no attribute {name!r}")
    if not available():
        raise AttributeError(
            f"module {owner!r} has no attribute {name!r}: {name!r} is MLflow's; {refusal()}"
        )
    install()
    module = importlib.import_module(source)
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module {owner!r} has no attribute {name!r}") from None


def log_linked_metrics(name, args):
    """``fastflow.log_metric(s)`` with ``model_id`` or ``dataset``: MLflow's own function."""
    if not available():
        from fastflow.exceptions import MlflowException

        raise MlflowException(
            f"Metrics linked to a model or a dataset are recorded by MLflow; {refusal()}",
            error_code="INVALID_PARAMETER_VALUE",
        )
    install()
    from fastflow._bridge import entry_points

    return (entry_points.ORIGINALS[name](*args),)


_mlflow_clients: dict = {}


def mlflow_client_attribute(tracking_uri, registry_uri, name):
    """``fastflow.MlflowClient().<name>`` for a method only MLflow's client has."""
    if not available():
        raise AttributeError(
            f"'MlflowClient' object has no attribute {name!r}: {name!r} is MLflow's; " + refusal()
        )
    install()
    key = (tracking_uri, registry_uri)
    client = _mlflow_clients.get(key)
    if client is None:
        from mlflow.tracking import MlflowClient

        client = _mlflow_clients[key] = MlflowClient(tracking_uri, registry_uri)
    return (getattr(client, name),)


def foreign_tracker(uri):
    """A store only MLflow serves (postgresql://, file:, databricks, ...), through MLflow."""
    if not available():
        return None
    install()
    from fastflow._bridge.foreign import ForeignTracker

    return ForeignTracker(uri)


def artifact_repository(artifact_uri, tracking_uri):
    """MLflow's repository for an artifact location fastflow does not serve (s3://, gs://,
    wasbs://, abfss://, hdfs://, sftp://, ftp://, dbfs:/, plugins)."""
    if not available():
        return None
    install()
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri, tracking_uri=tracking_uri)


# Plain classes, not importlib.abc's: that module would load typing and more into every
# ``import fastflow``; the import system needs only these methods.
class _InstallAfterLoading:
    """MLflow's own loader, followed by the bridge's installation."""

    def __init__(self, loader):
        self._loader = loader

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        # MLflow is complete in sys.modules here: what its __init__ imported is loaded.
        install()

    def __getattr__(self, name):
        return getattr(self._loader, name)


class _MlflowWatcher:
    """Sees ``import mlflow`` by anyone (a library, autologging, the user) after fastflow."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname != "mlflow" or _installed or _off:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        spec.loader = _InstallAfterLoading(spec.loader)
        return spec


def watch() -> None:
    """Called once at ``import fastflow``."""
    from fastflow import _integrations

    _integrations.register(_integrations.FOREIGN_STORE, foreign_tracker)
    _integrations.register(_integrations.FOREIGN_ARTIFACTS, artifact_repository)
    _integrations.register(_integrations.LINKED_METRICS, log_linked_metrics)
    _integrations.register(_integrations.MLFLOW_CLIENT, mlflow_client_attribute)
    if _off:
        return
    if "mlflow.tracking.fluent" in sys.modules:
        install()
        return
    if not any(isinstance(finder, _MlflowWatcher) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MlflowWatcher())

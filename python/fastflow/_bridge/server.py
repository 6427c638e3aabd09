"""``mlflow server --app-name fastflow`` (and ``mlflow ui --app-name fastflow``): MLflow's
tracking server and UI, with the bridge installed in each of its workers.

``mlflow server`` runs its app in worker processes it starts itself (uvicorn, gunicorn or
waitress), so importing fastflow in the process that runs the command reaches none of them.
An app named in MLflow's ``mlflow.app`` entry points is imported by every worker: this one
installs the bridge there and has MLflow's server build fastflow's store for ``sqlite://``.
"""

from __future__ import annotations

import functools
import os


def serve_sqlite(registry) -> None:
    """Makes MLflow's server registry (not the client's one the bridge already serves) build
    fastflow's SQL store for ``sqlite://``."""
    from mlflow.environment_variables import MLFLOW_ENABLE_WORKSPACES
    from mlflow.server.constants import READ_REPLICA_BACKEND_STORE_URI_ENV_VAR

    from fastflow._bridge import stores

    # The workspace-aware store and the one reading from a replica are other classes than
    # the bridge subclasses: MLflow's own serves them.
    if MLFLOW_ENABLE_WORKSPACES.get() or os.environ.get(READ_REPLICA_BACKEND_STORE_URI_ENV_VAR):
        return
    registry.register("sqlite", functools.partial(stores._sqlite_store, answers_when_written=True))
    registry._get_store_with_resolved_uri.cache_clear()


def create_app():
    """MLflow's app for the server MLflow runs (ASGI under uvicorn, WSGI otherwise)."""
    import fastflow  # noqa: F401  (watches for MLflow: the bridge installs as it loads)
    from fastflow import _bridge

    _bridge.install()
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app, handlers

    if _bridge.installed():
        serve_sqlite(handlers._tracking_store_registry)
        # A store MLflow built while its server was imported would be used from now on.
        handlers._tracking_store = None
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import app as asgi_app

        return asgi_app
    return app

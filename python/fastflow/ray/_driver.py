"""The driver's tracking context, shared with the job's Ray workers.

The driver publishes its tracking URI, experiment, artifact root and active run in Ray's
key-value store whenever they change; a worker reads them when it starts a run, so no
argument or environment variable has to be threaded through tasks by hand. A context passed
explicitly (``FASTFLOW_RAY_CONTEXT``, see ``fastflow.ray.runtime_env``) wins over it.

Nothing here imports Ray: it is only consulted when the process has imported Ray already.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

CONTEXT_ENV = "FASTFLOW_RAY_CONTEXT"
_NAMESPACE = "fastflow"
# Workers re-read the context at most this often, except when they start a top-level run.
_CACHE_SECONDS = 1.0

_lock = threading.Lock()
_cache: dict = {}
_hook_registered = False


def _ray():
    ray = sys.modules.get("ray")
    if ray is None:
        return None
    try:
        return ray if ray.is_initialized() else None
    except Exception:
        return None


def _key(ray) -> str:
    return f"context/{ray.get_runtime_context().get_job_id()}"


def _kv():
    from ray.experimental import internal_kv

    return internal_kv


def in_worker() -> bool:
    """Whether this process runs Ray tasks or actors for a driver."""
    ray = _ray()
    if ray is None:
        return False
    try:
        return ray._private.worker.global_worker.mode == ray.WORKER_MODE
    except Exception:
        return False


def in_driver() -> bool:
    ray = _ray()
    if ray is None:
        return False
    try:
        return ray._private.worker.global_worker.mode == ray.SCRIPT_MODE
    except Exception:
        return False


def current_task():
    """The id of the plain Ray task this worker runs now; None in actors and outside Ray."""
    if not in_worker():
        return None
    runtime = _ray().get_runtime_context()
    if runtime.get_actor_id() is not None:
        return None
    return runtime.get_task_id()


def worker_context(refresh: bool = False):
    """The driver's context as this worker sees it, or None outside Ray workers."""
    if "ray" not in sys.modules and CONTEXT_ENV not in os.environ:
        return None
    explicit = os.environ.get(CONTEXT_ENV)
    if explicit:
        return json.loads(explicit)
    if not in_worker():
        return None
    ray = _ray()
    now = time.monotonic()
    cached = _cache.get("worker")
    if cached and not refresh and now - cached[0] < _CACHE_SECONDS:
        return cached[1]
    try:
        raw = _kv()._internal_kv_get(_key(ray), namespace=_NAMESPACE)
    except Exception:
        raw = None
    context = json.loads(raw) if raw else None
    _cache["worker"] = (now, context)
    return context


def publish(top_run=None) -> None:
    """Called in the driver whenever its tracking state changes; cheap when Ray is unused."""
    if "ray" not in sys.modules:
        return
    ray = _ray()
    if ray is None:
        _publish_after_init()
        return
    if not in_driver():
        return
    from fastflow import _context, _databricks, fluent

    if top_run is None:
        top_run = fluent.active_run()
    experiment_id = fluent._active_experiment_id or os.environ.get("MLFLOW_EXPERIMENT_ID")
    if top_run is not None:
        experiment_id = top_run.info.experiment_id
    context = {
        "tracking_uri": _context.get_tracking_uri(),
        "artifact_root": _context.default_artifact_root(),
        "experiment_id": experiment_id,
        "parent_run_id": top_run.info.run_id if top_run is not None else None,
        "driver_node_id": ray.get_runtime_context().get_node_id(),
        "funnel": None,
    }
    # A workspace's host and credentials as the driver resolved them: workers need no
    # environment or configuration file of their own, and the token travels only in Ray's
    # own store.
    workspaces = _databricks.for_workers([context["tracking_uri"]])
    if workspaces:
        context["workspaces"] = workspaces
    from fastflow.ray import _funnel

    context["funnel"] = _funnel.driver_funnel(ray, context)
    with _lock:
        _kv()._internal_kv_put(
            _key(ray), json.dumps(context).encode(), overwrite=True, namespace=_NAMESPACE
        )


def _publish_after_init() -> None:
    """Ray is imported but not started: publish as soon as ``ray.init`` returns."""
    global _hook_registered
    if _hook_registered:
        return
    try:
        from ray._private import worker

        worker._post_init_hooks.append(_publish_quietly)
        _hook_registered = True
    except Exception:
        pass


def _publish_quietly() -> None:
    try:
        publish(None)
    except Exception:
        # Ray just started; the next change of the tracking state publishes again.
        pass

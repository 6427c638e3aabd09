"""fastflow for Ray: child runs from tasks, actors and Tune trials under the driver's run.

The driver's tracking URI, experiment and active run reach its workers on their own: inside
a task or actor, ``fastflow.start_run(nested=True)`` starts a child of the driver's active
run. Workers that cannot open the driver's SQLite store (other nodes) log through a funnel
actor on the driver's node (``FASTFLOW_RAY_FUNNEL``: auto, always, never).

``MLflowLoggerCallback`` and ``setup_mlflow`` take the arguments of Ray's MLflow integration:
switching is a change of import line.
"""

from __future__ import annotations

import json

from fastflow.ray._driver import CONTEXT_ENV
from fastflow.ray._funnel import FUNNEL_ENV

__all__ = ["CONTEXT_ENV", "FUNNEL_ENV", "MLflowLoggerCallback", "runtime_env", "setup_mlflow"]


def runtime_env(base=None, parent_run_id=None) -> dict:
    """A Ray ``runtime_env`` that pins this process's tracking context for a task or actor.

    Workers find the driver's context by themselves; this is for pinning another parent
    (``parent_run_id``) or the context as it is now, e.g. ``f.options(runtime_env=...)``.
    """
    from fastflow import _context, fluent

    active = fluent.active_run()
    experiment_id = fluent._get_experiment_id()
    if parent_run_id is None and active is not None:
        parent_run_id = active.info.run_id
        experiment_id = active.info.experiment_id
    context = {
        "tracking_uri": _context.get_tracking_uri(),
        "artifact_root": _context.default_artifact_root(),
        "experiment_id": experiment_id,
        "parent_run_id": parent_run_id,
        "driver_node_id": None,
        "funnel": None,
    }
    env = dict(base or {})
    env_vars = dict(env.get("env_vars") or {})
    env_vars[CONTEXT_ENV] = json.dumps(context)
    env["env_vars"] = env_vars
    return env


def __getattr__(name):
    # Ray Tune takes a second to import: only code that asks for these pays for it.
    if name in ("MLflowLoggerCallback", "setup_mlflow"):
        from fastflow.ray import _tune

        return getattr(_tune, name)
    raise AttributeError(f"module 'fastflow.ray' has no attribute {name!r}")

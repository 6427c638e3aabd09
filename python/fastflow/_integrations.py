"""The seam the integrations hang off the run stack.

The fluent core announces what happens to runs here and asks here for what only an
integration knows (a Ray worker's driver context, the task a run belongs to); it never
imports an integration. Ray's part is registered by ``_context`` (which decides where runs
go), the MLflow bridge's when MLflow enters the process. Handlers run in registration order.
"""

from __future__ import annotations

import threading

_lock = threading.Lock()
_handlers: dict = {}

# Events the fluent core emits, and what each handler receives.
STACK_CHANGED = "stack_changed"  # (top run or None): a thread's active run changed
RUN_ENDING = "run_ending"  # (run_id, status): a run is about to end by end_run
EXPERIMENT_SET = "experiment_set"  # (experiment_id)
TRACKING_URI_SET = "tracking_uri_set"  # (uri)
# Questions: the first handler answering something other than None wins.
TASK_OF_THIS_CALL = "task_of_this_call"  # () -> the unit of work a new run belongs to
WORKER_CONTEXT = "worker_context"  # (refresh) -> the context a parent process shares
WORKER_TRACKER = "worker_tracker"  # (uri) -> a tracker through a process that holds the store
FORKED_CHILD = "forked_child"  # (): this process was just forked
FOREIGN_STORE = "foreign_store"  # (uri) -> a tracker for a store fastflow does not serve
# (artifact_uri, tracking_uri) -> MLflow's repository for a location fastflow does not serve
FOREIGN_ARTIFACTS = "foreign_artifacts"
LINKED_METRICS = "linked_metrics"  # (name, args) -> (result,): metrics tied to a model/dataset
MLFLOW_CLIENT = "mlflow_client"  # (tracking_uri, registry_uri, name) -> (MLflow's attribute,)
LINKS_MODELS = "links_models"  # () -> True where points of a model's step are linked to it


def register(event: str, handler) -> None:
    with _lock:
        handlers = list(_handlers.get(event, ()))
        if handler not in handlers:
            handlers.append(handler)
        _handlers[event] = tuple(handlers)


def unregister(event: str, handler) -> None:
    with _lock:
        _handlers[event] = tuple(h for h in _handlers.get(event, ()) if h is not handler)


def emit(event: str, *args) -> None:
    for handler in _handlers.get(event, ()):
        handler(*args)


def ask(event: str, *args):
    for handler in _handlers.get(event, ()):
        answer = handler(*args)
        if answer is not None:
            return answer
    return None

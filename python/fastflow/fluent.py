"""The fluent API: a per-thread stack of active runs, as in MLflow.

The Rust extension keeps a copy of each thread's top run so that ``log_metric`` needs no
Python code at all; every change to a stack goes through ``_publish`` to keep them equal.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading

from fastflow import _context, _fastflow, _search
from fastflow.entities import Run, RunStatus, ViewType
from fastflow.exceptions import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    MlflowException,
)
from fastflow.tracking.client import MlflowClient

_PARENT_TAG = "mlflow.parentRunId"
_RUN_NAME_TAG = "mlflow.runName"
_NOTE_TAG = "mlflow.note.content"

_thread_state = threading.local()
_active_experiment_id = None
_experiment_lock = threading.Lock()


def _stack() -> list:
    stack = getattr(_thread_state, "stack", None)
    if stack is None:
        stack = _thread_state.stack = []
    return stack


def _publish() -> None:
    stack = _stack()
    if stack:
        top = stack[-1]
        _fastflow._set_thread_run(top._tracker, top.info.run_id)
    else:
        _fastflow._set_thread_run(None, None)
    _context.publish_to_ray(stack[-1] if stack else None)


class ActiveRun(Run):
    """The run returned by ``start_run``; as a context manager it ends the run on exit."""

    def __init__(self, run, tracker=None):
        Run.__init__(self, run.info, run.data, run.inputs, run.outputs)
        self._tracker = tracker if tracker is not None else _context.tracker()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if any(r.info.run_id == self.info.run_id for r in _stack()):
            end_run(
                RunStatus.to_string(RunStatus.FINISHED if exc_type is None else RunStatus.FAILED)
            )
        return exc_type is None


def _ray_task_of_this_call():
    """The Ray task running this code, when it is a plain task (not an actor method)."""
    if "ray" not in sys.modules:
        return None
    from fastflow.ray import _driver

    return _driver.current_task()


def _end_runs_left_by_other_tasks(stack, ray_task) -> None:
    """A Ray worker process runs one task after another. A run an earlier task left open
    must not become the parent of this task's runs. A run it started explicitly ends as
    FAILED (its task never reached its end: it raised outside a ``with`` block); one that
    logging started implicitly ends as FINISHED, as it would at process exit."""
    while stack and getattr(stack[0], "_ray_task", None) not in (None, ray_task):
        end_run("FINISHED" if getattr(stack[-1], "_auto_started", False) else "FAILED")


class RunOperations:
    """What MLflow returns for ``synchronous=False``: ``wait()`` until the data is written."""

    def wait(self):
        flush()


def _client() -> MlflowClient:
    return MlflowClient()


# ---- experiments ---------------------------------------------------------------------------


def set_experiment(experiment_name=None, experiment_id=None, trace_location=None):
    """Makes an experiment active (creating it by name if needed) and exports its id."""
    global _active_experiment_id
    if (experiment_name is None) == (experiment_id is None):
        raise MlflowException(
            "Must specify exactly one of: `experiment_id` or `experiment_name`.",
            error_code=INVALID_PARAMETER_VALUE,
        )
    client = _client()
    with _experiment_lock:
        if experiment_id is None:
            experiment = client.get_experiment_by_name(experiment_name)
            if experiment is None:
                try:
                    experiment_id = client.create_experiment(experiment_name)
                except MlflowException as e:
                    if e.error_code != RESOURCE_ALREADY_EXISTS:
                        raise
                experiment = client.get_experiment_by_name(experiment_name)
        else:
            experiment = client.get_experiment(str(experiment_id))
        if experiment.lifecycle_stage != "active":
            raise MlflowException(
                f"Cannot set a deleted experiment {experiment.name!r} as the active experiment. "
                "You can restore the experiment, or permanently delete the experiment to create "
                "a new one.",
                error_code=INVALID_PARAMETER_VALUE,
            )
        _active_experiment_id = experiment.experiment_id
        os.environ["MLFLOW_EXPERIMENT_ID"] = _active_experiment_id
    _context.publish_to_ray(active_run())
    return experiment


def _experiment_id_from_env():
    name = os.environ.get("MLFLOW_EXPERIMENT_NAME")
    env_id = os.environ.get("MLFLOW_EXPERIMENT_ID")
    client = _client()
    if name:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            try:
                return client.create_experiment(name)
            except MlflowException as e:
                if e.error_code != RESOURCE_ALREADY_EXISTS:
                    raise
                experiment = client.get_experiment_by_name(name)
        if env_id and env_id != experiment.experiment_id:
            raise MlflowException(
                f"The provided MLFLOW_EXPERIMENT_ID environment variable value `{env_id}` does "
                f"not match the experiment id `{experiment.experiment_id}` for experiment name "
                f"`{name}`",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return experiment.experiment_id
    if env_id:
        try:
            return client.get_experiment(env_id).experiment_id
        except MlflowException:
            raise MlflowException(
                f"The provided MLFLOW_EXPERIMENT_ID environment variable value `{env_id}` does "
                "not exist in the tracking server. Provide a valid experiment_id.",
                error_code=INVALID_PARAMETER_VALUE,
            ) from None
    return None


def _get_experiment_id() -> str:
    if _active_experiment_id:
        return _active_experiment_id
    driver = _context.ray_worker_context()
    if driver is not None and driver.get("experiment_id"):
        return driver["experiment_id"]
    return _experiment_id_from_env() or "0"


def create_experiment(name, artifact_location=None, tags=None, trace_location=None):
    return _client().create_experiment(name, artifact_location, tags)


def get_experiment(experiment_id):
    return _client().get_experiment(experiment_id)


def get_experiment_by_name(name):
    return _client().get_experiment_by_name(name)


def delete_experiment(experiment_id) -> None:
    _client().delete_experiment(experiment_id)


def restore_experiment(experiment_id) -> None:
    _client().restore_experiment(experiment_id)


def set_experiment_tag(key, value) -> None:
    _client().set_experiment_tag(_get_experiment_id(), key, value)


def set_experiment_tags(tags) -> None:
    client = _client()
    experiment_id = _get_experiment_id()
    for key, value in tags.items():
        client.set_experiment_tag(experiment_id, key, value)


# ---- runs ----------------------------------------------------------------------------------


def start_run(
    run_id=None,
    experiment_id=None,
    run_name=None,
    nested=False,
    parent_run_id=None,
    tags=None,
    description=None,
    log_system_metrics=None,
) -> ActiveRun:
    """Starts a new run, or resumes ``run_id``, and makes it this thread's active run."""
    stack = _stack()
    if experiment_id is not None and not isinstance(experiment_id, (str, int)):
        raise MlflowException(
            f"Invalid experiment id: {experiment_id} of type {type(experiment_id)}. "
            "Must be one of str, int, or None.",
            error_code=INVALID_PARAMETER_VALUE,
        )
    experiment_id = str(experiment_id) if experiment_id is not None else None
    ray_task = _ray_task_of_this_call()
    if stack and ray_task is not None:
        _end_runs_left_by_other_tasks(stack, ray_task)
    if not stack:
        # A Ray worker outlives the driver's runs: read where the driver logs now.
        driver = _context.ray_worker_context(refresh=True)
    if stack and not nested:
        raise Exception(
            f"Run with UUID {stack[0].info.run_id} is already active. To start a new run, first "
            "end the current run with mlflow.end_run(). To start a nested run, call start_run "
            "with nested=True"
        )
    client = _client()
    existing_run_id = run_id or os.environ.pop("MLFLOW_RUN_ID", None)
    user_tags = {k: str(v) for k, v in (tags or {}).items()}
    if description:
        if _NOTE_TAG in user_tags:
            raise MlflowException(
                f"Description is already set via the tag {_NOTE_TAG} in tags.Remove the key "
                f"{_NOTE_TAG} from the tags or omit the description.",
                error_code=INVALID_PARAMETER_VALUE,
            )
        user_tags[_NOTE_TAG] = description
    if existing_run_id:
        run = client.get_run(existing_run_id)
        if _active_experiment_id is not None and _active_experiment_id != run.info.experiment_id:
            raise MlflowException(
                f"Cannot start run with ID {existing_run_id} because active experiment ID does "
                "not match environment run ID. Make sure --experiment-name or --experiment-id "
                "matches experiment set with set_experiment(), or just use command-line arguments"
            )
        if run.info.lifecycle_stage == "deleted":
            raise MlflowException(
                f"Cannot start run with ID {existing_run_id} because it is in the deleted state."
            )
        client._tracker.update_run(existing_run_id, "RUNNING", run.info.end_time, run_name)
        if user_tags:
            client._tracker.set_tags(existing_run_id, list(user_tags.items()))
        run = client.get_run(existing_run_id)
    else:
        if parent_run_id:
            if stack and parent_run_id != stack[-1].info.run_id:
                current = stack[-1].info.run_id
                raise MlflowException(
                    f"Current run with UUID {current} does not match the specified parent_run_id "
                    f"{parent_run_id}. To start a new nested run under the parent run with UUID "
                    f"{current}, first end the current run with mlflow.end_run()."
                )
            parent = client.get_run(parent_run_id)
            if parent.info.lifecycle_stage == "deleted":
                raise MlflowException(
                    f"Cannot start run under parent run with ID {parent_run_id} because it is in "
                    "the deleted state."
                )
        elif stack:
            parent_run_id = stack[-1].info.run_id
        elif nested and driver is not None:
            # In a Ray worker, the driver's active run is the bottom of every stack.
            parent_run_id = driver.get("parent_run_id")
        if parent_run_id is not None:
            user_tags[_PARENT_TAG] = parent_run_id
        if run_name:
            user_tags[_RUN_NAME_TAG] = run_name
        resolved = _context.system_tags()
        resolved.update(user_tags)
        run = client.create_run(
            experiment_id if experiment_id is not None else _get_experiment_id(),
            tags=resolved,
            run_name=run_name,
        )
    active = ActiveRun(run, client._tracker)
    active._ray_task = ray_task
    stack.append(active)
    _publish()
    return active


def end_run(status: str = "FINISHED") -> None:
    """Ends this thread's active run with ``status`` once everything it logged is written."""
    stack = _stack()
    if not stack:
        return
    os.environ.pop("MLFLOW_RUN_ID", None)
    run = stack.pop()
    _publish()
    _thread_state.last_active_run_id = run.info.run_id
    MlflowClient(run._tracker.uri).set_terminated(run.info.run_id, status)


def active_run():
    stack = _stack()
    return stack[-1] if stack else None


def last_active_run():
    current = active_run()
    if current is not None:
        return current
    last = getattr(_thread_state, "last_active_run_id", None)
    return get_run(last) if last else None


def get_run(run_id) -> Run:
    return _client().get_run(run_id)


def delete_run(run_id) -> None:
    _client().delete_run(run_id)


def restore_run(run_id) -> None:
    _client().restore_run(run_id)


def _get_or_start_run() -> ActiveRun:
    stack = _stack()
    if stack:
        return stack[-1]
    run = start_run()
    run._auto_started = True
    return run


def _run_for_logging(run_id):
    """Where a fluent ``log_metric`` goes when this thread has no run yet: (store, run id)."""
    if run_id is None:
        run = _get_or_start_run()
        return run._tracker, run.info.run_id
    tracker = _context.tracker()
    ensure_run = getattr(tracker, "_ensure_run", None)
    if ensure_run is not None:
        ensure_run(run_id)
    return tracker, run_id


# ---- params and tags -----------------------------------------------------------------------


def _async_result(synchronous):
    if synchronous is False:
        return RunOperations()
    if synchronous:
        flush()
    return None


def log_param(key, value, synchronous=None):
    run = _get_or_start_run()
    MlflowClient(run._tracker.uri).log_param(run.info.run_id, key, value)
    result = _async_result(synchronous)
    return value if result is None else result


def _chunks(items, size=100):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def log_params(params, synchronous=None, run_id=None):
    tracker, run_id = _run_for_logging(run_id)
    for chunk in _chunks([(k, str(v)) for k, v in params.items()]):
        tracker.log_batch(run_id, [], chunk, [])
    return _async_result(synchronous)


def set_tag(key, value, synchronous=None):
    run = _get_or_start_run()
    MlflowClient(run._tracker.uri).set_tag(run.info.run_id, key, value)
    return _async_result(synchronous)


def set_tags(tags, synchronous=None):
    tracker, run_id = _run_for_logging(None)
    for chunk in _chunks([(k, str(v)) for k, v in tags.items()]):
        tracker.log_batch(run_id, [], [], chunk)
    return _async_result(synchronous)


def delete_tag(key) -> None:
    run = _get_or_start_run()
    MlflowClient(run._tracker.uri).delete_tag(run.info.run_id, key)


def flush() -> None:
    """Blocks until everything this process logged is in its store (raises what failed)."""
    _fastflow._flush_all()


flush_async_logging = flush


# ---- artifacts ------------------------------------------------------------------------------


def _artifact_run_id(run_id):
    return run_id or _get_or_start_run().info.run_id


def log_artifact(local_path, artifact_path=None, run_id=None) -> None:
    _client().log_artifact(_artifact_run_id(run_id), local_path, artifact_path)


def log_artifacts(local_dir, artifact_path=None, run_id=None) -> None:
    _client().log_artifacts(_artifact_run_id(run_id), local_dir, artifact_path)


def log_text(text, artifact_file, run_id=None) -> None:
    _client().log_text(_artifact_run_id(run_id), text, artifact_file)


def log_dict(dictionary, artifact_file, run_id=None) -> None:
    _client().log_dict(_artifact_run_id(run_id), dictionary, artifact_file)


def log_stream(stream, artifact_file, run_id=None) -> None:
    _client().log_stream(_artifact_run_id(run_id), stream, artifact_file)


def log_figure(figure, artifact_file, *, save_kwargs=None) -> None:
    _client().log_figure(_artifact_run_id(None), figure, artifact_file, save_kwargs=save_kwargs)


def log_image(
    image, artifact_file=None, key=None, step=None, timestamp=None, synchronous=False
) -> None:
    _client().log_image(
        _artifact_run_id(None), image, artifact_file, key, step, timestamp, synchronous
    )


def log_table(data, artifact_file, run_id=None) -> None:
    _client().log_table(_artifact_run_id(run_id), data, artifact_file)


def load_table(artifact_file, run_ids=None, extra_columns=None):
    """The table ``artifact_file`` of the active experiment's runs, as a pandas DataFrame."""
    return _client().load_table(_get_experiment_id(), artifact_file, run_ids, extra_columns)


def get_artifact_uri(artifact_path=None) -> str:
    """The URI of the active run's artifacts, or of ``artifact_path`` among them."""
    root = _get_or_start_run().info.artifact_uri
    if not artifact_path:
        return root
    _fastflow._check_artifact_path(artifact_path)
    return root.rstrip("/") + "/" + artifact_path


# ---- search --------------------------------------------------------------------------------


def search_experiments(
    view_type=ViewType.ACTIVE_ONLY, max_results=None, filter_string=None, order_by=None
):
    """Every experiment matching ``filter_string`` (or the first ``max_results``)."""
    _search.check_max_results(max_results, allow_none=True, threshold=None)
    client = _client()
    found, token = [], None
    while True:
        page_size = _search.SEARCH_MAX_RESULTS_DEFAULT
        if max_results is not None:
            page_size = min(page_size, max_results - len(found))
        page = client.search_experiments(view_type, page_size, filter_string, order_by, token)
        found.extend(page)
        token = page.token
        if not token or (max_results is not None and len(found) >= max_results):
            return found


def search_runs(
    experiment_ids=None,
    filter_string="",
    run_view_type=ViewType.ACTIVE_ONLY,
    max_results=_search.SEARCH_MAX_RESULTS_PANDAS,
    order_by=None,
    output_format="pandas",
    search_all_experiments=False,
    experiment_names=None,
):
    """MLflow's ``search_runs``: a pandas DataFrame (or ``Run``s with ``output_format="list"``)."""
    no_ids = not experiment_ids
    no_names = not experiment_names
    if not no_ids and not no_names:
        raise MlflowException(
            "Only experiment_ids or experiment_names can be used, but not both",
            error_code=INVALID_PARAMETER_VALUE,
        )
    if output_format not in ("pandas", "list"):
        raise ValueError(
            f"Unsupported output format: {output_format}. Supported string values are 'pandas' "
            "or 'list'"
        )
    client = _client()
    if no_ids and no_names:
        if search_all_experiments:
            experiment_ids = [e.experiment_id for e in search_experiments(ViewType.ACTIVE_ONLY)]
        else:
            experiment_ids = [_get_experiment_id()]
    elif not no_names:
        experiment_ids = []
        for name in experiment_names:
            if name is None:
                continue
            experiment = client.get_experiment_by_name(name)
            if experiment is None:
                logging.getLogger("fastflow").warning("Cannot retrieve experiment by name %s", name)
            else:
                experiment_ids.append(experiment.experiment_id)
    elif isinstance(experiment_ids, (int, str)):
        experiment_ids = [experiment_ids]
    _search.check_max_results(max_results, threshold=None)
    experiment_ids = [str(e) for e in experiment_ids]
    rows = (
        client._tracker.search_runs(
            experiment_ids,
            filter_string or "",
            int(run_view_type),
            list(order_by or []),
            0,
            max_results,
            as_columns=output_format == "pandas",
        )
        if experiment_ids
        else None
    )
    if output_format == "list":
        return [Run._from_row(r) for r in rows] if rows else []
    if rows is None:
        rows = (([], [], [], [], [], []), [], [], [])
    return _search.frame(rows)


def get_parent_run(run_id):
    return _client().get_parent_run(run_id)


# ---- process life --------------------------------------------------------------------------


def _end_runs_at_exit() -> None:
    try:
        end_run()
    except Exception as e:
        print(f"fastflow: could not end the active run at exit: {e}", file=sys.stderr)
    try:
        _fastflow._flush_all()
    except Exception as e:
        print(f"fastflow: logged data could not be written at exit: {e}", file=sys.stderr)


def _after_fork_in_child() -> None:
    global _thread_state
    _fastflow._after_fork_in_child()
    _context._forget_trackers_after_fork()
    _thread_state = threading.local()


atexit.register(_end_runs_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
# A driver that imported Ray first shares its tracking context as soon as Ray starts, so
# workers log to the driver's store even before the driver starts a run.
if "ray" in sys.modules:
    _context.publish_to_ray(None)

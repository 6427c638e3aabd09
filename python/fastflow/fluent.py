"""The fluent API: a per-thread stack of active runs, as in MLflow.

The Rust extension keeps a copy of each thread's top run so that ``log_metric`` needs no
Python code at all; a stack publishes every change to it, whoever makes it (with MLflow in
the process, MLflow's own fluent functions push and pop on these same stacks).
Integrations hear of runs and answer questions through ``_integrations``.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading

from fastflow import _context, _fastflow, _integrations, _logs, _search, system_metrics
from fastflow import artifacts as _artifacts
from fastflow.entities import Param, Run, RunStatus, RunTag, ViewType
from fastflow.entities.run import RunOutputs
from fastflow.exceptions import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_ALREADY_EXISTS,
    MlflowException,
)
from fastflow.tracking.client import MlflowClient, RunOperations, log_batch

_PARENT_TAG = "mlflow.parentRunId"
_RUN_NAME_TAG = "mlflow.runName"
_NOTE_TAG = "mlflow.note.content"

_thread_state = threading.local()
# Every thread's run stack by thread id, for ending them all on SIGTERM.
_stacks = {}
_active_experiment_id = None
_experiment_lock = threading.Lock()


class _RunStack(list):
    """A thread's active runs, innermost last. Pushing and popping publish the new top."""

    def append(self, run) -> None:
        if not hasattr(run, "_tracker"):
            # A run MLflow's own start_run pushed: it lives in the current store.
            run._tracker = _context.tracker()
        _watch_model_outputs(run)
        list.append(self, run)
        _publish(self)

    def pop(self, index=-1):
        run = list.pop(self, index)
        _publish(self)
        return run

    def clear(self) -> None:
        list.clear(self)
        _publish(self)


# Runs another library had active per thread when fastflow took over its state (MLflow's
# runs started before ``import fastflow``), taken up by each thread's stack when it is made.
_adopted: dict = {}


def _adopt_stacks(stacks: dict) -> None:
    for runs in stacks.values():
        for run in runs:
            if not hasattr(run, "_tracker"):
                run._tracker = _context.tracker()
    _adopted.update({ident: list(runs) for ident, runs in stacks.items() if runs})
    for ident, stack in list(_stacks.items()):
        runs = _adopted.pop(ident, None)
        if runs:
            list.extend(stack, runs)
    _publish(_stack())


class _ModelOutputs(list):
    """A run's logged models. MLflow's ``log_model`` appends to the active run's list; the
    thread's run is published again, so that points of that step are linked to the model."""

    def __init__(self, outputs, run):
        super().__init__(outputs)
        self._run = run

    def append(self, output) -> None:
        list.append(self, output)
        stack = getattr(_thread_state, "stack", None)
        if stack and stack[-1] is self._run:
            _publish(stack)


def _watch_model_outputs(run) -> None:
    if isinstance(run, ActiveRun):
        return  # its _outputs property watches whatever MLflow's log_model puts there
    outputs = getattr(run, "_outputs", None)
    if outputs is None:
        run._outputs = outputs = RunOutputs()
    _watch_outputs_of(run, outputs)


def _watch_outputs_of(run, outputs) -> None:
    models = getattr(outputs, "_model_outputs", None)
    if models is not None and not isinstance(models, _ModelOutputs):
        outputs._model_outputs = _ModelOutputs(models, run)


def _stack() -> _RunStack:
    stack = getattr(_thread_state, "stack", None)
    if stack is None:
        stack = _thread_state.stack = _RunStack()
        adopted = _adopted.pop(threading.get_ident(), None)
        if adopted:
            for run in adopted:
                stack.append(run)
        # Threads that ended take their stacks with them.
        alive = {t.ident for t in threading.enumerate()}
        for ident in [i for i in _stacks if i not in alive]:
            del _stacks[ident]
        _stacks[threading.get_ident()] = stack
    return stack


def _publish(stack) -> None:
    if stack is not getattr(_thread_state, "stack", None):
        return
    if stack:
        top = stack[-1]
        steps = []
        models = getattr(top.outputs, "model_outputs", None)
        if models:
            # Only MLflow links points to models: without it, points stay plain.
            if _integrations.ask(_integrations.LINKS_MODELS):
                steps = [output.step for output in models]
        _fastflow._set_thread_run(top._tracker, top.info.run_id, steps)
    else:
        _fastflow._set_thread_run(None, None)
    _integrations.emit(_integrations.STACK_CHANGED, stack[-1] if stack else None)


def _all_stacks() -> dict:
    """Every live thread's stack by thread id."""
    return dict(_stacks)


def _last_active_run_id():
    return getattr(_thread_state, "last_active_run_id", None)


def _set_last_active_run_id(run_id) -> None:
    _thread_state.last_active_run_id = run_id


class ActiveRun(Run):
    """The run returned by ``start_run``; as a context manager it ends the run on exit."""

    def __init__(self, run, tracker=None):
        Run.__init__(self, run.info, run.data, run.inputs, run.outputs)
        self._tracker = tracker if tracker is not None else _context.tracker()

    # MLflow's log_model sets the active run's outputs when it has none and appends to them
    # otherwise; either way the model list is watched, and outputs stay None until then.
    @property
    def _outputs(self):
        return self.__dict__.get("_watched_outputs")

    @_outputs.setter
    def _outputs(self, outputs):
        self.__dict__["_watched_outputs"] = outputs
        if outputs is None:
            return
        _watch_outputs_of(self, outputs)
        stack = getattr(_thread_state, "stack", None)
        if stack and stack[-1] is self:
            _publish(stack)

    @classmethod
    def _properties(cls):
        # MLflow lists only the properties a class defines itself: iterating its ActiveRun
        # (dict(run), tools that walk entities) gives nothing, so ours gives nothing too.
        return []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_val, exc_tb):
        if any(r.info.run_id == self.info.run_id for r in _stack()):
            end_run(
                RunStatus.to_string(RunStatus.FINISHED if exc_type is None else RunStatus.FAILED)
            )
        return exc_type is None


def _end_runs_left_by_other_tasks(stack, task) -> None:
    """A worker process (Ray's) runs one task after another. A run an earlier task left
    open must not become the parent of this task's runs. A run it started explicitly ends
    as FAILED (its task never reached its end: it raised outside a ``with`` block); one that
    logging started implicitly ends as FINISHED, as it would at process exit."""
    while stack and getattr(stack[0], "_task", None) not in (None, task):
        end_run("FINISHED" if getattr(stack[-1], "_auto_started", False) else "FAILED")


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
    _integrations.emit(_integrations.EXPERIMENT_SET, _active_experiment_id)
    return experiment


def _adopt_experiment(experiment_id) -> None:
    """An experiment another library made active (MLflow's ``set_experiment``)."""
    global _active_experiment_id
    _active_experiment_id = experiment_id


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
    parent = _integrations.ask(_integrations.WORKER_CONTEXT, False)
    if parent is not None and parent.get("experiment_id"):
        return parent["experiment_id"]
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
    task = _integrations.ask(_integrations.TASK_OF_THIS_CALL)
    if stack and task is not None:
        _end_runs_left_by_other_tasks(stack, task)
    parent = None
    if not stack:
        # A worker outlives its parent process's runs: read where the parent logs now.
        parent = _integrations.ask(_integrations.WORKER_CONTEXT, True)
    if stack and not nested:
        raise Exception(
            f"Run with UUID {stack[0].info.run_id} is already active. To start a new run, first "
            "end the current run with mlflow.end_run(). To start a nested run, call start_run "
            "with nested=True"
        )
    client = _client()
    existing_run_id = run_id or os.environ.pop("MLFLOW_RUN_ID", None)
    user_tags = dict(tags or {})
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
            client._tracker.set_tags(existing_run_id, [(k, str(v)) for k, v in user_tags.items()])
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
        elif nested and parent is not None:
            # In a worker, the parent process's active run is the bottom of every stack.
            parent_run_id = parent.get("parent_run_id")
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
    active._task = task
    if log_system_metrics is None:
        log_system_metrics = system_metrics.enabled_by_environment()
    if log_system_metrics:
        system_metrics.start(client, active.info.run_id, bool(existing_run_id))
    stack.append(active)
    return active


def end_run(status: str = "FINISHED") -> None:
    """Ends this thread's active run with ``status`` once everything it logged is written."""
    stack = _stack()
    if not stack:
        return
    os.environ.pop("MLFLOW_RUN_ID", None)
    run = stack.pop()
    _thread_state.last_active_run_id = run.info.run_id
    _integrations.emit(_integrations.RUN_ENDING, run.info.run_id, status)
    system_metrics.stop(run.info.run_id)
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


def get_metric_history_frame(run_id, key):
    """Every point of ``key`` in ``run_id`` as a pandas DataFrame (timestamp, step, value),
    built from columns without an object per point."""
    return _client().get_metric_history(run_id, key, output_format="pandas")


def get_metric_history_sampled(run_id, key, max_points=320, start_step=None, end_step=None):
    """At most ``max_points`` points of ``key`` that keep the curve's shape for a plot (see
    ``MlflowClient.get_metric_history_sampled``)."""
    return _client().get_metric_history_sampled(run_id, key, max_points, start_step, end_step)


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


def log_params(params, synchronous=None, run_id=None):
    tracker, run_id = _run_for_logging(run_id)
    log_batch(tracker, run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return _async_result(synchronous)


def set_tag(key, value, synchronous=None):
    run = _get_or_start_run()
    MlflowClient(run._tracker.uri).set_tag(run.info.run_id, key, value)
    return _async_result(synchronous)


def set_tags(tags, synchronous=None):
    tracker, run_id = _run_for_logging(None)
    log_batch(tracker, run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])
    return _async_result(synchronous)


def delete_tag(key) -> None:
    run = _get_or_start_run()
    MlflowClient(run._tracker.uri).delete_tag(run.info.run_id, key)


def _log_linked_metrics(name, args):
    """``log_metric(s)`` with ``model_id`` or ``dataset``: the link is MLflow's to record."""
    answer = _integrations.ask(_integrations.LINKED_METRICS, name, args)
    return answer[0]


def flush() -> None:
    """Blocks until everything this process logged is in its store (raises what failed)."""
    _fastflow._flush_all()


def make_visible() -> None:
    """Blocks until everything this process logged is committed to its store, so that other
    processes (``mlflow ui``, a notebook) read it, without waiting for the disk as ``flush``
    does: a crash of the machine (not of the process) may still lose it. Points become
    visible within the flush interval (100 ms) anyway; reads in this process see every
    point logged before them without either call."""
    _fastflow._make_visible_all()


def flush_async_logging() -> None:
    """MLflow's name for ``flush``: returns once everything logged so far is written."""
    flush()


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
    if artifact_path is None:
        return root
    return _artifacts.append_to_uri_path(root, artifact_path)


# ---- search --------------------------------------------------------------------------------


def search_experiments(
    view_type=ViewType.ACTIVE_ONLY, max_results=None, filter_string=None, order_by=None
):
    """Every experiment matching ``filter_string`` (or the first ``max_results``)."""
    client = _client()
    found, token = [], None
    # As MLflow pages: a max_results below 1 asks for no page at all, and gets [].
    while max_results is None or len(found) < max_results:
        page_size = _search.SEARCH_MAX_RESULTS_DEFAULT
        if max_results is not None:
            page_size = min(page_size, max_results - len(found))
        page = client.search_experiments(view_type, page_size, filter_string, order_by, token)
        found.extend(page)
        token = page.token
        if not token:
            break
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
                _logs.mlflow_logger("mlflow.tracking.fluent").warning(
                    "Cannot retrieve experiment by name %s", name
                )
            else:
                experiment_ids.append(experiment.experiment_id)
    elif isinstance(experiment_ids, (int, str)):
        experiment_ids = [experiment_ids]
    _search.check_max_results(max_results, threshold=None)
    experiment_ids = [str(e) for e in experiment_ids]
    as_columns = output_format == "pandas"
    string_dtype = _search.arrow_string_dtype() if as_columns else None
    rows = (
        client._tracker.search_runs(
            experiment_ids,
            filter_string or "",
            int(run_view_type),
            list(order_by or []),
            0,
            max_results,
            as_columns=as_columns,
            packed_texts=string_dtype is not None,
        )
        if experiment_ids
        else None
    )
    if output_format == "list":
        return [Run._from_row(r) for r in rows] if rows else []
    if rows is None:
        rows = (([], [], [], [], [], []), ([], b""), [], [], ([], [], []))
    return _search.frame(rows, string_dtype)


def sync(tracking_uri=None) -> dict:
    """Delivers what processes that died, or exited while the store was unreachable, left
    in the spool for this store (``FASTFLOW_SPOOL_DIR``): their points, exactly once, and
    the end of the runs they left running (KILLED, at the time they stopped)."""
    files, points, runs_ended, dropped = _context.tracker(tracking_uri).sync()
    return {"files": files, "points": points, "runs_ended": runs_ended, "dropped": dropped}


def get_parent_run(run_id):
    return _client().get_parent_run(run_id)


# ---- process life --------------------------------------------------------------------------


def _exit_timeout() -> float:
    try:
        return max(0.0, float(os.environ.get("FASTFLOW_EXIT_TIMEOUT", "30")))
    except ValueError:
        return 30.0


def _all_active_runs() -> list:
    """Active runs of every live thread, innermost first. A run a thread left open when it
    ended stays as it is, as with MLflow (nothing of it sees a thread end)."""
    alive = {t.ident for t in threading.enumerate()}
    runs = []
    for ident, stack in list(_stacks.items()):
        if ident in alive:
            runs.extend(reversed(stack))
    return runs


def _finish_process(status=None) -> None:
    """Ends the process's part: the active run (all of them, with ``status``, on SIGTERM),
    then every store waited for until FASTFLOW_EXIT_TIMEOUT; what is not delivered by then
    stays in the spool and one stderr line says where."""
    _fastflow._set_exit_deadline(_exit_timeout())
    not_ended = None
    try:
        if status is None:
            end_run()
        else:
            for run in _all_active_runs():
                system_metrics.stop(run.info.run_id)
                client = MlflowClient(run._tracker.uri)
                # A run may have been ended by other means (a Tune trial's, when its thread
                # ended); only those still running end here.
                if client.get_run(run.info.run_id).info.status == "RUNNING":
                    client.set_terminated(run.info.run_id, status)
            for stack in list(_stacks.values()):
                stack.clear()
    except KeyboardInterrupt:
        # Ctrl-C: stop waiting now; what is not delivered stays in the spool.
        _fastflow._set_exit_deadline(0)
    except BaseException as e:
        not_ended = e
    try:
        lines = _fastflow._shutdown()
    except BaseException as e:
        lines = [f"fastflow: logged data could not be written at exit: {e}"]
    # A store that did not take everything is reported once; the run's end is in the spool.
    if not_ended is not None and not lines:
        lines = [f"fastflow: could not end the active run at exit: {not_ended}"]
    for line in lines:
        print(line, file=sys.stderr)


def _end_runs_at_exit() -> None:
    _finish_process()


def _on_sigterm(signum, frame) -> None:
    """SIGTERM (a scheduler, `docker stop`, a pool's terminate): end the active runs KILLED
    and deliver what was logged, then die of SIGTERM as the sender expects."""
    _finish_process("KILLED")
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm_handler() -> None:
    # Only where the program has not chosen its own behaviour.
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):
        pass


_mp_hook_registered = False


def _before_fork() -> None:
    global _mp_hook_registered
    # multiprocessing's workers end with os._exit, past every atexit hook; its own
    # finalizers run before that, so a forked worker registers one there.
    mp_util = sys.modules.get("multiprocessing.util")
    if mp_util is not None and not _mp_hook_registered:
        _mp_hook_registered = True
        mp_util.register_after_fork(_deliver_at_worker_exit, _when_worker_ends)
    _fastflow._before_fork()


def _when_worker_ends(_) -> None:
    import multiprocessing.util

    multiprocessing.util.Finalize(None, _deliver_at_worker_exit, exitpriority=100)


def _deliver_at_worker_exit() -> None:
    # Runs stay as the worker left them, as with MLflow; what it logged is delivered.
    _fastflow._set_exit_deadline(_exit_timeout())
    for line in _fastflow._shutdown():
        print(line, file=sys.stderr)


def _after_fork_in_parent() -> None:
    _fastflow._after_fork_in_parent()


def _after_fork_in_child() -> None:
    global _thread_state, _stacks
    _fastflow._after_fork_in_child()
    _context._forget_trackers_after_fork()
    system_metrics._forget_in_child()
    _thread_state = threading.local()
    _stacks = {}


atexit.register(_end_runs_at_exit)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(
        before=_before_fork,
        after_in_parent=_after_fork_in_parent,
        after_in_child=_after_fork_in_child,
    )
_install_sigterm_handler()

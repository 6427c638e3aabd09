"""One fluent state for both libraries: MLflow's run stacks, last active run, active
experiment and tracking URI are fastflow's.

MLflow's fluent functions read their state from module globals at call time, wherever they
were imported from; the state objects are swapped in place, so code that bound MLflow's
functions before the bridge was installed (autologging, Keras callbacks) shares it too.
"""

from __future__ import annotations

import atexit
import functools

import mlflow.tracking._tracking_service.utils as mlflow_uri_state
import mlflow.tracking.fluent as mlflow_fluent

from fastflow import _context, _integrations, fluent
from fastflow._bridge.undo import remember, setattr_remembered


class SharedRunStacks:
    """Stands in for MLflow's ``_active_run_stack`` (a ``ThreadLocalVariable``): each
    thread's stack is fastflow's, so a run either library starts is the other's active
    run, and a forked child starts with none (fastflow resets its stacks at fork)."""

    def get(self):
        return fluent._stack()

    def set(self, value) -> None:
        stack = fluent._stack()
        list.clear(stack)
        for run in value:
            stack.append(run)
        fluent._publish(stack)

    def get_all_thread_values(self) -> dict:
        return fluent._all_stacks()

    def reset(self) -> None:
        for stack in fluent._all_stacks().values():
            list.clear(stack)
        fluent._stack().clear()


class SharedLastActiveRun:
    """Stands in for MLflow's ``_last_active_run_id``."""

    def get(self):
        return fluent._last_active_run_id()

    def set(self, run_id) -> None:
        fluent._set_last_active_run_id(run_id)

    def get_all_thread_values(self) -> dict:
        return {}

    def reset(self) -> None:
        fluent._set_last_active_run_id(None)


def _mlflow_set_experiment(original):
    @functools.wraps(original)
    def set_experiment(*args, **kwargs):
        experiment = original(*args, **kwargs)
        fluent._adopt_experiment(experiment.experiment_id)
        return experiment

    set_experiment._fastflow_bridge = True
    return set_experiment


def _mlflow_set_tracking_uri(original):
    @functools.wraps(original)
    def set_tracking_uri(uri):
        original(uri)
        current = mlflow_uri_state._tracking_uri
        if current is None:
            _context._reset_tracking_uri()
        elif current != _context._tracking_uri:
            _context.set_tracking_uri(current)

    set_tracking_uri._fastflow_bridge = True
    return set_tracking_uri


def _replace(module, name, wrap) -> None:
    current = getattr(module, name)
    if not getattr(current, "_fastflow_bridge", False):
        setattr_remembered(module, name, wrap(current))


def _experiment_set_by_fastflow(experiment_id) -> None:
    mlflow_fluent._active_experiment_id = experiment_id


def _tracking_uri_set_by_fastflow(uri) -> None:
    if mlflow_uri_state._tracking_uri != uri:
        mlflow_uri_state._tracking_uri = uri
        # MLflow's tracer keeps the URI it exports to; it drops it when the URI changes.
        try:
            from mlflow.tracing.provider import reset

            reset()
        except Exception:
            pass


def _share_exception_type() -> None:
    """``except fastflow.exceptions.MlflowException`` (``mlflow.exceptions.MlflowException``
    after the swap) catches what MLflow's own code raises, as it does without fastflow."""
    import mlflow.exceptions

    from fastflow.exceptions import MlflowException

    mlflows = mlflow.exceptions.MlflowException
    if issubclass(mlflows, MlflowException):
        return

    class SharedMlflowException(MlflowException):
        __slots__ = ()

        def __init__(self, *args, **kwargs):
            # MLflow's own constructor has set its attributes already.
            Exception.__init__(self, *args)

    bases = mlflows.__bases__
    mlflows.__bases__ = (SharedMlflowException,)
    remember(lambda: setattr(mlflows, "__bases__", bases))


def install() -> None:
    import mlflow

    _share_exception_type()

    # One end at exit, fastflow's, as MLflow's own: the active run of the main thread.
    atexit.unregister(mlflow_fluent._safe_end_run)
    remember(lambda: atexit.register(mlflow_fluent._safe_end_run))

    # Whichever library set them last, both see the same experiment and store.
    if fluent._active_experiment_id is not None:
        mlflow_fluent._active_experiment_id = fluent._active_experiment_id
    elif mlflow_fluent._active_experiment_id is not None:
        fluent._adopt_experiment(mlflow_fluent._active_experiment_id)
    if _context._tracking_uri is not None:
        _tracking_uri_set_by_fastflow(_context._tracking_uri)
    elif mlflow_uri_state._tracking_uri is not None:
        _context.set_tracking_uri(mlflow_uri_state._tracking_uri)
    elif not mlflow_uri_state.is_tracking_uri_set():
        # Without a choice, MLflow may pick ./mlruns; fastflow's default store is shared.
        mlflow_uri_state._tracking_uri = _context.get_tracking_uri()

    # Runs MLflow started before fastflow came stay active, in the threads that started them.
    previous = mlflow_fluent._active_run_stack
    last_active = mlflow_fluent._last_active_run_id
    if not isinstance(previous, SharedRunStacks):
        if fluent._last_active_run_id() is None and last_active.get() is not None:
            fluent._set_last_active_run_id(last_active.get())
        fluent._adopt_stacks(previous.get_all_thread_values())
    setattr_remembered(mlflow_fluent, "_active_run_stack", SharedRunStacks())
    setattr_remembered(mlflow_fluent, "_last_active_run_id", SharedLastActiveRun())

    for module in (mlflow, mlflow_fluent):
        _replace(module, "set_experiment", _mlflow_set_experiment)
    for module in (mlflow, mlflow_uri_state, __import__("mlflow.tracking").tracking):
        if hasattr(module, "set_tracking_uri"):
            _replace(module, "set_tracking_uri", _mlflow_set_tracking_uri)

    for event, handler in (
        (_integrations.EXPERIMENT_SET, _experiment_set_by_fastflow),
        (_integrations.TRACKING_URI_SET, _tracking_uri_set_by_fastflow),
        (_integrations.LINKS_MODELS, _links_models),
    ):
        _integrations.register(event, handler)
        remember(lambda event=event, handler=handler: _integrations.unregister(event, handler))


def _links_models() -> bool:
    return True

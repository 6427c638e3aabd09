"""Ray Tune and Ray Train entry points with the arguments of Ray's own MLflow integration."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref

from ray.tune.logger import LoggerCallback

import fastflow
from fastflow import _context, fluent
from fastflow.entities import Metric, Param
from fastflow.tracking import MlflowClient

logger = logging.getLogger("fastflow")

_TRAINING_ITERATION = "training_iteration"
_PARENT_TAG = "mlflow.parentRunId"
_MAX_METRICS_PER_BATCH = 1000
_MAX_PARAMS_PER_BATCH = 100


def _flatten(value, prefix="", out=None, delimiter="/"):
    out = {} if out is None else out
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(inner, f"{prefix}{delimiter}{key}" if prefix else str(key), out, delimiter)
    else:
        out[prefix] = value
    return out


def _numeric(value):
    """The float Ray's integration would log for a result value, or None to skip it."""
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number


def _chunks(items, size):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _experiment_id(client, experiment_name, create):
    if experiment_name is None:
        return fluent._get_experiment_id()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is not None:
        return experiment.experiment_id
    if not create:
        raise ValueError(
            f"Experiment with the provided experiment_name: {experiment_name} does not exist. "
            "Please create an MLflow experiment and provide either its id or name."
        )
    return client.create_experiment(experiment_name)


class MLflowLoggerCallback(LoggerCallback):
    """Logs a Tune experiment as one parent run with a child run per trial.

    A drop-in for ``ray.air.integrations.mlflow.MLflowLoggerCallback``. Each trial's config
    becomes its params (nested keys joined with ``/``), each reported result one batch of
    metrics with ``training_iteration`` as step, and its end status FINISHED or FAILED. The
    parent run is named after the Tune experiment and nests under the driver's active run,
    if there is one.
    """

    def __init__(
        self,
        tracking_uri=None,
        *,
        registry_uri=None,
        experiment_name=None,
        tags=None,
        tracking_token=None,
        save_artifact=False,
        log_params_on_trial_end=False,
    ):
        self.tracking_uri = tracking_uri
        self.registry_uri = registry_uri
        self.experiment_name = experiment_name
        self.tags = dict(tags or {})
        self.tracking_token = tracking_token
        self.should_save_artifact = save_artifact
        self.log_params_on_trial_end = log_params_on_trial_end
        self._client = None
        self._experiment_id = None
        self._parent_run_id = None
        self._trial_runs = {}

    def setup(self, *args, **kwargs):
        if self.tracking_token:
            os.environ["MLFLOW_TRACKING_TOKEN"] = self.tracking_token
        if self.tracking_uri:
            _context.set_tracking_uri(self.tracking_uri)
        self._client = MlflowClient(self.tracking_uri)
        self._experiment_id = _experiment_id(self._client, self.experiment_name, create=True)

    def _parent(self, trial) -> str:
        if self._parent_run_id is None:
            tags = dict(_context.system_tags())
            tags.update({k: str(v) for k, v in self.tags.items()})
            driver_run = fluent.active_run()
            if driver_run is not None:
                tags[_PARENT_TAG] = driver_run.info.run_id
            name = getattr(trial, "experiment_dir_name", None) or "tune"
            run = self._client.create_run(self._experiment_id, tags=tags, run_name=name)
            self._parent_run_id = run.info.run_id
            atexit.register(self._end_parent, "KILLED")
        return self._parent_run_id

    def _end_parent(self, status) -> None:
        if self._parent_run_id is None:
            return
        run_id, self._parent_run_id = self._parent_run_id, None
        try:
            self._client.set_terminated(run_id, status)
        except Exception as e:
            logger.warning("could not end the Tune parent run %s: %s", run_id, e)

    def log_trial_start(self, trial):
        run_id = self._trial_runs.get(trial)
        if run_id is None:
            tags = dict(_context.system_tags())
            tags.update({k: str(v) for k, v in self.tags.items()})
            tags["trial_name"] = str(trial)
            tags[_PARENT_TAG] = self._parent(trial)
            run = self._client.create_run(self._experiment_id, tags=tags, run_name=str(trial))
            run_id = self._trial_runs[trial] = run.info.run_id
        elif self._client.get_run(run_id).info.status != "RUNNING":
            # A trial restarted after a failure goes on in the same run.
            self._client.update_run(run_id, "RUNNING")
        if not self.log_params_on_trial_end:
            self._log_params(run_id, trial.config)

    def _log_params(self, run_id, config) -> None:
        params = [Param(k, str(v)) for k, v in _flatten(config).items()]
        existing = self._client.get_run(run_id).data.params
        params = [p for p in params if p.key not in existing]
        for chunk in _chunks(params, _MAX_PARAMS_PER_BATCH):
            self._client.log_batch(run_id, params=chunk)

    def log_trial_result(self, iteration, trial, result):
        run_id = self._trial_runs.get(trial)
        if run_id is None:
            return
        step = int(result.get(_TRAINING_ITERATION) or 0)
        timestamp = int(time.time() * 1000)
        metrics = []
        for key, value in _flatten(result).items():
            number = _numeric(value)
            if number is not None:
                metrics.append(Metric(key, number, timestamp, step))
        for chunk in _chunks(metrics, _MAX_METRICS_PER_BATCH):
            self._client.log_batch(run_id, metrics=chunk)

    def log_trial_end(self, trial, failed=False):
        run_id = self._trial_runs.get(trial)
        if run_id is None:
            return
        if self.should_save_artifact:
            # As Ray's callback does: the trial's directory (its results, checkpoints and
            # logs) as the run's artifacts.
            trial_dir = getattr(trial, "local_path", None)
            if trial_dir and os.path.isdir(trial_dir):
                self._client.log_artifacts(run_id, trial_dir)
        if self.log_params_on_trial_end:
            self._log_params(run_id, trial.config)
        self._client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def on_experiment_end(self, trials, **info):
        self._end_parent("FINISHED")


class _NoopModule:
    """What ranks other than zero get from ``setup_mlflow``: every call does nothing."""

    def __getattr__(self, item):
        return _NoopModule()

    def __call__(self, *args, **kwargs):
        return None


def _tune_trial():
    """(trial id, trial name) inside a Tune trial, else (None, None); None for a nonzero
    rank of Ray Train when only rank zero logs."""
    try:
        from ray.tune.trainable.trainable_fn_utils import _in_tune_session

        if _in_tune_session():
            import ray.tune

            context = ray.tune.get_context()
            return context.get_trial_id(), context.get_trial_name(), 0
        import ray.train

        return None, None, ray.train.get_context().get_world_rank()
    except Exception:
        return None, None, 0


def setup_mlflow(
    config=None,
    tracking_uri=None,
    registry_uri=None,
    experiment_id=None,
    experiment_name=None,
    tracking_token=None,
    artifact_location=None,
    run_name=None,
    create_experiment_if_not_exists=False,
    tags=None,
    rank_zero_only=True,
):
    """Starts a run for this trainable and returns the ``fastflow`` module to log with.

    A drop-in for ``ray.air.integrations.mlflow.setup_mlflow``. The run is a child of the
    driver's active run and lands in its experiment unless ``experiment_id`` or
    ``experiment_name`` say otherwise; the config becomes its params. The run ends
    (FINISHED) when the thread that called this ends, or at process exit.
    """
    trial_id, trial_name, rank = _tune_trial()
    if rank_zero_only and rank != 0:
        return _NoopModule()
    if tracking_token:
        os.environ["MLFLOW_TRACKING_TOKEN"] = tracking_token
    if tracking_uri:
        _context.set_tracking_uri(tracking_uri)
    active = fluent.active_run()
    if active is not None:
        return fastflow
    client = MlflowClient()
    if experiment_id is not None:
        experiment_id = client.get_experiment(str(experiment_id)).experiment_id
    elif experiment_name is not None:
        found = client.get_experiment_by_name(experiment_name)
        if found is not None:
            experiment_id = found.experiment_id
        elif create_experiment_if_not_exists:
            experiment_id = client.create_experiment(experiment_name, artifact_location)
        else:
            raise ValueError(
                f"Experiment with the provided experiment_id: None or experiment_name: "
                f"{experiment_name} does not exist. Please create an MLflow experiment and "
                "provide either its id or name."
            )
    run_tags = {k: str(v) for k, v in (tags or {}).items()}
    if trial_name is not None:
        run_tags.setdefault("trial_name", trial_name)
    run = fluent.start_run(
        experiment_id=experiment_id,
        run_name=run_name or trial_name or experiment_name,
        nested=True,
        tags=run_tags,
    )
    params = [Param(k, str(v)) for k, v in _flatten(dict(config or {})).items()]
    for chunk in _chunks(params, _MAX_PARAMS_PER_BATCH):
        client.log_batch(run.info.run_id, params=chunk)
    holder = _watch_thread(run)
    if trial_id is not None:
        _end_before_tune_hears_the_trial_ended(holder)
    return fastflow


class _EndsWithThread:
    """Held in a thread-local: CPython drops it while the thread is torn down, before the
    thread counts as finished. Tune declares a trial done only once its thread is no longer
    alive, and may kill the actor right after, so the run is ended (and its points written)
    here rather than by anything that runs later."""

    def __init__(self, run):
        self.run = run
        self._ending = threading.Lock()
        self._ended = False
        _open_runs.add(self)

    def end(self) -> None:
        # The holder stays among the open runs until its end is written: Tune stops the
        # actor as soon as the trial reports its last result, so the process may be exiting
        # while the trial's thread is still ending the run, and the exit hook must wait for
        # that end (or write it) rather than find nothing left to end.
        with self._ending:
            if self._ended:
                return
            self._ended = True
            run_id = self.run.info.run_id
            try:
                tracker = self.run._tracker
                # No flush first, unlike set_terminated: the end queues behind every point
                # the trial logged anyway.
                if MlflowClient(tracker.uri).get_run(run_id).info.status == "RUNNING":
                    tracker.update_run(run_id, "FINISHED", int(time.time() * 1000), None)
            except Exception as e:
                logger.warning("could not end run %s: %s", run_id, e)
            finally:
                _open_runs.discard(self)

    def __del__(self):
        self.end()


_thread_runs = threading.local()
# Weak, so that only the thread-local keeps a holder alive.
_open_runs = weakref.WeakSet()


def _watch_thread(run) -> None:
    """Ends ``run`` when the calling thread ends (Tune runs each trial's function in a
    thread of an actor it may reuse), or at process exit."""
    held = getattr(_thread_runs, "runs", None)
    if held is None:
        held = _thread_runs.runs = []
    holder = _EndsWithThread(run)
    held.append(holder)
    return holder


def _end_before_tune_hears_the_trial_ended(holder) -> None:
    """When a Tune trainable returns, Tune's wrapper reports a last result from the trial's
    thread; Tune then stops the actor, whose process is killed a moment into its exit, often
    before the thread's teardown has ended the run. The run is ended just before that report
    leaves the thread, so Tune learns the trial is done only once its run is."""
    try:
        from ray.train._internal.session import get_session
        from ray.tune.result import RESULT_DUPLICATE
    except ImportError:
        return
    session = get_session()
    if session is None:
        return
    report = session.report
    trial_thread = threading.current_thread()

    def report_after_the_run_ends(metrics, *args, **kwargs):
        if RESULT_DUPLICATE in metrics and threading.current_thread() is trial_thread:
            holder.end()
        return report(metrics, *args, **kwargs)

    session.report = report_after_the_run_ends


@atexit.register
def _end_open_runs() -> None:
    for holder in list(_open_runs):
        holder.end()

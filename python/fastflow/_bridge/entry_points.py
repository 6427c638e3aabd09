"""MLflow's logging entry points at fastflow's speed, for the URIs fastflow serves.

Libraries call ``mlflow.log_metric(s)``, ``log_param(s)``, ``set_tag(s)`` and
``MlflowClient.log_metric`` / ``log_batch``; through MLflow's layers alone each call costs
tens of microseconds to milliseconds before the store is reached. These replacements hand
the call to fastflow's writer instead. A metric tied to a logged model or a dataset, or a
store fastflow does not serve, goes to MLflow's own function.
"""

from __future__ import annotations

import functools

import mlflow
import mlflow.tracking.fluent as mlflow_fluent
from mlflow.tracking.client import MlflowClient as MlflowsClient
from mlflow.utils.async_logging.run_operations import RunOperations

from fastflow import _context, _fastflow, fluent
from fastflow._bridge.stores import as_mlflow_error, serves
from fastflow._bridge.undo import setattr_remembered
from fastflow.exceptions import MlflowException
from fastflow.tracking.client import log_batch as client_log_batch


def _served_now() -> bool:
    return serves(_context.get_tracking_uri())


def _no_active_model() -> bool:
    """MLflow links a fluent metric to the active model (``set_active_model``). A model the
    active run logged at the metric's step is handled by fastflow's own log_metric, which
    hands such points to MLflow's function."""
    return mlflow_fluent._ACTIVE_MODEL_CONTEXT.get().model_id is None


def _on_active_run(run_id) -> bool:
    if run_id is None:
        return True
    stack = fluent._stack()
    return bool(stack) and stack[-1].info.run_id == run_id


def _mark(function):
    function._fastflow_bridge = True
    return function


def _fluent_log_metric(original):
    @functools.wraps(original)
    def log_metric(
        key,
        value,
        step=None,
        synchronous=None,
        timestamp=None,
        run_id=None,
        model_id=None,
        dataset=None,
    ):
        if (
            model_id is None
            and dataset is None
            and _on_active_run(run_id)
            and _served_now()
            and _no_active_model()
        ):
            try:
                return _fastflow.log_metric(key, value, step, synchronous, timestamp, run_id)
            except MlflowException as e:
                raise as_mlflow_error(e) from None
        return original(key, value, step, synchronous, timestamp, run_id, model_id, dataset)

    return _mark(log_metric)


def _fluent_log_metrics(original):
    @functools.wraps(original)
    def log_metrics(
        metrics,
        step=None,
        synchronous=None,
        run_id=None,
        timestamp=None,
        model_id=None,
        dataset=None,
    ):
        if (
            model_id is None
            and dataset is None
            and _on_active_run(run_id)
            and _served_now()
            and _no_active_model()
        ):
            try:
                return _fastflow.log_metrics(metrics, step, synchronous, run_id, timestamp)
            except MlflowException as e:
                raise as_mlflow_error(e) from None
        return original(metrics, step, synchronous, run_id, timestamp, model_id, dataset)

    return _mark(log_metrics)


def _fluent_call(original, replacement):
    @functools.wraps(original)
    def call(*args, **kwargs):
        if not _served_now():
            return original(*args, **kwargs)
        try:
            return replacement(*args, **kwargs)
        except MlflowException as e:
            raise as_mlflow_error(e) from None

    return _mark(call)


_MISSING = object()


def _client_tracker(client):
    """fastflow's store behind an MLflow client, or None where fastflow does not serve it."""
    tracker = client.__dict__.get("_fastflow_tracker", _MISSING)
    if tracker is _MISSING:
        uri = client._tracking_client.tracking_uri
        tracker = _context.tracker(uri) if serves(uri) else None
        client.__dict__["_fastflow_tracker"] = tracker
    return tracker


def _operations(synchronous):
    return RunOperations([]) if synchronous is False else None


def _client_log_metric(original):
    @functools.wraps(original)
    def log_metric(
        self,
        run_id,
        key,
        value,
        timestamp=None,
        step=None,
        synchronous=None,
        dataset_name=None,
        dataset_digest=None,
        model_id=None,
    ):
        tracker = _client_tracker(self)
        if tracker is None or model_id is not None or dataset_name is not None:
            return original(
                self,
                run_id,
                key,
                value,
                timestamp,
                step,
                synchronous,
                dataset_name,
                dataset_digest,
                model_id,
            )
        try:
            tracker.log_metric(run_id, key, value, timestamp, step, synchronous)
        except MlflowException as e:
            raise as_mlflow_error(e) from None
        return _operations(synchronous)

    return _mark(log_metric)


def _client_log_batch(original):
    @functools.wraps(original)
    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        tracker = _client_tracker(self)
        if tracker is None or any(
            m.model_id is not None or m.dataset_name is not None for m in metrics
        ):
            return original(self, run_id, metrics, params, tags, synchronous)
        try:
            if not client_log_batch(tracker, run_id, metrics, params, tags, synchronous):
                return None
        except MlflowException as e:
            raise as_mlflow_error(e) from None
        return _operations(synchronous)

    return _mark(log_batch)


# MLflow's own fluent functions, for what only they record (links to models and datasets).
ORIGINALS: dict = {}


def _replace(owner, name, wrap) -> None:
    current = getattr(owner, name)
    if not getattr(current, "_fastflow_bridge", False):
        if owner is mlflow_fluent:
            ORIGINALS[name] = current
        setattr_remembered(owner, name, wrap(current))


def install() -> None:
    for module in (mlflow, mlflow_fluent):
        _replace(module, "log_metric", _fluent_log_metric)
        _replace(module, "log_metrics", _fluent_log_metrics)
        _replace(module, "log_param", lambda o: _fluent_call(o, fluent.log_param))
        _replace(module, "log_params", lambda o: _fluent_call(o, fluent.log_params))
        _replace(module, "set_tag", lambda o: _fluent_call(o, fluent.set_tag))
        _replace(module, "set_tags", lambda o: _fluent_call(o, fluent.set_tags))
    _replace(MlflowsClient, "log_metric", _client_log_metric)
    _replace(MlflowsClient, "log_batch", _client_log_batch)

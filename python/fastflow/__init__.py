"""fastflow: MLflow's tracking API with a Rust writer behind it.

Use it as ``import fastflow as mlflow``: runs, params, tags and metrics go into MLflow's own
SQLite schema, so MLflow's UI and client read them.
"""

from fastflow import entities, exceptions, tracking
from fastflow._context import get_tracking_uri, set_tracking_uri
from fastflow._fastflow import __version__, log_metric, log_metrics
from fastflow.entities import Experiment, Metric, Param, Run, RunInfo, RunStatus, RunTag, ViewType
from fastflow.exceptions import MlflowException
from fastflow.fluent import (
    ActiveRun,
    active_run,
    create_experiment,
    delete_experiment,
    delete_run,
    delete_tag,
    end_run,
    flush,
    flush_async_logging,
    get_experiment,
    get_experiment_by_name,
    get_parent_run,
    get_run,
    last_active_run,
    log_param,
    log_params,
    restore_experiment,
    restore_run,
    search_experiments,
    search_runs,
    set_experiment,
    set_experiment_tag,
    set_experiment_tags,
    set_tag,
    set_tags,
    start_run,
)
from fastflow.tracking import MlflowClient

__all__ = [
    "ActiveRun",
    "Experiment",
    "Metric",
    "MlflowClient",
    "MlflowException",
    "Param",
    "Run",
    "RunInfo",
    "RunStatus",
    "RunTag",
    "ViewType",
    "__version__",
    "active_run",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "end_run",
    "entities",
    "exceptions",
    "flush",
    "flush_async_logging",
    "get_experiment",
    "get_experiment_by_name",
    "get_parent_run",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "restore_experiment",
    "restore_run",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
    "tracking",
]

"""fastflow: MLflow's tracking API with a Rust writer behind it.

Use it as ``import fastflow as mlflow``: runs, params, tags and metrics go into MLflow's own
SQLite schema, so MLflow's UI and client read them.
"""

# isort: off
# Before anything imports the extension: it calls the SQLite library this puts in the process.
from fastflow import _load_sqlite  # noqa: F401

# isort: on
from fastflow import _bridge, artifacts, entities, exceptions, system_metrics, tracking
from fastflow._context import get_tracking_uri, set_tracking_uri
from fastflow._fastflow import __version__, log_metric, log_metrics
from fastflow._media import Image
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
    get_artifact_uri,
    get_experiment,
    get_experiment_by_name,
    get_metric_history_frame,
    get_metric_history_sampled,
    get_parent_run,
    get_run,
    last_active_run,
    load_table,
    log_artifact,
    log_artifacts,
    log_dict,
    log_figure,
    log_image,
    log_param,
    log_params,
    log_stream,
    log_table,
    log_text,
    make_visible,
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
    sync,
)
from fastflow.ray import _hooks as _ray_hooks
from fastflow.system_metrics import (
    disable_system_metrics_logging,
    enable_system_metrics_logging,
    set_system_metrics_node_id,
    set_system_metrics_samples_before_logging,
    set_system_metrics_sampling_interval,
)
from fastflow.tracking import MlflowClient

__all__ = [
    "ActiveRun",
    "Experiment",
    "Image",
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
    "artifacts",
    "create_experiment",
    "delete_experiment",
    "delete_run",
    "delete_tag",
    "disable_system_metrics_logging",
    "enable_system_metrics_logging",
    "end_run",
    "entities",
    "exceptions",
    "flush",
    "flush_async_logging",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_metric_history_frame",
    "get_metric_history_sampled",
    "get_parent_run",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "load_table",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_stream",
    "log_table",
    "log_text",
    "make_visible",
    "restore_experiment",
    "restore_run",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_experiment_tag",
    "set_experiment_tags",
    "set_system_metrics_node_id",
    "set_system_metrics_samples_before_logging",
    "set_system_metrics_sampling_interval",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
    "sync",
    "system_metrics",
    "tracking",
]


def __getattr__(name):
    # Everything else MLflow offers (models, registry, autolog, datasets, evaluation) is
    # MLflow's own code, running on fastflow's runs once the bridge is installed.
    return _bridge.mlflow_attribute(__name__, name)


_ray_hooks.install()
_bridge.watch()

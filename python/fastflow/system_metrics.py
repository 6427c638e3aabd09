"""System metrics sampled into a run, as MLflow's ``mlflow.system_metrics`` names them.

A Rust thread reads the kernel's figures (``/proc``, ``statvfs``, NVML when an NVIDIA driver
is installed): no psutil, no GIL. The same environment variables and functions as MLflow
configure it.
"""

import logging
import os

from fastflow import _fastflow

__all__ = [
    "disable_system_metrics_logging",
    "enable_system_metrics_logging",
    "set_system_metrics_node_id",
    "set_system_metrics_samples_before_logging",
    "set_system_metrics_sampling_interval",
]

ENABLE = "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING"
SAMPLING_INTERVAL = "MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"
SAMPLES_BEFORE_LOGGING = "MLFLOW_SYSTEM_METRICS_SAMPLES_BEFORE_LOGGING"
NODE_ID = "MLFLOW_SYSTEM_METRICS_NODE_ID"

DEFAULT_SAMPLING_INTERVAL = 10.0
DEFAULT_SAMPLES_BEFORE_LOGGING = 1
PREFIX = "system/"

# run id -> the sampler logging into it
_samplers: dict = {}


def enable_system_metrics_logging():
    """Samples system metrics into every run started from now on, unless it opts out with
    ``start_run(log_system_metrics=False)``."""
    os.environ[ENABLE] = str(True)


def disable_system_metrics_logging():
    """No system metrics unless a run asks with ``start_run(log_system_metrics=True)``."""
    os.environ[ENABLE] = str(False)


def _set_or_unset(name, value):
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = str(value)


def set_system_metrics_sampling_interval(interval):
    """Seconds between samples (10 by default); ``None`` restores the default."""
    _set_or_unset(SAMPLING_INTERVAL, interval)


def set_system_metrics_samples_before_logging(samples):
    """Samples averaged into each logged step (1 by default); ``None`` restores the default."""
    _set_or_unset(SAMPLES_BEFORE_LOGGING, samples)


def set_system_metrics_node_id(node_id):
    """Names the machine in the metric keys (``system/<node_id>/...``), for runs that span
    several nodes; ``None`` leaves it out."""
    _set_or_unset(NODE_ID, node_id)


def _variable(name, kind, default):
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        # As MLflow: a value of 0 (or empty) falls back to the default.
        return kind(raw) or default
    except ValueError as e:
        raise ValueError(f"Failed to convert {raw!r} for {name}: {e}") from None


def enabled_by_environment() -> bool:
    raw = os.environ.get(ENABLE)
    if raw is None:
        return False
    lowered = raw.lower()
    if lowered not in ("true", "false", "1", "0"):
        raise ValueError(
            f"{ENABLE} value must be one of ['true', 'false', '1', '0'] (case-insensitive), "
            f"but got {raw}"
        )
    return lowered in ("true", "1")


def _next_step(client, run_id) -> int:
    """One past the largest step of the run's system metrics, as MLflow resumes."""
    steps = [m.step for m in client.get_run(run_id).data._metric_objs if m.key.startswith(PREFIX)]
    return max(steps) + 1 if steps else 0


def start(client, run_id, resumed) -> None:
    """Starts sampling into ``run_id``; a failure is logged and the run goes on, as in
    MLflow."""
    try:
        interval = _variable(SAMPLING_INTERVAL, float, DEFAULT_SAMPLING_INTERVAL)
        samples = _variable(SAMPLES_BEFORE_LOGGING, int, DEFAULT_SAMPLES_BEFORE_LOGGING)
        node_id = _variable(NODE_ID, str, None)
        prefix = PREFIX + (node_id + "/" if node_id else "")
        first_step = _next_step(client, run_id) if resumed else 0
        stop(run_id)
        _samplers[run_id] = _fastflow.SystemMetricsSampler(
            client._tracker, run_id, interval, samples, prefix, first_step
        )
    except Exception as e:
        logging.getLogger("mlflow.tracking.fluent").error(
            f"Failed to start system metrics monitoring: {e}."
        )


def stop(run_id) -> None:
    sampler = _samplers.pop(run_id, None)
    if sampler is not None:
        sampler.stop()


def _forget_in_child() -> None:
    """A forked child has none of the parent's sampler threads."""
    _samplers.clear()

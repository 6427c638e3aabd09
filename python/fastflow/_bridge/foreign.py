"""Stores only MLflow serves (``postgresql://``, ``mysql://``, ``mssql://``, ``file:``,
``databricks``, plugin schemes): every call goes through MLflow's own store.

``ForeignTracker`` offers what ``_fastflow.Tracker`` offers, so the rest of fastflow (the
fluent stack, the client, artifacts) works unchanged. Metric points still leave the caller
through a Rust outbox; one thread hands them to MLflow's ``log_batch``.
"""

from __future__ import annotations

import functools
import logging
import math
import struct
import threading

import mlflow.tracking._tracking_service.utils as mlflow_store_registry
from mlflow.entities import ExperimentTag, Metric, Param, RunStatus, RunTag
from mlflow.exceptions import MlflowException as MlflowError

from fastflow import _context, _fastflow
from fastflow.exceptions import MlflowException

_logger = logging.getLogger("fastflow")
_RECORD = struct.Struct("<IIdqq")
_MAX_METRICS = 1000
_IDLE_SECONDS = 1.0
_noticed: set = set()


def _as_fastflow_errors(method):
    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except MlflowError as e:
            raise MlflowException(e.message, error_code=e.error_code) from None

    return call


def _experiment_row(experiment):
    return (
        experiment.experiment_id,
        experiment.name,
        experiment.artifact_location,
        experiment.lifecycle_stage,
        experiment.creation_time,
        experiment.last_update_time,
        list(experiment.tags.items()),
    )


def _info_row(info):
    return (
        info.run_id,
        info.experiment_id,
        info.run_name,
        info.user_id,
        info.status,
        info.start_time,
        info.end_time,
        info.artifact_uri,
        info.lifecycle_stage,
    )


def _run_row(run):
    metrics = [(m.key, m.value, m.timestamp, m.step) for m in run.data._metric_objs]
    return (
        _info_row(run.info),
        metrics,
        list(run.data.params.items()),
        list(run.data.tags.items()),
    )


def _io_row(run):
    inputs, outputs = run.inputs, run.outputs
    datasets = [
        (
            (
                d.dataset.name,
                d.dataset.digest,
                d.dataset.source_type,
                d.dataset.source,
                d.dataset.schema,
                d.dataset.profile,
            ),
            [(t.key, t.value) for t in d.tags],
        )
        for d in (inputs.dataset_inputs if inputs else [])
    ]
    model_inputs = [m.model_id for m in ((inputs.model_inputs or []) if inputs else [])]
    model_outputs = [(m.model_id, m.step) for m in (outputs.model_outputs if outputs else [])]
    return (datasets, model_inputs, model_outputs)


def _columns(runs):
    """fastflow's columnar search result (see ``_search.frame``) from MLflow's runs."""

    def keyed(pick):
        keys = []
        for run in runs:
            for key in pick(run):
                if key not in keys:
                    keys.append(key)
        return [(key, [pick(run).get(key) for run in runs]) for key in keys]

    attributes = (
        [r.info.run_id for r in runs],
        [r.info.experiment_id for r in runs],
        [r.info.status for r in runs],
        [r.info.artifact_uri for r in runs],
        [r.info.start_time for r in runs],
        [r.info.end_time for r in runs],
    )

    def introductions(pick):
        seen = set()
        found = []
        for row, run in enumerate(runs):
            keys = list(pick(run))
            if not seen.issuperset(keys):
                found.append((row, keys))
                seen.update(keys)
        return found

    picks = (lambda r: r.data.metrics, lambda r: r.data.params, lambda r: r.data.tags)
    metrics = keyed(picks[0])
    values = [math.nan if v is None else v for _, column in metrics for v in column]
    packed = struct.pack(f"<{len(values)}d", *values)
    return (
        attributes,
        ([key for key, _ in metrics], packed),
        *(keyed(pick) for pick in picks[1:]),
        tuple(introductions(pick) for pick in picks),
    )


class ForeignTracker:
    """A tracking store served by MLflow's own store class."""

    @_as_fastflow_errors
    def __init__(self, uri):
        self.uri = uri
        self._store = mlflow_store_registry._get_store(uri)
        self._outbox = _fastflow.Outbox()
        threading.Thread(
            target=self._ship_forever, name="fastflow-mlflow-store", daemon=True
        ).start()
        if uri not in _noticed:
            _noticed.add(uri)
            _logger.warning(
                "fastflow: the store at %s is served by MLflow; fastflow's fast path is off "
                "for it (fastflow serves sqlite://, http(s):// and token-authenticated "
                "databricks natively)",
                _context.redacted(uri),
            )

    @property
    def path(self):
        return self.uri

    def __repr__(self):
        return f"ForeignTracker({_context.redacted(self.uri)!r})"

    # ---- metric points: the outbox's packets, written by one thread --------------------

    def _ship_forever(self) -> None:
        while True:
            packet = self._outbox.next_packet(_IDLE_SECONDS)
            if packet is None:
                continue
            try:
                self._write(packet)
                outcome = None
            except MlflowError as e:
                outcome = (e.message, e.error_code)
            except BaseException as e:  # the thread must live on: flush() waits on it
                outcome = (f"MLflow's store could not take metric points: {e!r}", "INTERNAL_ERROR")
            packet.settle(outcome)

    def _write(self, packet) -> None:
        by_run: dict = {}
        for run, key, value, timestamp, step in _RECORD.iter_unpack(packet.records):
            by_run.setdefault(run, []).append(Metric(packet.keys[key], value, timestamp, step))
        for run, metrics in by_run.items():
            for start in range(0, len(metrics), _MAX_METRICS):
                self._store.log_batch(
                    packet.run_ids[run], metrics[start : start + _MAX_METRICS], [], []
                )

    def flush(self) -> None:
        self._outbox.flush()

    make_visible = flush

    def sync(self):
        self.flush()
        return (0, 0, 0, 0)

    def _ensure_run(self, run_id) -> None:
        if not self._outbox.is_registered(run_id):
            run = self.get_run(run_id)
            self._outbox.register_run(run_id, run[0][8] == "active")

    @_as_fastflow_errors
    def log_metric(self, run_id, key, value, timestamp=None, step=None, synchronous=None):
        self._ensure_run(run_id)
        self._outbox.log_metric(run_id, key, value, timestamp, step)
        if synchronous:
            self.flush()

    @_as_fastflow_errors
    def log_batch(self, run_id, metrics, params, tags, synchronous=None):
        _fastflow._validate_batch_limits(len(metrics), len(params), len(tags))
        self._ensure_run(run_id)
        if params or tags:
            self._outbox.log_metrics(run_id, metrics, check_only=True)
            self._store.log_batch(
                run_id, [], [Param(k, v) for k, v in params], [RunTag(k, v) for k, v in tags]
            )
        if metrics:
            self._outbox.log_metrics(run_id, metrics)
        if synchronous:
            self.flush()

    # ---- experiments ---------------------------------------------------------------------

    @_as_fastflow_errors
    def create_experiment(self, name, artifact_location=None, tags=()):
        return self._store.create_experiment(
            name, artifact_location, [ExperimentTag(k, v) for k, v in tags]
        )

    @_as_fastflow_errors
    def get_experiment(self, experiment_id):
        return _experiment_row(self._store.get_experiment(experiment_id))

    @_as_fastflow_errors
    def get_experiment_by_name(self, name):
        found = self._store.get_experiment_by_name(name)
        return _experiment_row(found) if found is not None else None

    @_as_fastflow_errors
    def delete_experiment(self, experiment_id):
        self._store.delete_experiment(experiment_id)

    @_as_fastflow_errors
    def restore_experiment(self, experiment_id):
        self._store.restore_experiment(experiment_id)

    @_as_fastflow_errors
    def set_experiment_tags(self, experiment_id, tags):
        for key, value in tags:
            self._store.set_experiment_tag(experiment_id, ExperimentTag(key, value))

    @_as_fastflow_errors
    def search_experiments(self, filter, view_type, order_by, offset, limit):
        found, token = [], None
        while len(found) < offset + limit:
            page = self._store.search_experiments(
                view_type, min(1000, offset + limit - len(found)), filter or None, order_by, token
            )
            found.extend(page)
            token = page.token
            if not token:
                break
        return [_experiment_row(e) for e in found[offset : offset + limit]]

    # ---- runs ------------------------------------------------------------------------------

    @_as_fastflow_errors
    def create_run(self, experiment_id, user_id, start_time, run_name, tags):
        run = self._store.create_run(
            experiment_id, user_id, start_time, [RunTag(k, v) for k, v in tags], run_name
        )
        self._outbox.register_run(run.info.run_id, True)
        return _run_row(run)

    @_as_fastflow_errors
    def get_run(self, run_id, with_io=False):
        self.flush()
        run = self._store.get_run(run_id)
        return _run_row(run) + (_io_row(run),) if with_io else _run_row(run)

    @_as_fastflow_errors
    def update_run(self, run_id, status=None, end_time=None, run_name=None):
        self.flush()
        if status is None:
            status = self._store.get_run(run_id).info.status
        info = self._store.update_run_info(
            run_id, RunStatus.from_string(status), end_time, run_name
        )
        return _info_row(info)

    @_as_fastflow_errors
    def delete_run(self, run_id):
        self.flush()
        self._store.delete_run(run_id)
        self._outbox.register_run(run_id, False)

    @_as_fastflow_errors
    def restore_run(self, run_id):
        self._store.restore_run(run_id)
        self._outbox.register_run(run_id, True)

    @_as_fastflow_errors
    def log_param(self, run_id, key, value):
        self._store.log_param(run_id, Param(key, value))

    @_as_fastflow_errors
    def set_tag(self, run_id, key, value):
        self._store.set_tag(run_id, RunTag(key, value))

    @_as_fastflow_errors
    def set_tags(self, run_id, tags):
        self._store.log_batch(run_id, [], [], [RunTag(k, v) for k, v in tags])

    @_as_fastflow_errors
    def delete_tag(self, run_id, key):
        self._store.delete_tag(run_id, key)

    @_as_fastflow_errors
    def get_metric_history(self, run_id, key):
        self.flush()
        return [
            (m.key, m.value, m.timestamp, m.step)
            for m in self._store.get_metric_history(run_id, key)
        ]

    @_as_fastflow_errors
    def search_runs(
        self,
        experiment_ids,
        filter,
        view_type,
        order_by,
        offset,
        limit,
        as_columns=False,
        packed_texts=False,
    ):
        # Text columns come as lists whatever `packed_texts` asks: `_search.frame` takes both.
        self.flush()
        wanted = None if limit is None else offset + limit
        found, token = [], None
        while wanted is None or len(found) < wanted:
            page_size = 50000 if wanted is None else min(50000, wanted - len(found))
            page = self._store.search_runs(
                experiment_ids, filter, view_type, page_size, order_by, token
            )
            found.extend(page)
            token = page.token
            if not token:
                break
        runs = found[offset:] if limit is None else found[offset : offset + limit]
        return _columns(runs) if as_columns else [_run_row(r) for r in runs]

"""MLflow's own stores for the URIs fastflow serves, with fastflow's writer inside.

A store of fastflow's cannot replace MLflow's (about 170 methods, used by the flavors, the
registry, evaluation and tracing). These subclasses of MLflow's ``SqlAlchemyStore`` and
``RestStore`` write metrics, params and tags, and open and end runs, through fastflow's
writer; the SQL one also reads metric histories (what MLflow's UI draws its charts from)
through fastflow, behind the points it queued. Every other method first makes the points
fastflow has queued visible, then is MLflow's own, on the same store.
"""

from __future__ import annotations

import functools
import inspect

import mlflow.tracking._tracking_service.utils as mlflow_store_registry
from mlflow.entities import (
    Dataset,
    DatasetInput,
    InputTag,
    LoggedModelInput,
    LoggedModelOutput,
    Metric,
    Param,
    Run,
    RunData,
    RunInfo,
    RunInputs,
    RunOutputs,
    RunStatus,
    RunTag,
)
from mlflow.entities.metric import MetricWithRunId
from mlflow.exceptions import MlflowException as MlflowError
from mlflow.store.entities.paged_list import PagedList
from mlflow.utils.async_logging.run_operations import RunOperations
from mlflow.utils.search_utils import SearchUtils

from fastflow import _context, _databricks, _fastflow
from fastflow._bridge.undo import remember
from fastflow.exceptions import MlflowException

# Written by fastflow; the rest of MLflow's store methods are MLflow's own.
_FASTFLOW_METHODS = (
    "get_run",
    "create_run",
    "update_run_info",
    "log_metric",
    "log_param",
    "set_tag",
    "delete_tag",
    "log_batch",
    "log_metric_async",
    "log_param_async",
    "set_tag_async",
    "log_batch_async",
)


def as_mlflow_error(error: MlflowException) -> MlflowError:
    from mlflow.protos.databricks_pb2 import ErrorCode

    try:
        code = ErrorCode.Value(error.error_code)
    except ValueError:
        code = ErrorCode.Value("INTERNAL_ERROR")
    return MlflowError(error.message, error_code=code)


def _reraised_as_mlflow(method):
    """Errors keep MLflow's type for MLflow's callers (they catch MLflow's exception)."""

    @functools.wraps(method)
    def call(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except MlflowException as e:
            raise as_mlflow_error(e) from None

    return call


def _linked(metric) -> bool:
    """A metric tied to a logged model or a dataset: MLflow records the link itself."""
    return (
        getattr(metric, "model_id", None) is not None
        or getattr(metric, "dataset_name", None) is not None
    )


def _info(row) -> RunInfo:
    run_id, experiment_id, name, user, status, start, end, artifact_uri, stage = row
    return RunInfo(run_id, experiment_id, user, status, start, end, stage, artifact_uri, name)


def _run(row) -> Run:
    """MLflow's ``Run`` from fastflow's row, as MLflow's own stores build it."""
    info, metrics, params, tags, (datasets, model_inputs, model_outputs) = row
    return Run(
        _info(info),
        RunData(
            [Metric(k, v, ts, step) for k, v, ts, step in metrics],
            [Param(k, v) for k, v in params],
            [RunTag(k, v) for k, v in tags],
        ),
        RunInputs(
            [
                DatasetInput(Dataset(*dataset), [InputTag(k, v) for k, v in input_tags])
                for dataset, input_tags in datasets
            ],
            [LoggedModelInput(model_id) for model_id in model_inputs],
        ),
        RunOutputs([LoggedModelOutput(model_id, step) for model_id, step in model_outputs]),
    )


class _WriterMethods:
    """The methods fastflow's writer carries out, mixed into MLflow's store classes."""

    def _visible(self) -> None:
        make_visible = getattr(self._fastflow, "make_visible", None)
        (make_visible or self._fastflow.flush)()

    def get_run(self, run_id):
        # Read by fastflow behind every point it queued: a read-after-log (Ray's Tune
        # callback reads the run before every result) costs no commit, and no ORM.
        if isinstance(self._fastflow, _fastflow.Tracker):
            try:
                return _run(self._fastflow.get_run(run_id, True))
            except MlflowException as e:
                raise as_mlflow_error(e) from None
        self._visible()
        return self._mlflow_base.get_run(self, run_id)

    @_reraised_as_mlflow
    def create_run(self, experiment_id, user_id, start_time, tags, run_name):
        tags = [(t.key, str(t.value)) for t in (tags or [])]
        tagged_name = next((v for k, v in tags if k == "mlflow.runName"), None)
        if run_name and tagged_name and run_name != tagged_name:
            raise MlflowException(
                "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
                f"different values (run_name='{run_name}', mlflow.runName='{tagged_name}').",
                error_code="INVALID_PARAMETER_VALUE",
            )
        name = run_name or tagged_name or _context.random_run_name()
        row = self._fastflow.create_run(str(experiment_id), user_id, start_time, name, tags)
        return self._mlflow_base.get_run(self, row[0][0])

    @_reraised_as_mlflow
    def update_run_info(self, run_id, run_status, end_time, run_name):
        status = RunStatus.to_string(run_status) if isinstance(run_status, int) else run_status
        if status in ("FINISHED", "FAILED", "KILLED"):
            # A run ends once everything logged to it is written, as fastflow's own end.
            self._fastflow.flush()
        return _info(self._fastflow.update_run(run_id, status, end_time, run_name))

    # A tracking server's store: a request that logs is answered once its points are on
    # disk, as MLflow's store answers, and visible to the server's other workers.
    _answers_when_written = False

    def _answered(self) -> None:
        if self._answers_when_written:
            self._fastflow.flush()

    @_reraised_as_mlflow
    def log_metric(self, run_id, metric):
        if _linked(metric):
            self._visible()
            return self._mlflow_base.log_metric(self, run_id, metric)
        self._fastflow.log_metric(run_id, metric.key, metric.value, metric.timestamp, metric.step)
        self._answered()

    @_reraised_as_mlflow
    def log_param(self, run_id, param):
        self._fastflow.log_param(run_id, param.key, str(param.value))

    @_reraised_as_mlflow
    def set_tag(self, run_id, tag):
        self._fastflow.set_tag(run_id, tag.key, str(tag.value))

    @_reraised_as_mlflow
    def delete_tag(self, run_id, key):
        self._fastflow.delete_tag(run_id, key)

    @_reraised_as_mlflow
    def log_batch(self, run_id, metrics, params, tags):
        if any(_linked(m) for m in metrics):
            self._visible()
            return self._mlflow_base.log_batch(self, run_id, metrics, params, tags)
        self._fastflow.log_batch(
            run_id,
            [(m.key, m.value, m.timestamp, m.step) for m in metrics],
            [(p.key, str(p.value)) for p in params],
            [(t.key, t.value) for t in tags],
        )
        self._answered()

    # The writer queues already: "async" is the same call, with nothing left to wait for.

    def log_metric_async(self, run_id, metric):
        self.log_metric(run_id, metric)
        return RunOperations([])

    def log_param_async(self, run_id, param):
        self.log_param(run_id, param)
        return RunOperations([])

    def set_tag_async(self, run_id, tag):
        self.set_tag(run_id, tag)
        return RunOperations([])

    def log_batch_async(self, run_id, metrics, params, tags):
        self.log_batch(run_id, metrics, params, tags)
        return RunOperations([])


# Read by fastflow on the SQL store (MLflow's UI draws its charts from these).
_HISTORY_READS = (
    "get_metric_history",
    "get_metric_history_bulk_interval",
    "get_metric_history_bulk_interval_from_steps",
)

_INT64 = range(-(2**63), 2**63)


def _whole(value) -> bool:
    """An int SQLite binds as an integer; anything else is left to MLflow's own code."""
    return type(value) is int and value in _INT64


def _sized_strings(values) -> bool:
    return isinstance(values, (list, tuple)) or (
        hasattr(values, "__len__") and all(isinstance(v, str) for v in values)
    )


class _HistoryReads:
    """The metric-history reads of MLflow's SQL store, answered by fastflow's reads with
    the points, order, limits and tokens MLflow's queries give. Arguments of a kind those
    reads do not take (a numpy step, a generator of run ids) go to MLflow's own method."""

    def _history_reader(self):
        tracker = self._fastflow
        return tracker if isinstance(tracker, _fastflow.Tracker) else None

    @_reraised_as_mlflow
    def get_metric_history(self, run_id, metric_key, max_results=None, page_token=None):
        tracker = self._history_reader()
        # A page (max_results) is MLflow's query: SQLite walks the primary key in timestamp
        # order and stops after the page, where fastflow would read the whole history.
        if (
            tracker is None
            or max_results is not None
            or not isinstance(run_id, str)
            or not isinstance(metric_key, str)
        ):
            self._visible()
            return self._mlflow_base.get_metric_history(
                self, run_id, metric_key, max_results=max_results, page_token=page_token
            )
        offset = SearchUtils.parse_start_offset_from_page_token(page_token)
        if not _whole(offset):
            self._visible()
            return self._mlflow_base.get_metric_history(
                self, run_id, metric_key, max_results=max_results, page_token=page_token
            )
        # SQLite reads a negative OFFSET as none.
        points = tracker.get_metric_history_page(run_id, metric_key, max(offset, 0))
        return PagedList(
            [Metric(key, value, timestamp, step) for key, value, timestamp, step in points], None
        )

    @_reraised_as_mlflow
    def get_metric_history_bulk_interval_from_steps(self, run_id, metric_key, steps, max_results):
        tracker = self._history_reader()
        if (
            tracker is None
            or not isinstance(run_id, str)
            or not isinstance(metric_key, str)
            or not isinstance(steps, (list, tuple, set, frozenset, range))
            or not all(_whole(step) for step in steps)
            or not (max_results is None or _whole(max_results))
        ):
            self._visible()
            return self._mlflow_base.get_metric_history_bulk_interval_from_steps(
                self, run_id, metric_key, steps, max_results
            )
        # No LIMIT, or a negative one, is SQLite's "every row".
        limit = 2**63 if max_results is None or max_results < 0 else max_results
        points = tracker.get_metric_history_at_steps(run_id, metric_key, list(steps), limit)
        return [
            MetricWithRunId(run_id=run_id, metric=Metric(key, value, timestamp, step))
            for key, value, timestamp, step in points
        ]

    @_reraised_as_mlflow
    def get_metric_history_bulk_interval(
        self, run_ids, metric_key, max_results, start_step, end_step
    ):
        tracker = self._history_reader()
        bounded = start_step is not None or end_step is not None
        if (
            tracker is None
            or not _sized_strings(run_ids)
            or not all(isinstance(run_id, str) for run_id in run_ids)
            or not isinstance(metric_key, str)
            or not _whole(max_results)
            or (bounded and not (_whole(start_step) and _whole(end_step)))
        ):
            # MLflow's own, with its error for one bound without the other.
            self._visible()
            return self._mlflow_base.get_metric_history_bulk_interval(
                self, run_ids, metric_key, max_results, start_step, end_step
            )
        max_results = max(1, max_results)
        sampled = []
        for run_id in run_ids:
            points = tracker.get_metric_history_interval(
                run_id, metric_key, max_results, start_step, end_step
            )
            sampled.extend(
                MetricWithRunId(run_id=run_id, metric=Metric(key, value, timestamp, step))
                for key, value, timestamp, step in points
            )
        return sampled


def _after_queued_points(base, name):
    method = getattr(base, name)

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        try:
            self._visible()
        except MlflowException as e:
            raise as_mlflow_error(e) from None
        return method(self, *args, **kwargs)

    return call


def _bridged_class(base, class_name, fastflow_methods=(_WriterMethods,)):
    """``base`` with fastflow's methods, and every other public method of MLflow's made to
    see the points fastflow has queued before it reads or writes."""
    ours = {name for mixin in fastflow_methods for name in vars(mixin)}
    namespace = {"_mlflow_base": base, "__module__": __name__}
    for name, _ in inspect.getmembers(base, inspect.isfunction):
        if not name.startswith("_") and name not in ours:
            namespace[name] = _after_queued_points(base, name)
    return type(class_name, (*fastflow_methods, base), namespace)


_classes: dict = {}


def _class(kind):
    found = _classes.get(kind)
    if found is None:
        if kind == "sql":
            from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

            found = _bridged_class(
                SqlAlchemyStore, "FastflowSqlAlchemyStore", (_HistoryReads, _WriterMethods)
            )
        elif kind == "databricks":
            from mlflow.store.tracking.databricks_rest_store import DatabricksTracingRestStore

            found = _bridged_class(DatabricksTracingRestStore, "FastflowDatabricksRestStore")
        else:
            from mlflow.store.tracking.rest_store import RestStore

            found = _bridged_class(RestStore, "FastflowRestStore")
        _classes[kind] = found
    return found


def _sqlite_store(store_uri, artifact_uri=None, answers_when_written=False):
    import os

    cls = _class("sql")
    store = cls.__new__(cls)
    # fastflow opens (and if need be creates) the store first: MLflow then finds its schema.
    store._fastflow = _context.tracker(store_uri)
    store._answers_when_written = answers_when_written
    if artifact_uri is None:
        artifact_uri = os.environ.get(
            "_MLFLOW_SERVER_ARTIFACT_ROOT", _context.default_artifact_root()
        )
    cls.__init__(store, store_uri, artifact_uri)
    return store


def _rest_store(store_uri, **_):
    from mlflow.utils.credentials import get_default_host_creds

    cls = _class("rest")
    store = cls.__new__(cls)
    store._fastflow = _context.tracker(store_uri)
    cls.__init__(store, functools.partial(get_default_host_creds, store_uri))
    return store


def _databricks_store(store_uri, **kwargs):
    from mlflow.utils.databricks_utils import get_databricks_host_creds

    try:
        ours = _databricks.resolve(store_uri) is not None
    except MlflowException:
        ours = False
    if not ours:
        # Authentication only MLflow's SDK-backed store carries out, or none: MLflow's own
        # store (and its error when a request is made).
        return _mlflow_builders["databricks"](store_uri, **kwargs)
    cls = _class("databricks")
    store = cls.__new__(cls)
    store._fastflow = _context.tracker(store_uri)
    cls.__init__(store, functools.partial(get_databricks_host_creds, store_uri))
    return store


serves = _context.native
_BUILDERS = {
    "sqlite": _sqlite_store,
    "http": _rest_store,
    "https": _rest_store,
    "databricks": _databricks_store,
}
_mlflow_builders: dict = {}


def install() -> None:
    registry = mlflow_store_registry._tracking_store_registry
    builders = {scheme: registry._registry.get(scheme) for scheme in _BUILDERS}
    _mlflow_builders.update(builders)
    for scheme, builder in _BUILDERS.items():
        registry.register(scheme, builder)
    # Stores MLflow built before the bridge was installed are not used again.
    registry._get_store_with_resolved_uri.cache_clear()

    def restore():
        for scheme, builder in builders.items():
            registry._registry[scheme] = builder
        registry._get_store_with_resolved_uri.cache_clear()

    remember(restore)

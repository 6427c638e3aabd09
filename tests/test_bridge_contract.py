"""The contract between fastflow's MLflow bridge and MLflow's internals.

The bridge (``python/fastflow/_bridge``) replaces MLflow's fluent state in place, subclasses
MLflow's stores, wraps MLflow's logging entry points and calls MLflow's functions positionally.
None of that is public API: an MLflow upgrade can move or rename any of it, and most of the
bridge would then fail silently (a wrapper that no longer matches, a state object MLflow no
longer reads, an ``atexit.unregister`` of a function that is not registered). Every name and
signature the bridge relies on is listed here, and each test names the one that moved.

Facts about MLflow are read from the installed MLflow; where the bridge has already replaced
something in this process (the fluent state, the logging functions), they are read from the
original (the wrapped function) or from MLflow's source.
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _pinned_mlflow() -> str:
    pins = set(re.findall(r'"mlflow==([^"]+)"', (REPO / "pyproject.toml").read_text()))
    assert len(pins) == 1, f"pyproject.toml should pin one MLflow version, found {sorted(pins)}"
    return pins.pop()


PINNED = _pinned_mlflow()


def test_installed_mlflow_is_the_pinned_one():
    installed = importlib.metadata.version("mlflow")
    assert installed == PINNED, (
        f"MLflow {installed} is installed, fastflow pins MLflow {PINNED} (pyproject.toml): the "
        "bridge and the schema fastflow writes are checked against the pinned version only"
    )


# ---- helpers --------------------------------------------------------------------------------


def _moved(what: str, why: str) -> str:
    return f"MLflow {importlib.metadata.version('mlflow')} moved {what}: the bridge {why}"


def _module(path: str, why: str):
    try:
        return importlib.import_module(path)
    except ImportError as e:
        pytest.fail(_moved(f"module `{path}` ({e})", why))


def _attribute(path: str, why: str):
    """``path`` is ``module.attr`` or ``module:Class.attr``."""
    if ":" in path:
        module_path, _, rest = path.partition(":")
    else:
        module_path, _, rest = path.rpartition(".")
    owner = _module(module_path, why)
    for part in rest.split("."):
        if not hasattr(owner, part):
            pytest.fail(_moved(f"`{path}` (no attribute {part!r})", why))
        owner = getattr(owner, part)
    return owner


def _original(function):
    """MLflow's function behind the bridge's wrappers (marked ``_fastflow_bridge``)."""
    while getattr(function, "_fastflow_bridge", False):
        function = function.__wrapped__
    return function


def _parameters(function) -> list:
    params = list(inspect.signature(_original(function), follow_wrapped=True).parameters)
    return params[1:] if params[:1] == ["self"] else params


def _required(function) -> list:
    sig = inspect.signature(_original(function), follow_wrapped=True)
    return [
        name
        for name, p in sig.parameters.items()
        if name != "self"
        and p.default is p.empty
        and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _source(path: str) -> str:
    spec = importlib.util.find_spec(path)
    assert spec is not None and spec.origin, f"no source for MLflow module {path}"
    return Path(spec.origin).read_text()


def _mlflow_root() -> Path:
    return Path(importlib.util.find_spec("mlflow").origin).parent


# ---- modules and names -------------------------------------------------------------------------

FLUENT = "mlflow.tracking.fluent"
URI_STATE = "mlflow.tracking._tracking_service.utils"

# (MLflow name, what the bridge does with it)
NAMES = [
    (f"{FLUENT}._active_run_stack", "state.py replaces it with fastflow's run stacks"),
    (f"{FLUENT}._last_active_run_id", "state.py replaces it with fastflow's last active run"),
    (f"{FLUENT}._active_experiment_id", "state.py reads and writes MLflow's active experiment"),
    (f"{FLUENT}._safe_end_run", "state.py unregisters MLflow's atexit end_run"),
    (f"{FLUENT}._ACTIVE_MODEL_CONTEXT", "entry_points.py checks for an active model"),
    (f"{FLUENT}.set_experiment", "state.py wraps it to share the active experiment"),
    (f"{FLUENT}.log_metric", "entry_points.py replaces it"),
    (f"{FLUENT}.log_metrics", "entry_points.py replaces it"),
    (f"{FLUENT}.log_param", "entry_points.py replaces it"),
    (f"{FLUENT}.log_params", "entry_points.py replaces it"),
    (f"{FLUENT}.set_tag", "entry_points.py replaces it"),
    (f"{FLUENT}.set_tags", "entry_points.py replaces it"),
    ("mlflow.set_experiment", "state.py wraps it to share the active experiment"),
    ("mlflow.set_tracking_uri", "state.py wraps it to share the tracking URI"),
    ("mlflow.tracking.set_tracking_uri", "state.py wraps it to share the tracking URI"),
    ("mlflow.log_metric", "entry_points.py replaces it"),
    ("mlflow.log_metrics", "entry_points.py replaces it"),
    ("mlflow.log_param", "entry_points.py replaces it"),
    ("mlflow.log_params", "entry_points.py replaces it"),
    ("mlflow.set_tag", "entry_points.py replaces it"),
    ("mlflow.set_tags", "entry_points.py replaces it"),
    (f"{URI_STATE}._tracking_uri", "state.py reads and writes MLflow's tracking URI"),
    (f"{URI_STATE}._tracking_store_registry", "stores.py registers its store builders there"),
    (f"{URI_STATE}.is_tracking_uri_set", "state.py asks whether MLflow's URI was chosen"),
    (f"{URI_STATE}.set_tracking_uri", "state.py wraps it to share the tracking URI"),
    (f"{URI_STATE}._get_store", "foreign.py opens stores only MLflow serves with it"),
    ("mlflow.tracking.MlflowClient", "tracking/client.py delegates MLflow-only methods to it"),
    ("mlflow.tracking.client:MlflowClient", "entry_points.py replaces two of its methods"),
    ("mlflow.tracking.client:MlflowClient.log_metric", "entry_points.py replaces it"),
    ("mlflow.tracking.client:MlflowClient.log_batch", "entry_points.py replaces it"),
    ("mlflow.entities:RunInfo", "stores.py builds MLflow's RunInfo from fastflow's rows"),
    ("mlflow.entities:RunStatus", "stores.py and foreign.py convert run statuses"),
    ("mlflow.entities:Metric", "foreign.py builds metrics for MLflow's store"),
    ("mlflow.entities:Param", "foreign.py builds params for MLflow's store"),
    ("mlflow.entities:RunTag", "foreign.py builds tags for MLflow's store"),
    ("mlflow.entities:ExperimentTag", "foreign.py builds experiment tags"),
    ("mlflow.entities:Experiment", "state.py reads set_experiment's result"),
    ("mlflow.exceptions:MlflowException", "the bridge raises MLflow's exception to MLflow code"),
    (
        "mlflow.utils.async_logging.run_operations:RunOperations",
        "asynchronous calls return an empty RunOperations",
    ),
    ("mlflow.utils.credentials:get_default_host_creds", "stores.py builds the REST store"),
    ("mlflow.utils.thread_utils:ThreadLocalVariable", "state.py stands in for two of them"),
    ("mlflow.store.tracking.sqlalchemy_store:SqlAlchemyStore", "stores.py subclasses it"),
    ("mlflow.store.tracking.rest_store:RestStore", "stores.py subclasses it"),
    ("mlflow.store.tracking.file_store:FileStore", "foreign.py calls its methods (file:)"),
    ("mlflow.protos.databricks_pb2:ErrorCode.Value", "MlflowException takes an ErrorCode number"),
    ("mlflow.tracing.provider:reset", "state.py resets the tracer when the URI changes"),
    ("mlflow.models.model:Model.log", "entry_points.py mirrors how it records model outputs"),
    # Names fastflow has not and hands to MLflow (``fastflow.<name>`` is MLflow's).
    ("mlflow.sklearn", "delegates fastflow.sklearn to it"),
    ("mlflow.pyfunc", "delegates fastflow.pyfunc to it"),
    ("mlflow.register_model", "delegates fastflow.register_model to it"),
    ("mlflow.autolog", "delegates fastflow.autolog to it"),
    ("mlflow.log_input", "delegates fastflow.log_input to it"),
    ("mlflow.data", "delegates fastflow.data to it"),
    ("mlflow.evaluate", "delegates fastflow.evaluate to it"),
    (
        "mlflow.tracking.client:MlflowClient.transition_model_version_stage",
        "delegates fastflow.MlflowClient().transition_model_version_stage to it",
    ),
    (
        "mlflow.tracking.client:MlflowClient.set_registered_model_alias",
        "delegates fastflow.MlflowClient().set_registered_model_alias to it",
    ),
]


@pytest.mark.parametrize(("name", "why"), NAMES, ids=[n for n, _ in NAMES])
def test_name_exists(name, why):
    _attribute(name, why)


# ---- signatures of what the bridge calls or replaces ------------------------------------------

# The bridge's replacements have exactly MLflow's parameters and call the original
# positionally with all of them: a parameter MLflow adds, removes or reorders breaks them.
EXACT = [
    (
        f"{FLUENT}.log_metric",
        ["key", "value", "step", "synchronous", "timestamp", "run_id", "model_id", "dataset"],
    ),
    (
        f"{FLUENT}.log_metrics",
        ["metrics", "step", "synchronous", "run_id", "timestamp", "model_id", "dataset"],
    ),
    (
        "mlflow.tracking.client:MlflowClient.log_metric",
        [
            "run_id",
            "key",
            "value",
            "timestamp",
            "step",
            "synchronous",
            "dataset_name",
            "dataset_digest",
            "model_id",
        ],
    ),
    (
        "mlflow.tracking.client:MlflowClient.log_batch",
        ["run_id", "metrics", "params", "tags", "synchronous"],
    ),
    # state.py's wrapper is ``def set_tracking_uri(uri)``.
    ("mlflow.set_tracking_uri", ["uri"]),
    ("mlflow.tracking.set_tracking_uri", ["uri"]),
    (f"{URI_STATE}.set_tracking_uri", ["uri"]),
    # stores.py builds MLflow's RunInfo positionally from fastflow's row.
    (
        "mlflow.entities:RunInfo.__init__",
        [
            "run_id",
            "experiment_id",
            "user_id",
            "status",
            "start_time",
            "end_time",
            "lifecycle_stage",
            "artifact_uri",
            "run_name",
        ],
    ),
]


@pytest.mark.parametrize(("name", "expected"), EXACT, ids=[n for n, _ in EXACT])
def test_exact_signature(name, expected):
    found = _parameters(_attribute(name, "replaces or calls it"))
    assert found == expected, _moved(
        f"the parameters of `{name}` (now {found}, the bridge expects {expected})",
        "wraps it with exactly these parameters and passes them positionally",
    )


# MLflow's fluent functions whose replacement forwards every argument to fastflow's own.
@pytest.mark.parametrize("name", ["log_param", "log_params", "set_tag", "set_tags"])
def test_fluent_functions_match_fastflows(name):
    from fastflow import fluent

    mlflows = _parameters(_attribute(f"{FLUENT}.{name}", "replaces it"))
    fastflows = _parameters(getattr(fluent, name))
    assert mlflows == fastflows, _moved(
        f"the parameters of `mlflow.{name}` (now {mlflows}, fastflow.{name} takes {fastflows})",
        f"hands every call of mlflow.{name} to fastflow.{name} with the caller's arguments",
    )


# Leading parameters of what the bridge calls positionally (more, with defaults, may follow).
LEADING = [
    (f"{URI_STATE}._get_store", ["store_uri"]),
    (f"{URI_STATE}.is_tracking_uri_set", []),
    ("mlflow.utils.credentials:get_default_host_creds", ["store_uri"]),
    ("mlflow.utils.async_logging.run_operations:RunOperations.__init__", ["operation_futures"]),
    (
        "mlflow.store.tracking.sqlalchemy_store:SqlAlchemyStore.__init__",
        ["db_uri", "default_artifact_root"],
    ),
    ("mlflow.store.tracking.rest_store:RestStore.__init__", ["get_host_creds"]),
    ("mlflow.entities:Metric.__init__", ["key", "value", "timestamp", "step"]),
    ("mlflow.entities:Param.__init__", ["key", "value"]),
    ("mlflow.entities:RunTag.__init__", ["key", "value"]),
    ("mlflow.entities:ExperimentTag.__init__", ["key", "value"]),
    ("mlflow.exceptions:MlflowException.__init__", ["message"]),
    (f"{URI_STATE}:_tracking_store_registry.register", ["scheme", "store_builder"]),
    ("mlflow.tracing.provider:reset", []),
]


@pytest.mark.parametrize(("name", "expected"), LEADING, ids=[n for n, _ in LEADING])
def test_leading_parameters(name, expected):
    target = _attribute(name, "calls it")
    found = _parameters(target)
    assert found[: len(expected)] == expected, _moved(
        f"the parameters of `{name}` (now {found}, the bridge passes {expected})",
        "calls it with these arguments, in this order",
    )
    extra = [p for p in _required(target) if p not in expected]
    assert not extra, _moved(f"`{name}`: it now requires {extra}", f"calls it with {expected} only")


# ---- MLflow's stores -------------------------------------------------------------------------

# Store methods fastflow's writer carries out (stores.py ``_FASTFLOW_METHODS``), with the
# parameters MLflow's callers pass.
WRITER_METHODS = {
    "get_run": ["run_id"],
    "create_run": ["experiment_id", "user_id", "start_time", "tags", "run_name"],
    "update_run_info": ["run_id", "run_status", "end_time", "run_name"],
    "log_metric": ["run_id", "metric"],
    "log_param": ["run_id", "param"],
    "set_tag": ["run_id", "tag"],
    "delete_tag": ["run_id", "key"],
    "log_batch": ["run_id", "metrics", "params", "tags"],
    "log_metric_async": ["run_id", "metric"],
    "log_param_async": ["run_id", "param"],
    "set_tag_async": ["run_id", "tag"],
    "log_batch_async": ["run_id", "metrics", "params", "tags"],
}
STORES = [
    "mlflow.store.tracking.sqlalchemy_store:SqlAlchemyStore",
    "mlflow.store.tracking.rest_store:RestStore",
]


def test_the_bridge_overrides_the_listed_methods():
    from fastflow._bridge import stores

    assert set(stores._FASTFLOW_METHODS) == set(WRITER_METHODS), (
        "stores._FASTFLOW_METHODS changed: list its methods and their MLflow signatures in "
        "WRITER_METHODS here"
    )
    for name, params in WRITER_METHODS.items():
        ours = _parameters(getattr(stores._WriterMethods, name))
        assert ours == params, f"stores._WriterMethods.{name} takes {ours}, MLflow's {params}"


@pytest.mark.parametrize("store", STORES)
@pytest.mark.parametrize("method", sorted(WRITER_METHODS))
def test_store_method(store, method):
    expected = WRITER_METHODS[method]
    found = _parameters(_attribute(f"{store}.{method}", f"overrides {method} in its subclass"))
    assert found == expected, _moved(
        f"the parameters of `{store}.{method}` (now {found}, fastflow's override takes {expected})",
        "overrides it: MLflow's callers would pass arguments the override does not take",
    )


# Metric-history reads fastflow answers on the SQL store (stores.py ``_HISTORY_READS``), with
# MLflow's parameters: its server's handlers pass them by name.
HISTORY_READS = {
    "get_metric_history": ["run_id", "metric_key", "max_results", "page_token"],
    "get_metric_history_bulk_interval": [
        "run_ids",
        "metric_key",
        "max_results",
        "start_step",
        "end_step",
    ],
    "get_metric_history_bulk_interval_from_steps": ["run_id", "metric_key", "steps", "max_results"],
}


@pytest.mark.parametrize("method", sorted(HISTORY_READS))
def test_history_read(method):
    from fastflow._bridge import stores

    assert set(stores._HISTORY_READS) == set(HISTORY_READS)
    expected = HISTORY_READS[method]
    found = _parameters(_attribute(f"{STORES[0]}.{method}", f"answers {method} itself"))
    assert found == expected, _moved(
        f"the parameters of `{STORES[0]}.{method}` (now {found}, fastflow's takes {expected})",
        "answers it: MLflow's callers would pass arguments the override does not take",
    )
    assert _parameters(getattr(stores._HistoryReads, method)) == expected
    assert stores._class("sql").__dict__.get(method) is None  # not MLflow's, wrapped


@pytest.mark.parametrize("store", STORES)
def test_store_get_run(store):
    # create_run returns MLflow's own get_run of the new run.
    found = _parameters(_attribute(f"{store}.get_run", "reads the new run back with it"))
    assert found == ["run_id"], _moved(f"`{store}.get_run` (now {found})", "calls get_run(id)")


def test_tracking_client_writes_only_through_the_overridden_methods():
    """MLflow's client reaches the store through ``self.store.<method>``: a new method that
    writes a run's metrics, params or tags would bypass fastflow's writer."""
    from fastflow._bridge import stores

    source = _source("mlflow.tracking._tracking_service.client")
    called = set(re.findall(r"self\.store\.([a-z_]+)\(", source))
    run_writes = {
        name
        for name in called
        if re.search(r"metric|param|tag|batch|^create_run$|^update_run", name)
        and not re.search(r"experiment|logged_model|dataset|trace|history", name)
    }
    missing = sorted(run_writes - set(stores._FASTFLOW_METHODS))
    assert not missing, _moved(
        f"TrackingServiceClient's writes to a run: it now calls store.{missing}",
        "overrides only " + ", ".join(stores._FASTFLOW_METHODS) + " (stores._FASTFLOW_METHODS)",
    )
    gone = sorted(set(stores._FASTFLOW_METHODS) - called)
    assert not gone, _moved(
        f"TrackingServiceClient's writes to a run: it no longer calls store.{gone}",
        "expects MLflow's client to write runs through these methods",
    )


# ForeignTracker (foreign.py) calls MLflow's store positionally with these.
FOREIGN_CALLS = {
    "log_batch": ["run_id", "metrics", "params", "tags"],
    "create_experiment": ["name", "artifact_location", "tags"],
    "get_experiment": ["experiment_id"],
    "get_experiment_by_name": ["experiment_name"],
    "delete_experiment": ["experiment_id"],
    "restore_experiment": ["experiment_id"],
    "set_experiment_tag": ["experiment_id", "tag"],
    "search_experiments": ["view_type", "max_results", "filter_string", "order_by", "page_token"],
    "create_run": ["experiment_id", "user_id", "start_time", "tags", "run_name"],
    "get_run": ["run_id"],
    "update_run_info": ["run_id", "run_status", "end_time", "run_name"],
    "delete_run": ["run_id"],
    "restore_run": ["run_id"],
    "log_param": ["run_id", "param"],
    "delete_tag": ["run_id", "key"],
    "get_metric_history": ["run_id", "metric_key"],
    "search_runs": [
        "experiment_ids",
        "filter_string",
        "run_view_type",
        "max_results",
        "order_by",
        "page_token",
    ],
}


# The stores MLflow serves those URIs with: SQL databases, file:, databricks (REST).
FOREIGN_STORES = [*STORES, "mlflow.store.tracking.file_store:FileStore"]


@pytest.mark.parametrize("store", FOREIGN_STORES)
@pytest.mark.parametrize("method", sorted(FOREIGN_CALLS))
def test_foreign_store_method(store, method):
    expected = FOREIGN_CALLS[method]
    name = f"{store}.{method}"
    found = _parameters(_attribute(name, "calls it for stores only MLflow serves"))
    assert found[: len(expected)] == expected, _moved(
        f"the parameters of `{name}` (now {found}, foreign.py passes {expected})",
        "calls it positionally for postgresql://, file:, databricks and plugin stores",
    )


def test_store_registry_calls_builders_with_store_uri_and_artifact_uri(tmp_path):
    from mlflow.tracking._tracking_service.registry import TrackingStoreRegistry

    registry = TrackingStoreRegistry()
    seen = []
    registry.register("sqlite", lambda **kwargs: seen.append(kwargs) or object())
    registry.get_store(f"sqlite:///{tmp_path / 'x.db'}", "file:///artifacts")
    assert seen and set(seen[0]) == {"store_uri", "artifact_uri"}, _moved(
        f"how the store registry calls a builder (now with {seen})",
        "registers builders taking store_uri= and artifact_uri=",
    )
    cache_clear = getattr(registry._get_store_with_resolved_uri, "cache_clear", None)
    assert callable(cache_clear), _moved(
        "TrackingStoreRegistry._get_store_with_resolved_uri's cache",
        "clears it so that stores built before the bridge are not used again",
    )


def test_server_artifact_root_variable():
    # stores.py takes the server's artifact root from it, as MLflow's own builder does.
    assert "_MLFLOW_SERVER_ARTIFACT_ROOT" in _source(URI_STATE), _moved(
        "the server's artifact root (`_MLFLOW_SERVER_ARTIFACT_ROOT`)",
        "reads it when `mlflow server` builds a sqlite store",
    )


# ---- entities and values ---------------------------------------------------------------------


def test_entities_have_the_attributes_the_bridge_reads():
    from mlflow.entities import Experiment, Metric, Param, RunStatus, RunTag
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import ErrorCode
    from mlflow.utils.async_logging.run_operations import RunOperations

    metric = Metric("loss", 0.5, 1, 2)
    for attr in ("key", "value", "timestamp", "step", "model_id", "dataset_name"):
        assert hasattr(metric, attr), _moved(f"Metric.{attr}", "reads it from every metric")
    for cls in (Param, RunTag):
        item = cls("k", "v")
        assert (item.key, item.value) == ("k", "v"), _moved(f"{cls.__name__}.key/.value", "")
    assert isinstance(Experiment.__dict__.get("experiment_id"), property), _moved(
        "Experiment.experiment_id", "reads set_experiment's result's experiment_id"
    )
    assert RunStatus.to_string(RunStatus.FINISHED) == "FINISHED"
    assert RunStatus.from_string("KILLED") == RunStatus.KILLED
    # MLflow's exception takes an ErrorCode number and keeps its name.
    code = ErrorCode.Value("INVALID_PARAMETER_VALUE")
    error = MlflowException("message", error_code=code)
    assert (error.message, error.error_code) == ("message", "INVALID_PARAMETER_VALUE"), _moved(
        "MlflowException's message / error_code", "converts errors both ways with them"
    )
    assert callable(getattr(RunOperations([]), "wait", None)), _moved(
        "RunOperations.wait", "returns RunOperations([]) that callers wait on"
    )


def test_errors_keep_their_code_for_mlflow():
    from fastflow._bridge.stores import as_mlflow_error
    from fastflow.exceptions import MlflowException

    error = as_mlflow_error(MlflowException("gone", error_code="RESOURCE_DOES_NOT_EXIST"))
    assert error.error_code == "RESOURCE_DOES_NOT_EXIST"


def test_mlflow_exception_derives_from_exception_directly():
    """state.py makes MLflow's exception a subclass of fastflow's by replacing its bases:
    that keeps everything only while Exception is its one base."""
    from mlflow.exceptions import MlflowException

    bases = MlflowException.__bases__
    shared = len(bases) == 1 and bases[0].__name__ == "SharedMlflowException"
    assert bases == (Exception,) or shared, _moved(
        f"MlflowException's bases (now {bases})",
        "replaces them with (SharedMlflowException,), dropping any base but Exception",
    )


def test_client_keeps_its_tracking_uri_and_a_dict(tmp_path):
    from mlflow.tracking.client import MlflowClient

    uri = f"sqlite:///{tmp_path / 'client.db'}"
    client = MlflowClient(uri)
    assert client._tracking_client.tracking_uri == uri, _moved(
        "MlflowClient._tracking_client.tracking_uri",
        "reads the client's URI from it to pick fastflow's store",
    )
    assert isinstance(client.__dict__, dict), _moved(
        "MlflowClient's instance dict", "caches fastflow's store on the client"
    )


def test_active_model_context():
    import mlflow.tracking.fluent as fluent

    context = fluent._ACTIVE_MODEL_CONTEXT.get()
    assert hasattr(context, "model_id"), _moved(
        "_ACTIVE_MODEL_CONTEXT.get().model_id",
        "leaves metrics to MLflow while a model is active",
    )
    source = inspect.getsource(fluent.get_active_model_id) + inspect.getsource(
        fluent._get_active_model_context
    )
    assert "_ACTIVE_MODEL_CONTEXT.get()" in source, _moved(
        "where get_active_model_id() reads the active model",
        "reads _ACTIVE_MODEL_CONTEXT.get().model_id as MLflow's log_metric does",
    )


# ---- the fluent state ------------------------------------------------------------------------

STAND_INS = ("SharedRunStacks", "SharedLastActiveRun")


def test_thread_local_variable_api():
    from fastflow._bridge import state
    from mlflow.utils.thread_utils import ThreadLocalVariable

    api = {
        name
        for name, _ in inspect.getmembers(ThreadLocalVariable, inspect.isfunction)
        if not name.startswith("_")
    }
    assert api == {"get", "set", "get_all_thread_values", "reset"}, _moved(
        f"ThreadLocalVariable's methods (now {sorted(api)})",
        f"stands in for two of them with {', '.join(STAND_INS)}, which offer get, set, "
        "get_all_thread_values and reset",
    )
    for name in STAND_INS:
        missing = [m for m in api if not callable(getattr(getattr(state, name), m, None))]
        assert not missing, f"state.{name} lacks {missing} of ThreadLocalVariable's API"


@pytest.mark.parametrize(
    ("variable", "stand_in"),
    [("_active_run_stack", "SharedRunStacks"), ("_last_active_run_id", "SharedLastActiveRun")],
)
def test_fluent_state_is_a_thread_local_variable_used_through_its_api(variable, stand_in):
    from fastflow._bridge import state

    tree = ast.parse(_source(FLUENT))
    assigned = [
        node.value
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == variable for t in node.targets)
    ]
    assert (
        len(assigned) == 1
        and isinstance(assigned[0], ast.Call)
        and getattr(assigned[0].func, "id", None) == "ThreadLocalVariable"
    ), _moved(
        f"`{FLUENT}.{variable}` (no longer one module-level ThreadLocalVariable)",
        f"replaces it with state.{stand_in}",
    )
    # Every use anywhere in MLflow goes through methods the stand-in offers.
    used = set()
    for path in _mlflow_root().rglob("*.py"):
        text = path.read_text(errors="replace")
        if variable in text:
            used |= set(re.findall(rf"\b{variable}\.([A-Za-z_]+)", text))
    offered = {m for m in dir(getattr(state, stand_in)) if not m.startswith("_")}
    assert used and used <= offered, _moved(
        f"how `{variable}` is used (MLflow calls {sorted(used)})",
        f"stands in for it with state.{stand_in}, which offers {sorted(offered)}",
    )


def test_mlflow_registers_safe_end_run_at_exit():
    tree = ast.parse(_source(FLUENT))
    registered = [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "register"
        and getattr(node.func.value, "id", None) == "atexit"
        and [getattr(a, "id", None) for a in node.args] == ["_safe_end_run"]
    ]
    assert registered, _moved(
        "its exit handler (no `atexit.register(_safe_end_run)` in fluent.py)",
        "unregisters _safe_end_run so that runs end once at exit, by fastflow",
    )


def test_set_tracking_uri_keeps_the_uri_in_the_module_global():
    source = inspect.getsource(_original(_attribute(f"{URI_STATE}.set_tracking_uri", "")))
    assert "global _tracking_uri" in source, _moved(
        "where set_tracking_uri keeps the URI",
        f"reads {URI_STATE}._tracking_uri after MLflow's set_tracking_uri",
    )


# ---- linked metrics: when MLflow ties a fluent metric to a logged model -----------------------


def test_model_log_records_its_output_on_the_active_run():
    from mlflow.models.model import Model

    source = inspect.getsource(Model.log)
    for fact in (
        "mlflow.active_run()",
        "active_run.outputs.model_outputs.append(",
        "active_run._outputs = RunOutputs(",
    ):
        assert fact in source, _moved(
            f"how Model.log records the model on the active run (no `{fact}`)",
            "finds a run's logged models in active_run.outputs.model_outputs",
        )


def test_fluent_metrics_link_to_models_logged_at_the_same_step():
    import mlflow.tracking.fluent as fluent

    helper = inspect.getsource(fluent._get_model_ids_for_new_metric_if_exist)
    assert "run.outputs.model_outputs" in helper and "mo.step == metric_step" in helper, _moved(
        "how a fluent metric is linked to the run's models",
        "takes MLflow's path when the active run logged a model at the metric's step",
    )
    for name in ("log_metric", "log_metrics"):
        source = inspect.getsource(_original(getattr(fluent, name)))
        for fact in (
            "step = step or 0",
            "model_id or get_active_model_id()",
            "_get_model_ids_for_new_metric_if_exist(run, step)",
        ):
            assert fact in source, _moved(
                f"how {name} links metrics to models (no `{fact}`)",
                "decides from the same facts whether a metric is linked",
            )


def test_fastflow_runs_keep_mlflows_outputs():
    """Model.log sets ``active_run._outputs`` on fastflow's run (the active run is fastflow's)."""
    import fastflow

    with fastflow.start_run() as run:
        marker = object()
        run._outputs = marker
        assert run.outputs is marker, "fastflow's run must read .outputs from ._outputs"


# ---- MLflow's import structure ---------------------------------------------------------------


def test_import_mlflow_loads_fluent_and_installs_the_bridge(tmp_path):
    # The bridge as users have it, whatever this process was told.
    env = {k: v for k, v in os.environ.items() if k != "FASTFLOW_MLFLOW_BRIDGE"}
    code = textwrap.dedent(
        """
        import sys
        import mlflow
        assert "mlflow.tracking.fluent" in sys.modules, "import mlflow no longer loads fluent"
        import fastflow
        assert fastflow._bridge.installed(), "import fastflow after mlflow: no bridge"
        import mlflow.tracking.fluent as fluent
        assert type(fluent._active_run_stack).__name__ == "SharedRunStacks"
        print("ok")
        """
    )
    first = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0 and first.stdout.strip() == "ok", first.stderr[-3000:]
    code = textwrap.dedent(
        """
        import sys
        import fastflow
        assert "mlflow" not in sys.modules
        import mlflow
        assert fastflow._bridge.installed(), "import mlflow after fastflow: no bridge"
        print("ok")
        """
    )
    second = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0 and second.stdout.strip() == "ok", second.stderr[-3000:]

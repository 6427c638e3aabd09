from typing import Any, Literal, Optional, overload

__version__: str
ALEMBIC_HEAD: str

_Tags = list[tuple[str, str]]
_ExperimentRow = tuple[str, str, str, str, Optional[int], Optional[int], _Tags]
_RunInfoRow = tuple[str, str, str, str, str, Optional[int], Optional[int], str, str]
# key, value, timestamp, step (a step or timestamp MLflow stored as a float reads as one)
_MetricRow = tuple[str, float, int | float, int | float]
_RunTags = list[tuple[str, Optional[str]]]
_RunRow = tuple[_RunInfoRow, list[_MetricRow], _Tags, _RunTags]
# name, digest, source_type, source, schema, profile
_DatasetRow = tuple[str, str, str, str, Optional[str], Optional[str]]
# (dataset, input tags) per dataset input; model input ids; (model id, step) per output
_RunIoRow = tuple[list[tuple[_DatasetRow, _Tags]], list[str], list[tuple[str, int]]]
_RunWithIoRow = tuple[_RunInfoRow, list[_MetricRow], _Tags, _RunTags, _RunIoRow]

class Tracker:
    """One SQLite tracking store and its background writer."""

    uri: str
    path: str
    def __init__(self, uri: str, artifact_root: str) -> None: ...
    def create_experiment(
        self, name: str, artifact_location: Optional[str] = None, tags: _Tags = ...
    ) -> str: ...
    def get_experiment(self, experiment_id: str) -> _ExperimentRow: ...
    def get_experiment_by_name(self, name: str) -> Optional[_ExperimentRow]: ...
    def delete_experiment(self, experiment_id: str) -> None: ...
    def restore_experiment(self, experiment_id: str) -> None: ...
    def set_experiment_tags(self, experiment_id: str, tags: _Tags) -> None: ...
    def create_run(
        self, experiment_id: str, user_id: str, start_time: int, run_name: str, tags: _Tags
    ) -> _RunRow: ...
    @overload
    def get_run(self, run_id: str, with_io: Literal[False] = False) -> _RunRow: ...
    @overload
    def get_run(self, run_id: str, with_io: Literal[True]) -> _RunWithIoRow: ...
    def update_run(
        self,
        run_id: str,
        status: Optional[str] = None,
        end_time: Optional[int] = None,
        run_name: Optional[str] = None,
    ) -> _RunInfoRow: ...
    def delete_run(self, run_id: str) -> None: ...
    def restore_run(self, run_id: str) -> None: ...
    def log_param(self, run_id: Any, key: Any, value: str) -> None: ...
    def set_tag(self, run_id: Any, key: Any, value: str) -> None: ...
    def set_tags(self, run_id: str, tags: _Tags) -> None: ...
    def delete_tag(self, run_id: str, key: str) -> None: ...
    def log_batch(
        self,
        run_id: Any,
        metrics: list[tuple[Any, Any, Any, Any]],
        params: list[tuple[Any, str]],
        tags: list[tuple[Any, Any]],
        synchronous: Optional[bool] = None,
    ) -> None: ...
    def log_metric(
        self,
        run_id: Any,
        key: Any,
        value: Any,
        timestamp: Optional[int] = None,
        step: Optional[int] = None,
        synchronous: Optional[bool] = None,
    ) -> None: ...
    def get_metric_history(self, run_id: str, key: str) -> list[_MetricRow]: ...
    def get_metric_columns(self, run_id: str, key: str) -> tuple[bytes, bytes, bytes, bool]: ...
    def get_metric_history_sampled(
        self,
        run_id: str,
        key: str,
        max_points: int,
        first_step: int | None = None,
        last_step: int | None = None,
    ) -> list[_MetricRow]: ...
    def log_packed(self, run_ids: list[str], keys: list[str], records: bytes) -> None: ...
    def search_runs(
        self,
        experiment_ids: list[str],
        filter: str,
        view_type: int,
        order_by: list[str],
        offset: int,
        limit: Optional[int],
        as_columns: bool = False,
        packed_texts: bool = False,
    ) -> Any: ...
    def search_experiments(
        self, filter: str, view_type: int, order_by: list[str], offset: int, limit: int
    ) -> list[_ExperimentRow]: ...
    def sync(self) -> tuple[int, int, int, int]: ...
    def replayed_points(self) -> int: ...
    def flush(self) -> None: ...
    def make_visible(self) -> None: ...

class Outbox:
    """Metric records for a store another process holds, drained in packets."""

    def __init__(self) -> None: ...
    def register_run(self, run_id: str, active: bool = True) -> None: ...
    def is_registered(self, run_id: str) -> bool: ...
    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: Optional[int] = None,
        step: Optional[int] = None,
    ) -> None: ...
    def log_metrics(
        self, run_id: str, metrics: list[tuple[Any, Any, Any, Any]], check_only: bool = False
    ) -> None: ...
    def flush(self) -> None: ...
    def next_packet(self, idle_seconds: float) -> Optional[Packet]: ...

class Packet:
    run_ids: list[str]
    keys: list[str]
    records: bytes
    durable: bool
    def __len__(self) -> int: ...
    def settle(self, error: Optional[tuple[str, str]] = None) -> None: ...

class SystemMetricsSampler:
    def __init__(
        self,
        tracker: Any,
        run_id: str,
        interval: float,
        samples_before_logging: int,
        prefix: str,
        first_step: int,
    ) -> None: ...
    def stop(self) -> None: ...

def log_metric(
    key: str,
    value: float,
    step: Optional[int] = None,
    synchronous: Optional[bool] = None,
    timestamp: Optional[int] = None,
    run_id: Optional[str] = None,
    model_id: Optional[str] = None,
    dataset: Any = None,
) -> Any: ...
def log_metrics(
    metrics: dict[str, float],
    step: Optional[int] = None,
    synchronous: Optional[bool] = None,
    run_id: Optional[str] = None,
    timestamp: Optional[int] = None,
    model_id: Optional[str] = None,
    dataset: Any = None,
) -> Any: ...
def _set_thread_run(
    tracker: Optional[Any], run_id: Optional[str], model_steps: list[int] = ...
) -> None: ...
def _validate_batch_limits(metrics: int, params: int, tags: int) -> None: ...

# (verdict: "shared" | "separate" | "no-python-sqlite", (fastflow's library file, version),
#  (Python's sqlite3 library file, version) or None, safe mode on), checked at first store open.
def _sqlite_library() -> tuple[str, tuple[str, str], Optional[tuple[str, str]], bool]: ...
def _spool_survey(uri: str) -> list[tuple[str, bool, int, int, list[str], int]]: ...
def _after_fork_in_child() -> None: ...
def _before_fork() -> None: ...
def _after_fork_in_parent() -> None: ...
def _set_exit_deadline(seconds: float) -> None: ...
def _shutdown() -> list[str]: ...
def _flush_all() -> None: ...
def _make_visible_all() -> None: ...

# Artifacts: `artifact_uri` is a path, a file:// URI, an mlflow-artifacts: URI (resolved
# against `tracking_uri`) or a tracking server's artifact proxy URL.
_FileInfoRow = tuple[str, bool, Optional[int]]

def _log_artifact(
    artifact_uri: str,
    local_path: str,
    artifact_path: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> None: ...
def _log_artifacts(
    artifact_uri: str,
    local_dir: str,
    artifact_path: Optional[str] = None,
    tracking_uri: Optional[str] = None,
) -> None: ...
def _list_artifacts(
    artifact_uri: str, path: Optional[str] = None, tracking_uri: Optional[str] = None
) -> list[_FileInfoRow]: ...
def _download_artifacts(
    artifact_uri: str, path: Optional[str], dst_path: str, tracking_uri: Optional[str] = None
) -> str: ...
def _local_artifact_path(
    artifact_uri: str, path: str, tracking_uri: Optional[str] = None
) -> Optional[str]: ...
def _register_workspace(
    uri: str,
    host: str,
    *,
    token: Optional[str] = None,
    username: Optional[str] = None,
    password: Optional[str] = None,
    insecure: bool = False,
) -> None: ...

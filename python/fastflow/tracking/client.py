"""``MlflowClient``: explicit, run-id based access to a tracking store."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import posixpath
import tempfile
import time

from fastflow import _context, _fastflow, _search
from fastflow.entities import Experiment, FileInfo, Metric, Run, RunInfo, RunStatus, ViewType
from fastflow.exceptions import INVALID_PARAMETER_VALUE, MlflowException

# MLflow adds this explanation to every invalid-parameter error of `log_param`.
_PARAM_VALIDATION_MSG = """

The cause of this error is typically due to repeated calls
to an individual run_id event logging.

Incorrect Example:
---------------------------------------
with mlflow.start_run():
    mlflow.log_param("depth", 3)
    mlflow.log_param("depth", 5)
---------------------------------------

Which will throw an MlflowException for overwriting a
logged parameter.

Correct Example:
---------------------------------------
with mlflow.start_run():
    with mlflow.start_run(nested=True):
        mlflow.log_param("depth", 3)
    with mlflow.start_run(nested=True):
        mlflow.log_param("depth", 5)
---------------------------------------

Which will create a new nested run for each individual
model and prevent parameter key collisions within the
tracking store."""


def _now_ms() -> int:
    return int(time.time() * 1000)


# (tracking URI, run id) -> the run's artifact URI.
_ARTIFACT_URIS: dict = {}


def _resolve_artifact_location(location):
    if location and "://" not in location and ":" not in location.split("/")[0]:
        return os.path.abspath(location)
    return location


class MlflowClient:
    """A client of the tracking store at ``tracking_uri`` (default: the current URI)."""

    def __init__(self, tracking_uri=None, registry_uri=None):
        self._tracking_uri = tracking_uri or _context.get_tracking_uri()
        self._tracker = _context.tracker(self._tracking_uri)

    @property
    def tracking_uri(self):
        return self._tracking_uri

    # ---- experiments -----------------------------------------------------------------------

    def create_experiment(self, name, artifact_location=None, tags=None) -> str:
        if not isinstance(name, str) or name == "":
            if name is None or name == "":
                message = f"Invalid experiment name: '{name}'"
            else:
                message = f"Invalid experiment name: {name}. Expects a string."
            raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)
        return self._tracker.create_experiment(
            name,
            _resolve_artifact_location(artifact_location),
            [(k, str(v)) for k, v in (tags or {}).items()],
        )

    def get_experiment(self, experiment_id) -> Experiment:
        return Experiment._from_row(self._tracker.get_experiment(str(experiment_id)))

    def get_experiment_by_name(self, name):
        if name is None:
            return None
        row = self._tracker.get_experiment_by_name(name)
        return Experiment._from_row(row) if row is not None else None

    def delete_experiment(self, experiment_id) -> None:
        self._tracker.delete_experiment(str(experiment_id))

    def restore_experiment(self, experiment_id) -> None:
        self._tracker.restore_experiment(str(experiment_id))

    def set_experiment_tag(self, experiment_id, key, value) -> None:
        self._tracker.set_experiment_tags(str(experiment_id), [(key, str(value))])

    # ---- runs ------------------------------------------------------------------------------

    def create_run(self, experiment_id, start_time=None, tags=None, run_name=None) -> Run:
        tags = {k: str(v) for k, v in (tags or {}).items()}
        tagged_name = tags.get("mlflow.runName")
        if run_name and tagged_name and run_name != tagged_name:
            raise MlflowException(
                "Both 'run_name' argument and 'mlflow.runName' tag are specified, but with "
                f"different values (run_name='{run_name}', mlflow.runName='{tagged_name}').",
                error_code=INVALID_PARAMETER_VALUE,
            )
        name = run_name or tagged_name or _context.random_run_name()
        row = self._tracker.create_run(
            str(experiment_id),
            tags.get("mlflow.user", "unknown"),
            start_time or _now_ms(),
            name,
            list(tags.items()),
        )
        return Run._from_row(row)

    def get_run(self, run_id) -> Run:
        return Run._from_row(self._tracker.get_run(run_id))

    def get_parent_run(self, run_id):
        parent_id = self.get_run(run_id).data.tags.get("mlflow.parentRunId")
        return self.get_run(parent_id) if parent_id else None

    def set_terminated(self, run_id, status=None, end_time=None) -> None:
        """Ends a run once everything logged to its store is written."""
        status = status or "FINISHED"
        RunStatus.from_string(status)
        try:
            self._tracker.flush()
        finally:
            self._tracker.update_run(run_id, status, end_time or _now_ms(), None)

    def update_run(self, run_id, status=None, name=None) -> None:
        if status is None and name is None:
            return
        run = self.get_run(run_id)
        status = status or run.info.status
        RunStatus.from_string(status)
        self._tracker.update_run(run_id, status, run.info.end_time, name)

    def delete_run(self, run_id) -> None:
        self._tracker.delete_run(run_id)

    def restore_run(self, run_id) -> None:
        self._tracker.restore_run(run_id)

    # ---- logging ---------------------------------------------------------------------------

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
        self._tracker.log_metric(run_id, key, value, timestamp, step, synchronous)
        return self._operations(synchronous)

    def log_param(self, run_id, key, value, synchronous=None):
        try:
            self._tracker.log_param(run_id, key, str(value))
        except MlflowException as e:
            if e.error_code != INVALID_PARAMETER_VALUE:
                raise
            raise MlflowException(
                e.message + _PARAM_VALIDATION_MSG, error_code=INVALID_PARAMETER_VALUE
            ) from None
        return value if synchronous is not False else self._operations(synchronous)

    def set_tag(self, run_id, key, value, synchronous=None):
        self._tracker.set_tags(run_id, [(key, str(value))])
        return self._operations(synchronous)

    def delete_tag(self, run_id, key) -> None:
        self._tracker.delete_tag(run_id, key)

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        """Logs metrics, params and tags of one run. Params and tags are written before this
        returns (a changed param raises here); metrics go through the background writer."""
        if not (metrics or params or tags):
            return None
        self._tracker.log_batch(
            run_id,
            [(m.key, m.value, m.timestamp, m.step) for m in metrics],
            [(p.key, str(p.value)) for p in params],
            [(t.key, str(t.value)) for t in tags],
            synchronous,
        )
        return self._operations(synchronous)

    def search_experiments(
        self,
        view_type=ViewType.ACTIVE_ONLY,
        max_results=_search.SEARCH_MAX_RESULTS_DEFAULT,
        filter_string=None,
        order_by=None,
        page_token=None,
    ):
        """Experiments matching ``filter_string``, one page of them (``.token`` for the next)."""
        _search.check_max_results(max_results)
        offset = _search.offset_from_token(page_token)
        rows = self._tracker.search_experiments(
            filter_string or "", int(view_type), list(order_by or []), offset, max_results + 1
        )
        token = _search.token_for(offset + max_results) if len(rows) > max_results else None
        return _search.PagedList([Experiment._from_row(r) for r in rows[:max_results]], token)

    def search_runs(
        self,
        experiment_ids,
        filter_string="",
        run_view_type=ViewType.ACTIVE_ONLY,
        max_results=_search.SEARCH_MAX_RESULTS_DEFAULT,
        order_by=None,
        page_token=None,
    ):
        """Runs of ``experiment_ids`` matching ``filter_string``, one page (``.token``: next)."""
        if isinstance(experiment_ids, (int, str)):
            experiment_ids = [experiment_ids]
        _search.check_max_results(max_results)
        offset = _search.offset_from_token(page_token)
        rows = self._tracker.search_runs(
            [str(e) for e in experiment_ids],
            filter_string or "",
            int(run_view_type),
            list(order_by or []),
            offset,
            max_results + 1,
        )
        token = _search.token_for(offset + max_results) if len(rows) > max_results else None
        return _search.PagedList([Run._from_row(r) for r in rows[:max_results]], token)

    def get_metric_history(self, run_id, key):
        """Every point of ``key`` in ``run_id``, ordered by timestamp, step and value."""
        # A long history makes millions of objects that hold no cycles: pausing the cycle
        # collector while they are made halves the time.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return [
                Metric(k, v, ts, step)
                for k, v, ts, step in self._tracker.get_metric_history(run_id, key)
            ]
        finally:
            if was_enabled:
                gc.enable()

    def flush(self) -> None:
        self._tracker.flush()

    # ---- artifacts -------------------------------------------------------------------------

    def _artifact_uri(self, run_id) -> str:
        # A run's artifact URI never changes: one lookup per run, as MLflow caches its
        # artifact repositories, keeps a round trip to a server off every artifact call.
        key = (self._tracking_uri, run_id)
        uri = _ARTIFACT_URIS.get(key)
        if uri is None:
            uri = self.get_run(run_id).info.artifact_uri
            if len(_ARTIFACT_URIS) >= 1024:
                _ARTIFACT_URIS.clear()
            _ARTIFACT_URIS[key] = uri
        return uri

    def log_artifact(self, run_id, local_path, artifact_path=None) -> None:
        """Copies a file into the run's artifacts (streamed, without the GIL)."""
        _fastflow._log_artifact(
            self._artifact_uri(run_id), os.fspath(local_path), artifact_path, self._tracking_uri
        )

    def log_artifacts(self, run_id, local_dir, artifact_path=None) -> None:
        """Copies a directory's contents into the run's artifacts."""
        _fastflow._log_artifacts(
            self._artifact_uri(run_id), os.fspath(local_dir), artifact_path, self._tracking_uri
        )

    @contextlib.contextmanager
    def _artifact_file(self, run_id, artifact_file):
        """A temporary file named like ``artifact_file``, logged where it says when done."""
        norm = posixpath.normpath(artifact_file)
        directory = posixpath.dirname(norm) or None
        _fastflow._check_artifact_path(directory)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, posixpath.basename(norm))
            yield path
            self.log_artifact(run_id, path, directory)

    def log_text(self, run_id, text, artifact_file) -> None:
        with self._artifact_file(run_id, artifact_file) as path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)

    def log_dict(self, run_id, dictionary, artifact_file) -> None:
        """JSON, or YAML for ``.yml``/``.yaml`` files, written as MLflow writes them."""
        extension = os.path.splitext(artifact_file)[1]
        with self._artifact_file(run_id, artifact_file) as path:
            with open(path, "w") as f:
                if extension in (".yml", ".yaml"):
                    import yaml

                    yaml.dump(dictionary, f, indent=2, default_flow_style=False)
                else:
                    json.dump(dictionary, f, indent=2, default=str)

    def list_artifacts(self, run_id, path=None):
        return [
            FileInfo(p, is_dir, size)
            for p, is_dir, size in _fastflow._list_artifacts(
                self._artifact_uri(run_id), path, self._tracking_uri
            )
        ]

    def download_artifacts(self, run_id, path, dst_path=None) -> str:
        dst_path = os.path.abspath(dst_path) if dst_path else tempfile.mkdtemp()
        return _fastflow._download_artifacts(
            self._artifact_uri(run_id), path or None, dst_path, self._tracking_uri
        )

    def _operations(self, synchronous):
        if synchronous is False:
            from fastflow.fluent import RunOperations

            return RunOperations()
        return None


__all__ = ["MlflowClient", "RunInfo", "ViewType"]

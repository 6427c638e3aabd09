"""``MlflowClient``: explicit, run-id based access to a tracking store."""

from __future__ import annotations

import contextlib
import gc
import json
import os
import posixpath
import re
import shutil
import sys
import tempfile
import time

from fastflow import (
    _context,
    _fastflow,
    _integrations,
    _logs,
    _media,
    _repositories,
    _search,
    _values,
    artifacts,
)
from fastflow.entities import Experiment, Metric, Run, RunInfo, RunStatus, ViewType
from fastflow.entities.metric_history import MetricHistory
from fastflow.exceptions import (
    INVALID_PARAMETER_VALUE,
    RESOURCE_DOES_NOT_EXIST,
    MlflowException,
)

_LOGGED_IMAGES_TAG = "mlflow.loggedImages"
_LOGGED_ARTIFACTS_TAG = "mlflow.loggedArtifacts"
_IMAGE_KEY = re.compile(r"^[a-zA-Z0-9_\-./ ]+$")
# Characters that would break the LIKE filter ``load_table`` finds a table's runs with.
_TABLE_FILE_FORBIDDEN = ('"', "'", ",", ":", "[", "]", "{", "}")
_PLOTLY_IMAGE_EXTENSIONS = (".png", ".jpeg", ".webp", ".svg", ".pdf")

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


_MAX_METRICS, _MAX_PARAMS_TAGS, _MAX_ENTITIES = 1000, 100, 1000


def _metric_value(value):
    return value if type(value) is float else _values.metric_value(value)


def _chunks(items, size):
    return [items[i : i + size] for i in range(0, len(items), size)]


def log_batch(tracker, run_id, metrics=(), params=(), tags=(), synchronous=None) -> bool:
    """MLflow's client ``log_batch`` onto ``tracker``; False when there was nothing to log.

    As MLflow's client: param values become strings, every metric value is converted
    before anything is sent, then the batch goes in requests within the store's limits, in
    MLflow's order: each request takes up to 100 params and 100 tags, and metrics fill it
    up to 1,000 entities; metrics left over follow 1,000 a request. A request that fails
    leaves the ones before it logged."""
    params = [(p.key, str(p.value)) for p in params]
    if len(metrics) == 0 and len(params) == 0 and len(tags) == 0:
        return False
    rows = [(m.key, _metric_value(m.value), m.timestamp, m.step) for m in metrics]
    tags = [(t.key, t.value) for t in tags]
    param_chunks = _chunks(params, _MAX_PARAMS_TAGS)
    tag_chunks = _chunks(tags, _MAX_PARAMS_TAGS)
    for index in range(max(len(param_chunks), len(tag_chunks))):
        chunk_params = param_chunks[index] if index < len(param_chunks) else []
        chunk_tags = tag_chunks[index] if index < len(tag_chunks) else []
        room = max(min(_MAX_ENTITIES - len(chunk_params) - len(chunk_tags), _MAX_METRICS), 0)
        chunk_metrics, rows = rows[:room], rows[room:]
        tracker.log_batch(run_id, chunk_metrics, chunk_params, chunk_tags, synchronous)
    for chunk in _chunks(rows, _MAX_METRICS):
        tracker.log_batch(run_id, chunk, [], [], synchronous)
    return True


def _experiment_id(experiment_id) -> str:
    """The experiment MLflow's store looks up: the default one for a missing id, else the
    id as Python's ``int()`` reads it."""
    experiment_id = experiment_id or "0"
    try:
        return str(int(experiment_id))
    except (ValueError, TypeError):
        raise MlflowException(
            f"Invalid experiment ID '{experiment_id}'. Experiment ID must be a valid integer.",
            error_code=INVALID_PARAMETER_VALUE,
        ) from None


# (tracking URI, run id) -> the run's artifact URI.
_ARTIFACT_URIS: dict = {}


def _resolve_artifact_location(location):
    if location and "://" not in location and ":" not in location.split("/")[0]:
        return os.path.abspath(location)
    return location


def _figure_saver(figure, artifact_file, save_kwargs):
    """A function writing ``figure`` to a path, chosen before any file is made."""
    # Checking a library's type only once it is loaded lets plotly figures be logged where
    # matplotlib is not installed, and the other way round.
    if "matplotlib" in sys.modules:
        import matplotlib.figure

        if isinstance(figure, matplotlib.figure.Figure):
            return lambda path: figure.savefig(path, **save_kwargs)
    if "plotly" in sys.modules:
        import plotly.graph_objects

        if isinstance(figure, plotly.graph_objects.Figure):
            extension = os.path.splitext(artifact_file)[1]
            if extension == ".html":
                # A page that loads plotly.js from its CDN stays small.
                html_kwargs = {"include_plotlyjs": "cdn", "auto_open": False, **save_kwargs}
                return lambda path: figure.write_html(path, **html_kwargs)
            if extension in _PLOTLY_IMAGE_EXTENSIONS:
                return lambda path: figure.write_image(path, **save_kwargs)
            raise TypeError(f"Unsupported file extension for plotly figure: '{extension}'")
    raise TypeError(f"Unsupported figure object type: '{type(figure)}'")


def _check_table_file_name(artifact_file):
    for char in _TABLE_FILE_FORBIDDEN:
        if char in artifact_file:
            raise ValueError(f"The artifact_file contains forbidden character: {char}")


def _read_table(path):
    import pandas as pd

    if path.endswith(".json"):
        return pd.read_json(path, orient="split")
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    raise ValueError(f"Unsupported file type in {path}. Expected .json or .parquet")


def _write_table(data, path):
    if path.endswith(".json"):
        data.to_json(path, orient="split", index=False, date_format="iso")
    else:
        data.to_parquet(path, index=False)


def _unique() -> str:
    # uuid loads platform (2 ms): only calls that log images pay for it, not the import.
    import uuid

    return str(uuid.uuid4())


def _artifact_dir(artifact_file):
    return posixpath.dirname(posixpath.normpath(artifact_file)) or None


class MlflowClient:
    """A client of the tracking store at ``tracking_uri`` (default: the current URI)."""

    def __init__(self, tracking_uri=None, registry_uri=None):
        self._tracking_uri = tracking_uri or _context.get_tracking_uri()
        self._registry_uri = registry_uri
        self._tracker = _context.tracker(self._tracking_uri)

    @property
    def tracking_uri(self):
        return self._tracking_uri

    def __getattr__(self, name):
        # The registry, logged models, datasets, traces: MLflow's own client on this URI.
        if name.startswith("_"):
            raise AttributeError(name)
        found = _integrations.ask(
            _integrations.MLFLOW_CLIENT, self._tracking_uri, self._registry_uri, name
        )
        if found is None:
            raise AttributeError(f"'MlflowClient' object has no attribute {name!r}")
        return found[0]

    # ---- experiments -----------------------------------------------------------------------

    def create_experiment(self, name, artifact_location=None, tags=None) -> str:
        if artifact_location is not None and artifact_location.startswith("runs:"):
            raise MlflowException(
                f"Artifact location cannot be a runs:/ URI. Given: '{artifact_location}'",
                error_code=INVALID_PARAMETER_VALUE,
            )
        if not isinstance(name, str) or name == "":
            if name is None or name == "":
                message = f"Invalid experiment name: '{name}'"
            else:
                message = f"Invalid experiment name: {name}. Expects a string."
            raise MlflowException(message, error_code=INVALID_PARAMETER_VALUE)
        return self._tracker.create_experiment(
            name,
            # An empty location is no location: the store picks the default, as MLflow's.
            _resolve_artifact_location(artifact_location or None),
            list((tags or {}).items()),
        )

    def get_experiment(self, experiment_id) -> Experiment:
        return Experiment._from_row(self._tracker.get_experiment(_experiment_id(experiment_id)))

    def get_experiment_by_name(self, name):
        if not isinstance(name, str):
            # MLflow's query matches no name to None, a number or bytes.
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
        given = dict(tags or {})
        tags = {k: str(v) for k, v in given.items()}
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
        created = Run._from_row(row)
        # MLflow's store returns the run it just created with the tag values it was given
        # (an int stays an int); the store holds their text, as MLflow's does.
        for key, value in given.items():
            if created.data.tags.get(key) == str(value):
                created.data.tags[key] = value
        # MLflow's store gives a run it just created no outputs.
        return Run(created.info, created.data, created.inputs)

    def get_run(self, run_id) -> Run:
        _fastflow._check_run_id(run_id)
        return Run._from_row(self._tracker.get_run(run_id, True))

    def get_parent_run(self, run_id):
        parent_id = self.get_run(run_id).data.tags.get("mlflow.parentRunId")
        return self.get_run(parent_id) if parent_id else None

    def set_terminated(self, run_id, status=None, end_time=None) -> None:
        """Ends a run once everything logged to its store is written."""
        status = status or "FINISHED"
        RunStatus.from_string(status)
        end_time = end_time or _now_ms()
        try:
            self._tracker.flush()
        except Exception:
            # The run ends even when its points could not all be written.
            self._tracker.update_run(run_id, status, end_time, None)
            raise
        # Ctrl-C stops the wait without a second one behind it; a later sync ends the run.
        self._tracker.update_run(run_id, status, end_time, None)

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
        self._tracker.set_tag(run_id, key, str(value))
        return self._operations(synchronous)

    def delete_tag(self, run_id, key) -> None:
        self._tracker.delete_tag(run_id, key)

    def log_batch(self, run_id, metrics=(), params=(), tags=(), synchronous=None):
        """Logs metrics, params and tags of one run, in requests of MLflow's sizes. Params
        and tags are written before this returns (a changed param raises here); metrics go
        through the background writer."""
        if not log_batch(self._tracker, run_id, metrics, params, tags, synchronous):
            return None
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

    def get_metric_history(self, run_id, key, output_format="list"):
        """Every point of ``key`` in ``run_id``, ordered by timestamp, step and value: a
        sequence of ``Metric`` with every list operation (MLflow returns a list), whose
        points become objects only when touched; or columns without an object per point:
        ``output_format="numpy"`` gives ``{"timestamp", "step", "value"}`` arrays, ``"pandas"``
        a DataFrame of those columns."""
        if output_format == "numpy":
            return self._metric_columns(run_id, key)
        if output_format == "pandas":
            import pandas as pd

            return pd.DataFrame(self._metric_columns(run_id, key))
        if output_format != "list":
            raise MlflowException(
                f"Unsupported output format: {output_format!r}; use 'list', 'numpy' or 'pandas'.",
                error_code=INVALID_PARAMETER_VALUE,
            )
        timestamps, steps, values, whole = self._tracker.get_metric_columns(run_id, key)
        if whole:
            return MetricHistory(
                key,
                memoryview(timestamps).cast("q"),
                memoryview(steps).cast("q"),
                memoryview(values).cast("d"),
            )
        # Steps or timestamps stored as reals (MLflow keeps a float step as given): each
        # point keeps its own number type, as MLflow's list does.
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

    def _metric_columns(self, run_id, key):
        import numpy as np

        _fastflow._check_run_id(run_id)
        timestamps, steps, values, whole = self._tracker.get_metric_columns(run_id, key)
        kind = "<i8" if whole else "<f8"
        return {
            "timestamp": np.frombuffer(timestamps, dtype=kind),
            "step": np.frombuffer(steps, dtype=kind),
            "value": np.frombuffer(values, dtype="<f8"),
        }

    def get_metric_history_sampled(
        self, run_id, key, max_points=320, start_step=None, end_step=None
    ) -> list[Metric]:
        """At most ``max_points`` points of ``key``, in step order, that keep the shape of
        the curve for a plot: consecutive buckets each keep their first, last, lowest and
        highest point and their first NaN, so the series' minimum and maximum are always
        there. Steps outside ``[start_step, end_step]`` are left out."""
        _fastflow._check_run_id(run_id)
        if not isinstance(max_points, int) or isinstance(max_points, bool) or max_points < 1:
            raise MlflowException(
                f"Invalid value {max_points!r} for parameter 'max_points': it must be a "
                "positive integer.",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return [
            Metric(k, v, ts, step)
            for k, v, ts, step in self._tracker.get_metric_history_sampled(
                run_id, key, max_points, start_step, end_step
            )
        ]

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
        """Copies a file into the run's artifacts (streamed, without the GIL); a directory
        goes in whole, under its own name."""
        uri = self._artifact_uri(run_id)
        if os.path.isdir(local_path):
            name = os.path.basename(os.path.normpath(local_path))
            below = name if artifact_path is None else os.path.join(artifact_path, name)
            _repositories.log_dir(uri, os.fspath(local_path), below, self._tracking_uri)
            return
        _repositories.log_file(uri, os.fspath(local_path), artifact_path, self._tracking_uri)

    def log_artifacts(self, run_id, local_dir, artifact_path=None) -> None:
        """Copies a directory's contents into the run's artifacts."""
        _repositories.log_dir(
            self._artifact_uri(run_id), os.fspath(local_dir), artifact_path, self._tracking_uri
        )

    @contextlib.contextmanager
    def _artifact_file(self, run_id, artifact_file):
        """A temporary file named like ``artifact_file``, logged where it says when done."""
        directory = _artifact_dir(artifact_file)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, posixpath.basename(posixpath.normpath(artifact_file)))
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

    def log_stream(self, run_id, stream, artifact_file) -> None:
        """What a binary file-like object (``io.BytesIO``, an open file) reads to its end."""
        with self._artifact_file(run_id, artifact_file) as path:
            with open(path, "wb") as f:
                shutil.copyfileobj(stream, f)

    def log_figure(self, run_id, figure, artifact_file, *, save_kwargs=None) -> None:
        """A matplotlib figure (in any format ``savefig`` knows from the extension) or a
        plotly one (``.html``, or ``.png``/``.jpeg``/``.webp``/``.svg``/``.pdf`` through
        ``write_image``, which needs kaleido)."""
        save = _figure_saver(figure, artifact_file, dict(save_kwargs or {}))
        with self._artifact_file(run_id, artifact_file) as path:
            save(path)

    def log_image(
        self,
        run_id,
        image,
        artifact_file=None,
        key=None,
        step=None,
        timestamp=None,
        synchronous=None,
    ) -> None:
        """A numpy array, PIL image or ``Image`` saved as ``artifact_file``, or as the point
        ``step`` of the image series ``key``: a PNG and a small WebP preview under ``images/``,
        the files MLflow's UI shows as an image chart. Files are written before this returns,
        whatever ``synchronous`` says."""
        if artifact_file is not None and any(a is not None for a in (key, step, timestamp)):
            raise TypeError(
                "The `artifact_file` parameter cannot be used in conjunction with `key`, "
                "`step`, or `timestamp` parameters. Please ensure that `artifact_file` is "
                "specified alone, without any of these conflicting parameters."
            )
        if artifact_file is None and key is None:
            raise TypeError(
                "Invalid arguments: Please specify exactly one of `artifact_file` or `key`. Use "
                "`key` to log dynamic image charts or `artifact_file` for saving static images. "
            )
        image = _media.to_pil(image)
        if artifact_file is not None:
            with self._artifact_file(run_id, artifact_file) as path:
                image.save(path)
            return
        if not _IMAGE_KEY.match(key):
            raise ValueError(
                "The `key` parameter may only contain alphanumerics, underscores (_), "
                "dashes (-), periods (.), spaces ( ), and slashes (/)."
                f"The provided key `{key}` contains invalid characters."
            )
        # MLflow's UI finds a series' files by this name; a slash would make a subdirectory.
        stem = (
            f"images/{key.replace('/', '~')}+step+{step or 0}"
            f"+timestamp+{timestamp or _now_ms()}+{_unique()}"
        )
        preview = _media.preview(image)
        with self._artifact_file(run_id, stem + ".png") as path:
            image.save(path)
        with self._artifact_file(run_id, stem + "+compressed.webp") as path:
            preview.save(path)
        self.set_tag(run_id, _LOGGED_IMAGES_TAG, True)

    def log_table(self, run_id, data, artifact_file) -> None:
        """A DataFrame or dict of columns as a table: ``.json`` (pandas' split orient) or
        ``.parquet``. Rows are appended to the table already logged there. Columns of images
        are stored as PNG and WebP files under ``table_images/`` and referenced from the
        table, as MLflow's UI expects."""
        import pandas as pd

        _check_table_file_name(artifact_file)
        if not artifact_file.endswith((".json", ".parquet")):
            raise ValueError(
                f"Invalid artifact file path '{artifact_file}'. Please ensure the file you are "
                "trying to log as a table has a file name with either '.json' "
                "or '.parquet' extension."
            )
        if not isinstance(data, (pd.DataFrame, dict)):
            raise MlflowException.invalid_parameter_value(
                "data must be a pandas.DataFrame or a dictionary"
            )
        if isinstance(data, dict):
            try:
                data = pd.DataFrame(data)
            except ValueError:
                # Only scalars, e.g. {"question": "What is it?"}: one row.
                data = pd.DataFrame([data])
        data = self._store_table_images(run_id, data, artifact_file)
        logged = [f.path for f in self.list_artifacts(run_id, _artifact_dir(artifact_file))]
        if artifact_file in logged:
            with tempfile.TemporaryDirectory() as tmp:
                earlier = _read_table(self.download_artifacts(run_id, artifact_file, tmp))
            data = pd.concat([earlier, data], ignore_index=True)
        with self._artifact_file(run_id, artifact_file) as path:
            try:
                _write_table(data, path)
            except Exception as e:
                raise MlflowException(
                    f"Failed to save {data} as table as the data is not JSON serializable. "
                    f"Error: {e}"
                ) from e
        tables = json.loads(self.get_run(run_id).data.tags.get(_LOGGED_ARTIFACTS_TAG, "[]"))
        entry = {"path": artifact_file, "type": "table"}
        if entry not in tables:
            tables.append(entry)
            self.set_tag(run_id, _LOGGED_ARTIFACTS_TAG, json.dumps(tables))

    def _store_table_images(self, run_id, data, artifact_file):
        """``data`` with each column of images replaced by references to their logged files
        (in place, as MLflow does)."""
        from pandas.api.types import is_object_dtype

        # Images can only be in columns of Python objects.
        if not any(is_object_dtype(dtype) for dtype in data.dtypes):
            return data
        table_name = os.path.splitext(artifact_file)[0]

        def store(image):
            stem = posixpath.join("table_images", table_name, _unique())
            with self._artifact_file(run_id, stem + ".png") as path:
                image.save(path)
            with self._artifact_file(run_id, stem + ".webp") as path:
                _media.preview(image).save(path)
            return {
                "type": "image",
                "filepath": stem + ".png",
                "compressed_filepath": stem + ".webp",
            }

        for column in data.columns:
            is_image = data[column].map(_media.looks_like_image)
            if any(is_image) and not all(is_image):
                raise ValueError(
                    f"Column `{column}` contains a mix of images and non-images. "
                    "Please ensure that all elements in the column are of the same type."
                )
            if all(is_image):
                # In the caller's DataFrame, as MLflow does: afterwards it holds the
                # references to the logged files, not the images.
                data[column] = data[column].map(store)
        return data

    def load_table(self, experiment_id, artifact_file, run_ids=None, extra_columns=None):
        """The rows of table ``artifact_file`` from every run of the experiment that logged
        it (or from those of ``run_ids``), newest run first. ``extra_columns`` names columns
        of ``search_runs``' DataFrame (``run_id``, ``tags.x``...) to add to each run's rows."""
        import pandas as pd

        _check_table_file_name(artifact_file)
        pattern = f'"path"%:%"{artifact_file}",%"type"%:%"table"'
        filter_string = f"tags.{_LOGGED_ARTIFACTS_TAG} LIKE '%{pattern}%'"
        if run_ids:
            filter_string += f" and attributes.run_id IN ({','.join(map(repr, run_ids))})"
        runs = self._search_runs_frame(experiment_id, filter_string)
        if run_ids and len(run_ids) != len(runs):
            _logs.mlflow_logger("mlflow.tracking.client").warning(
                "Not all runs have the specified table artifact. Some runs will be skipped."
            )
        if runs.empty:
            raise MlflowException(
                "No runs found with the corresponding table artifact.", RESOURCE_DOES_NOT_EXIST
            )
        return pd.concat(
            [self._load_run_table(run, artifact_file, extra_columns) for _, run in runs.iterrows()],
            ignore_index=True,
        )

    def _search_runs_frame(self, experiment_id, filter_string):
        string_dtype = _search.arrow_string_dtype()
        columns = self._tracker.search_runs(
            [str(experiment_id)],
            filter_string,
            int(ViewType.ACTIVE_ONLY),
            [],
            0,
            _search.SEARCH_MAX_RESULTS_PANDAS,
            as_columns=True,
            packed_texts=string_dtype is not None,
        )
        return _search.frame(columns, string_dtype)

    def _load_run_table(self, run, artifact_file, extra_columns):
        """One run's table; ``run`` is its row of ``search_runs``' DataFrame."""
        run_id = run["run_id"]
        files = [
            f.path
            for f in self.list_artifacts(run_id, _artifact_dir(artifact_file))
            if not f.is_dir
        ]
        if artifact_file not in files:
            raise MlflowException(
                f"Artifact {artifact_file} not found for run {run_id}.", RESOURCE_DOES_NOT_EXIST
            )
        with tempfile.TemporaryDirectory() as tmp:
            table = _read_table(self.download_artifacts(run_id, artifact_file, tmp))
        for column in extra_columns or ():
            name = column
            if column in table:
                _logs.mlflow_logger("mlflow.tracking.client").warning(
                    "Column name %s already exists in the table. Resolving the conflict, by "
                    "appending an underscore to the column name.",
                    column,
                )
                name = f"{column}_"
            table[name] = run[column]
        return table

    def list_artifacts(self, run_id, path=None):
        return artifacts._list_for(None, run_id, path, self._tracking_uri, self._artifact_uri)

    def download_artifacts(self, run_id, path, dst_path=None) -> str:
        return artifacts._download(
            None, run_id, path, dst_path, self._tracking_uri, self._artifact_uri
        )

    def _operations(self, synchronous):
        return RunOperations() if synchronous is False else None


class RunOperations:
    """What MLflow returns for ``synchronous=False``: ``wait()`` until the data is written."""

    def wait(self):
        _fastflow._flush_all()


__all__ = ["MlflowClient", "RunInfo", "RunOperations", "ViewType"]

//! `Tracker`: a handle on one store, with MLflow's store operations. Arguments become owned
//! Rust values first; the wait for the writer happens with the GIL released.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyList, PyString, PyTuple};

use super::errors::{raise_pending, to_pyerr, IntoPyResult};
use super::metrics::{self, BatchMetric, Given, Value};
use crate::backend::Backend;
use crate::entities::{self, Experiment, Metric, Number, Run, RunInfo, RunIo};
use crate::error::{Error, Result};
use crate::outbox;
use crate::process;
use crate::rest_store::RestStore;
use crate::run_columns::{PackedTexts, RunColumns, Texts};
use crate::runs::RunSlot;
use crate::search;
use crate::series;
use crate::spool::{self, RunEvent};
use crate::validation::{self, Checked, KeyKind};
use crate::writer::{Engine, MetricRecord, Msg, Options, WriterState};

type ExperimentTuple = (
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    Vec<(String, Option<String>)>,
);
type RunInfoTuple = (
    String,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<i64>,
    String,
    String,
);
type MetricTuple = (String, f64, Number, Number);
/// A history point with its key shared by every point of the history.
type HistoryPoint = (Py<PyString>, f64, Number, Number);
/// Packed timestamps, steps and values, and whether timestamps and steps are whole.
type MetricColumns = (Py<PyBytes>, Py<PyBytes>, Py<PyBytes>, bool);
type RunTuple = (
    RunInfoTuple,
    Vec<MetricTuple>,
    Vec<(String, String)>,
    Vec<(String, Option<String>)>,
);

type DatasetTuple = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<String>,
);
/// Dataset inputs as (dataset, tags), model input ids, and (model id, step) of outputs.
type RunIoTuple = (
    Vec<(DatasetTuple, Vec<(String, String)>)>,
    Vec<String>,
    Vec<(String, i64)>,
);
type RunWithIoTuple = (
    RunInfoTuple,
    Vec<MetricTuple>,
    Vec<(String, String)>,
    Vec<(String, Option<String>)>,
    RunIoTuple,
);

fn io_tuple(io: RunIo) -> RunIoTuple {
    let datasets = io
        .dataset_inputs
        .into_iter()
        .map(|input| {
            let d = input.dataset;
            (
                (
                    d.name,
                    d.digest,
                    d.source_type,
                    d.source,
                    d.schema,
                    d.profile,
                ),
                input.tags,
            )
        })
        .collect();
    (datasets, io.model_inputs, io.model_outputs)
}

fn experiment_tuple(e: Experiment) -> ExperimentTuple {
    (
        e.experiment_id,
        e.name,
        e.artifact_location,
        e.lifecycle_stage,
        e.creation_time,
        e.last_update_time,
        e.tags,
    )
}

fn info_tuple(i: RunInfo) -> RunInfoTuple {
    (
        i.run_id,
        i.experiment_id,
        i.run_name,
        i.user_id,
        i.status,
        i.start_time,
        i.end_time,
        i.artifact_uri,
        i.lifecycle_stage,
    )
}

fn run_search(
    py: Python<'_>,
    experiment_ids: Vec<String>,
    filter: String,
    view_type: i64,
    order_by: Vec<String>,
    offset: i64,
    limit: Option<i64>,
) -> PyResult<search::RunSearch> {
    let experiment_ids = experiment_ids
        .iter()
        .map(|id| validation::parse_experiment_id(id))
        .collect::<Result<Vec<i64>>>()
        .into_py(py)?;
    Ok(search::RunSearch {
        experiment_ids,
        filter,
        view_type,
        order_by,
        offset,
        limit,
    })
}

/// A text column as a list of str and None or, with `packed`, as the buffers of an Arrow
/// large-string array: (offsets, data, validity or None, number of nulls).
fn text_column<'py, 'a>(
    py: Python<'py>,
    cells: impl ExactSizeIterator<Item = Option<&'a str>>,
    packed: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if packed {
        let p = PackedTexts::pack(cells);
        let validity = p.validity.map(|bits| PyBytes::new(py, &bits));
        let buffers = (
            PyBytes::new(py, &p.offsets),
            PyBytes::new(py, &p.data),
            validity,
            p.nulls,
        );
        return Ok(buffers.into_pyobject(py)?.into_any());
    }
    let values = cells.map(|cell| match cell {
        Some(text) => PyString::new(py, text).into_any(),
        None => py.None().into_bound(py),
    });
    Ok(PyList::new(py, values)?.into_any())
}

/// A page of runs as the Python side builds MLflow's DataFrame from it: run attributes;
/// the metric keys and their values packed as little-endian f64, one column after another;
/// (key, values) per param and tag; and, for metrics, params and tags, each run that brings
/// a new key with all its keys (see `Keyed::introductions`). Text columns are given as
/// `text_column` gives them.
fn columns_object(
    py: Python<'_>,
    columns: RunColumns,
    packed: bool,
) -> PyResult<Bound<'_, PyTuple>> {
    let a = &columns.attributes;
    let texts =
        |values: &[String]| text_column(py, values.iter().map(|v| Some(v.as_str())), packed);
    let attributes = (
        texts(&a.run_ids)?,
        texts(&a.experiment_ids)?,
        texts(&a.statuses)?,
        texts(&a.artifact_uris)?,
        &a.start_times,
        &a.end_times,
    )
        .into_pyobject(py)?;
    let metrics = &columns.metrics.columns;
    let keys: Vec<&str> = metrics.iter().map(|(key, _)| key.as_str()).collect();
    let size = metrics.iter().map(|(_, values)| values.len() * 8).sum();
    let values = PyBytes::new_with(py, size, |buffer| {
        let values = metrics.iter().flat_map(|(_, values)| values);
        for (slot, value) in buffer.chunks_exact_mut(8).zip(values) {
            slot.copy_from_slice(&value.to_le_bytes());
        }
        Ok(())
    })?;
    let keyed = |texts: &Texts| -> PyResult<Bound<'_, PyList>> {
        let columns = texts.keyed.columns.iter().map(|(key, cells)| {
            let values = text_column(py, cells.iter().map(|&cell| texts.text(cell)), packed)?;
            (key.as_str(), values).into_pyobject(py)
        });
        PyList::new(py, columns.collect::<PyResult<Vec<_>>>()?)
    };
    let introductions = (
        columns.metrics.introductions(),
        columns.params.keyed.introductions(),
        columns.tags.keyed.introductions(),
    );
    (
        attributes,
        (keys, values),
        keyed(&columns.params)?,
        keyed(&columns.tags)?,
        introductions,
    )
        .into_pyobject(py)
}

fn metric_tuple(m: Metric) -> MetricTuple {
    (m.key, m.value, m.timestamp, m.step)
}

fn run_tuple(r: Run) -> RunTuple {
    (
        info_tuple(r.info),
        r.metrics.into_iter().map(metric_tuple).collect(),
        r.params,
        r.tags,
    )
}

/// Runs `job` on the store's writer and waits for its answer without the GIL, checking for
/// Ctrl-C while it waits. A write failure reported since the last call is raised first.
pub fn run_job<T, F>(py: Python<'_>, engine: &Engine, job: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut WriterState) -> Result<T> + Send + 'static,
{
    raise_pending(py, engine)?;
    submit_and_wait(py, engine, job)
}

/// Waits until everything logged to this engine is durable, or says why it is not.
pub fn flush_engine(py: Python<'_>, engine: &Engine) -> PyResult<()> {
    let mut interrupt: Option<PyErr> = None;
    let result = py.detach(|| engine.flush(&mut super::metrics::signal_check(&mut interrupt)));
    result.map_err(|error| super::metrics::raise(py, error, interrupt))
}

/// Waits until every point logged to this engine is readable by other connections to its
/// store, without waiting for the disk.
pub fn make_visible_engine(py: Python<'_>, engine: &Engine) -> PyResult<()> {
    let mut interrupt: Option<PyErr> = None;
    let result =
        py.detach(|| engine.make_visible(&mut super::metrics::signal_check(&mut interrupt)));
    result.map_err(|error| super::metrics::raise(py, error, interrupt))
}

fn submit_and_wait<T, F>(py: Python<'_>, engine: &Engine, job: F) -> PyResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut WriterState) -> Result<T> + Send + 'static,
{
    let mut interrupt: Option<PyErr> = None;
    let result = py.detach(|| {
        let mut keep_waiting = super::metrics::signal_check(&mut interrupt);
        let answer = engine.submit(job, &mut keep_waiting)?;
        Engine::wait(&answer, &mut keep_waiting)
    });
    result.map_err(|error| super::metrics::raise(py, error, interrupt))
}

fn truncate_env() -> bool {
    match std::env::var("MLFLOW_TRUNCATE_LONG_VALUES") {
        Ok(v) => !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "no" | "off"
        ),
        Err(_) => true,
    }
}

fn warn(py: Python<'_>, message: &str) -> PyResult<()> {
    py.import("logging")?
        .call_method1("getLogger", ("fastflow",))?
        .call_method1("warning", (message,))?;
    Ok(())
}

/// A param or tag key as MLflow's checks take it: None and non-str keys are refused with
/// MLflow's words (a non-str one by Python's `re`, as in MLflow), then its name rules.
fn checked_key(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    kind: KeyKind,
    path: &str,
) -> PyResult<String> {
    if key.is_none() {
        return Err(to_pyerr(py, validation::missing_key(kind, path)));
    }
    let Ok(text) = key.cast::<PyString>() else {
        return Err(metrics::not_a_string(py, key));
    };
    let text = text.to_cow()?;
    validation::validate_key_name(&text, path).into_py(py)?;
    Ok(text.into_owned())
}

/// A value within its limit, or truncated (with MLflow's warning, from MLflow's logger) or
/// refused.
fn checked_value(py: Python<'_>, checked: Result<Checked>, value: String) -> PyResult<String> {
    match checked.into_py(py)? {
        Checked::Fits => Ok(value),
        Checked::Truncated { warning, value } => {
            py.import("fastflow._values")?
                .call_method1("warn_truncated", (warning,))?;
            Ok(value)
        }
    }
}

/// MLflow's checks of a param; `path` is `params[3]` in a batch, empty for `log_param`.
fn checked_param(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    value: String,
    path: &str,
    truncate: bool,
) -> PyResult<(String, String)> {
    let key_path = if path.is_empty() {
        "key".to_string()
    } else {
        format!("{path}.key")
    };
    let key = checked_key(py, key, KeyKind::Param, &key_path)?;
    validation::validate_key_length(KeyKind::Param, &key, &key_path).into_py(py)?;
    let value = checked_value(
        py,
        validation::validate_param_value(&value, truncate),
        value,
    )?;
    Ok((key, value))
}

/// A tag value as `log_batch` may be given it: MLflow stringifies `set_tag` values, but not
/// those of a batch's `RunTag`s.
enum TagValue<'py> {
    Text(Option<String>),
    /// A sized value that is not a str (a list): its length is checked, then SQLite
    /// refuses to bind it.
    Unbindable(Bound<'py, PyAny>),
}

/// MLflow's checks of a tag; `path` is `tags[3]` in a batch, empty for `set_tag`.
fn checked_tag<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    value: &Bound<'py, PyAny>,
    path: &str,
    truncate: bool,
) -> PyResult<(String, TagValue<'py>)> {
    let at = |field: &str| {
        if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        }
    };
    let key_path = at("key");
    let key = checked_key(py, key, KeyKind::Tag, &key_path)?;
    validation::validate_key_length(KeyKind::Tag, &key, &key_path).into_py(py)?;
    if value.is_none() {
        return Ok((key, TagValue::Text(None)));
    }
    let Ok(text) = value.cast::<PyString>() else {
        // `len()` raises MLflow's TypeError for a value without a length.
        value.len()?;
        if value.is_instance_of::<PyBytes>() || value.is_instance_of::<PyByteArray>() {
            // MLflow's SQLite store keeps bytes as a BLOB, which fastflow's readers (and
            // MLflow's UI) do not take: refused rather than stored differently.
            return Err(to_pyerr(
                py,
                Error::invalid(format!(
                    "fastflow stores tag values as text; the value of tag '{key}' is bytes"
                )),
            ));
        }
        return Ok((key, TagValue::Unbindable(value.clone())));
    };
    let text = text.to_cow()?.into_owned();
    let checked = validation::validate_tag_value(&text, &at("value"), truncate);
    Ok((key, TagValue::Text(Some(checked_value(py, checked, text)?))))
}

/// MLflow's error when a batch's tags hold a value SQLite cannot bind; the tags of the
/// batch are not written (MLflow inserts them in one statement).
fn unbindable_tags(
    py: Python<'_>,
    run_id: &str,
    tags: &[(String, TagValue<'_>)],
) -> PyResult<Option<PyErr>> {
    let Some(bad_row) = tags
        .iter()
        .position(|(_, v)| matches!(v, TagValue::Unbindable(_)))
    else {
        return Ok(None);
    };
    let mut rows = Vec::with_capacity(tags.len());
    for (key, value) in tags {
        let value = match value {
            TagValue::Text(text) => text.into_pyobject(py)?.into_any(),
            TagValue::Unbindable(obj) => obj.clone(),
        };
        rows.push(PyTuple::new(
            py,
            [
                PyString::new(py, key).into_any(),
                value,
                PyString::new(py, run_id).into_any(),
            ],
        )?);
    }
    let message: String = py
        .import("fastflow._values")?
        .getattr("statement_error")?
        .call1(("tags", rows, bad_row, 2))?
        .extract()?;
    Ok(Some(to_pyerr(py, Error::BadRequest(message))))
}

/// The run id a store lookup takes: MLflow finds no run for an id that is not a str.
fn run_id_text(run_id: &Bound<'_, PyAny>) -> PyResult<std::result::Result<String, Error>> {
    match run_id.cast::<PyString>() {
        Ok(text) => Ok(Ok(text.to_cow()?.into_owned())),
        Err(_) => Ok(Err(Error::not_found(format!(
            "Run with id={} not found",
            run_id.str()?
        )))),
    }
}

/// One engine, so one connection, per database file in the process, however its URI spells
/// the path (`./a.db`, a symlinked directory): the safe mode of `sqlite_library` needs that.
fn engine_key(path: &Path) -> String {
    let resolved = std::fs::canonicalize(path).ok().or_else(|| {
        let parent = std::fs::canonicalize(path.parent()?).ok()?;
        Some(parent.join(path.file_name()?))
    });
    resolved
        .as_deref()
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[pyclass(module = "fastflow._fastflow", frozen)]
pub struct Tracker {
    #[pyo3(get)]
    uri: String,
    target: Target,
    artifact_root: String,
}

/// Where a tracker's data lives.
enum Target {
    /// The file as the URI names it, and the key its engine is found by.
    Sqlite(PathBuf, String),
    /// A tracking server's base URI (credentials stay in the environment), or a
    /// `databricks` URI whose workspace is registered.
    Server(String),
}

/// What a server's spool and messages are named after, without credentials: a workspace
/// by its host (all of a workspace's URIs share its spool), a server by its redacted URI.
fn server_name(base: &str) -> Result<String> {
    if crate::workspace::is_workspace_uri(base) {
        return crate::workspace::lookup(base).map(|w| w.host);
    }
    Ok(crate::uri::redacted(base))
}

impl Tracker {
    pub fn engine(&self, py: Python<'_>) -> PyResult<Arc<Engine>> {
        let root = self.artifact_root.clone();
        match &self.target {
            Target::Sqlite(path, key) => {
                super::sqlite_check::ensure_checked(py)?;
                let key = key.clone();
                let path = path.clone();
                let options = Options {
                    spool_dir: spool::dir_for(&key),
                    store_name: key.clone(),
                    fork_gate: true,
                };
                py.detach(move || {
                    process::current().engine(&key, options, || {
                        let store = crate::store::Store::open(&path, &root)?;
                        Ok(Box::new(store.with_background_checkpoints(&path)) as Box<dyn Backend>)
                    })
                })
            }
            Target::Server(base) => {
                let base = base.clone();
                let name = server_name(&base).into_py(py)?;
                let options = Options {
                    spool_dir: spool::dir_for(&name),
                    store_name: name,
                    fork_gate: false,
                };
                py.detach(move || {
                    process::current().engine(&base, options, || {
                        Ok(Box::new(RestStore::new(&base)?) as Box<dyn Backend>)
                    })
                })
            }
        }
        .into_py(py)
        .and_then(|engine: Arc<Engine>| {
            if let Some(message) = engine.take_spool_error() {
                warn(py, &message)?;
            }
            Ok(engine)
        })
    }

    /// The slot of `run_id`, checking the store once for runs this process has not seen.
    pub fn run_slot(
        &self,
        py: Python<'_>,
        engine: &Arc<Engine>,
        run_id: &str,
    ) -> PyResult<Arc<RunSlot>> {
        if let Some(slot) = engine.runs.get(run_id) {
            return Ok(slot);
        }
        let id = run_id.to_string();
        let stage = run_job(py, engine, move |s| s.store.run_lifecycle(&id))?;
        match stage {
            Some(stage) => Ok(engine
                .runs
                .register(run_id, stage == entities::LIFECYCLE_ACTIVE)),
            None => Err(to_pyerr(
                py,
                Error::not_found(format!("Run with id={run_id} not found")),
            )),
        }
    }
}

#[pymethods]
impl Tracker {
    /// Opens the store behind a `sqlite:///` URI, creating it with MLflow's schema if needed.
    #[new]
    #[pyo3(signature = (uri, artifact_root))]
    fn new(py: Python<'_>, uri: String, artifact_root: String) -> PyResult<Self> {
        let lower = uri.to_ascii_lowercase();
        let target = if lower.starts_with("http://") || lower.starts_with("https://") {
            Target::Server(uri.trim_end_matches('/').to_string())
        } else if crate::workspace::is_workspace_uri(&uri) {
            Target::Server(uri.clone())
        } else {
            let path = crate::uri::sqlite_path(&uri).into_py(py)?;
            let key = engine_key(&path);
            Target::Sqlite(path, key)
        };
        let tracker = Tracker {
            uri,
            target,
            artifact_root,
        };
        tracker.engine(py)?;
        Ok(tracker)
    }

    /// The store's file, or the tracking server's URI.
    #[getter]
    fn path(&self) -> String {
        match &self.target {
            Target::Sqlite(path, _) => path.to_string_lossy().into_owned(),
            Target::Server(base) => base.clone(),
        }
    }

    /// MLflow's `create_experiment`; tag values are taken as given (MLflow does not make
    /// them strings here), and a tag of value None is stored as NULL.
    #[pyo3(signature = (name, artifact_location=None, tags=Vec::new()))]
    fn create_experiment<'py>(
        &self,
        py: Python<'py>,
        name: String,
        artifact_location: Option<String>,
        tags: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
    ) -> PyResult<String> {
        validation::validate_experiment_name(&name).into_py(py)?;
        let mut checked = Vec::with_capacity(tags.len());
        for (key, value) in &tags {
            let key = checked_key(py, key, KeyKind::Tag, "key")?;
            validation::validate_key_length(KeyKind::Tag, &key, "key").into_py(py)?;
            let value = if value.is_none() {
                None
            } else if let Ok(text) = value.cast::<PyString>() {
                Some(text.to_cow()?.into_owned())
            } else {
                // `len()` raises MLflow's TypeError for a value without a length.
                value.len()?;
                return Err(to_pyerr(
                    py,
                    Error::invalid(format!(
                        "fastflow stores experiment tag values as text; the value of tag \
                         '{key}' is not a str"
                    )),
                ));
            };
            validation::validate_experiment_tag(&key, value.as_deref()).into_py(py)?;
            checked.push((key, value));
        }
        let engine = self.engine(py)?;
        run_job(py, &engine, move |s| {
            s.store
                .create_experiment(&name, artifact_location.as_deref(), &checked)
        })
    }

    fn get_experiment(&self, py: Python<'_>, experiment_id: String) -> PyResult<ExperimentTuple> {
        let engine = self.engine(py)?;
        run_job(py, &engine, move |s| s.store.get_experiment(&experiment_id)).map(experiment_tuple)
    }

    fn get_experiment_by_name(
        &self,
        py: Python<'_>,
        name: String,
    ) -> PyResult<Option<ExperimentTuple>> {
        let engine = self.engine(py)?;
        Ok(
            run_job(py, &engine, move |s| s.store.get_experiment_by_name(&name))?
                .map(experiment_tuple),
        )
    }

    fn delete_experiment(&self, py: Python<'_>, experiment_id: String) -> PyResult<()> {
        let engine = self.engine(py)?;
        let runs = engine.runs.clone();
        run_job(py, &engine, move |s| {
            let affected = s.store.run_ids_of_experiment(&experiment_id)?;
            s.store.delete_experiment(&experiment_id)?;
            for run_id in affected {
                runs.mark(&run_id, false);
            }
            Ok(())
        })
    }

    fn restore_experiment(&self, py: Python<'_>, experiment_id: String) -> PyResult<()> {
        let engine = self.engine(py)?;
        let runs = engine.runs.clone();
        run_job(py, &engine, move |s| {
            s.store.restore_experiment(&experiment_id)?;
            for run_id in s.store.run_ids_of_experiment(&experiment_id)? {
                runs.mark(&run_id, true);
            }
            Ok(())
        })
    }

    fn set_experiment_tags(
        &self,
        py: Python<'_>,
        experiment_id: String,
        tags: Vec<(Bound<'_, PyAny>, String)>,
    ) -> PyResult<()> {
        let mut checked = Vec::with_capacity(tags.len());
        for (key, value) in &tags {
            checked.push((checked_key(py, key, KeyKind::Tag, "key")?, value.clone()));
        }
        let engine = self.engine(py)?;
        run_job(py, &engine, move |s| {
            s.store.set_experiment_tags(&experiment_id, &checked)
        })
    }

    #[pyo3(signature = (experiment_id, user_id, start_time, run_name, tags))]
    fn create_run(
        &self,
        py: Python<'_>,
        experiment_id: String,
        user_id: String,
        start_time: i64,
        run_name: String,
        tags: Vec<(String, String)>,
    ) -> PyResult<RunTuple> {
        // MLflow stores the tags of a new run as given, without validating them.
        let engine = self.engine(py)?;
        let run = run_job(py, &engine, move |s| {
            s.store
                .create_run(&experiment_id, &user_id, start_time, &run_name, &tags)
        })?;
        let slot = engine.runs.register(&run.info.run_id, true);
        let opened = RunEvent {
            run: slot.index,
            status: spool::RUN_OPENED,
            end_time: 0,
        };
        metrics::send_msg(py, &engine, Msg::Run(opened))?;
        Ok(run_tuple(run))
    }

    /// The run as (info, metrics, params, tags); `with_io` adds a fifth element, its inputs
    /// and outputs (see `RunIoTuple`), which cost more queries and most callers skip.
    #[pyo3(signature = (run_id, with_io=false))]
    fn get_run(&self, py: Python<'_>, run_id: String, with_io: bool) -> PyResult<Py<PyAny>> {
        let engine = self.engine(py)?;
        if !with_io {
            let row = run_job(py, &engine, move |s| s.store.get_run(&run_id)).map(run_tuple)?;
            return Ok(row.into_pyobject(py)?.into_any().unbind());
        }
        let mut run = run_job(py, &engine, move |s| s.store.get_run_with_io(&run_id))?;
        let io = io_tuple(std::mem::take(&mut run.io));
        let (info, metrics, params, tags) = run_tuple(run);
        let row: RunWithIoTuple = (info, metrics, params, tags, io);
        Ok(row.into_pyobject(py)?.into_any().unbind())
    }

    #[pyo3(signature = (run_id, status=None, end_time=None, run_name=None))]
    fn update_run(
        &self,
        py: Python<'_>,
        run_id: String,
        status: Option<String>,
        end_time: Option<i64>,
        run_name: Option<String>,
    ) -> PyResult<RunInfoTuple> {
        if let Some(status) = &status {
            entities::validate_status(status).into_py(py)?;
        }
        let engine = self.engine(py)?;
        // The journal hears of the run's end first, so a replay can end it if the store
        // never does (the process dies, or exits while its server is down).
        let event = match status.as_deref() {
            Some(given) => {
                let slot = self.run_slot(py, &engine, &run_id)?;
                let status = spool::terminal_status(given)
                    .or((given == spool::RUN_OPENED).then_some(spool::RUN_OPENED));
                status.map(|status| RunEvent {
                    run: slot.index,
                    status,
                    end_time: end_time.unwrap_or_else(entities::now_millis),
                })
            }
            None => None,
        };
        if let Some(event) = event.as_ref().filter(|e| e.status != spool::RUN_OPENED) {
            metrics::send_msg(py, &engine, Msg::Run(event.clone()))?;
        }
        let info = run_job(py, &engine, move |s| {
            s.store
                .update_run_info(&run_id, status.as_deref(), end_time, run_name.as_deref())
        })?;
        if let Some(event) = event.filter(|e| e.status == spool::RUN_OPENED) {
            metrics::send_msg(py, &engine, Msg::Run(event))?;
        }
        Ok(info_tuple(info))
    }

    fn delete_run(&self, py: Python<'_>, run_id: String) -> PyResult<()> {
        let engine = self.engine(py)?;
        let id = run_id.clone();
        run_job(py, &engine, move |s| s.store.delete_run(&id))?;
        engine.runs.mark(&run_id, false);
        Ok(())
    }

    fn restore_run(&self, py: Python<'_>, run_id: String) -> PyResult<()> {
        let engine = self.engine(py)?;
        let id = run_id.clone();
        run_job(py, &engine, move |s| s.store.restore_run(&id))?;
        engine.runs.mark(&run_id, true);
        Ok(())
    }

    /// MLflow's `log_param`: the param's checks, then the run's, then the write.
    fn log_param(
        &self,
        py: Python<'_>,
        run_id: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        value: String,
    ) -> PyResult<()> {
        let params = vec![checked_param(py, key, value, "", truncate_env())?];
        let run_id = run_id_text(run_id)?.into_py(py)?;
        let engine = self.engine(py)?;
        run_job(py, &engine, move |s| {
            s.store.log_params(&run_id, &params, true)
        })
    }

    /// MLflow's `set_tag`. Its store checks the tag inside a database session, where any
    /// error that is not MLflow's own (a key that is not a str) becomes an internal error.
    fn set_tag(
        &self,
        py: Python<'_>,
        run_id: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        value: String,
    ) -> PyResult<()> {
        let value = PyString::new(py, &value).into_any();
        let tag = checked_tag(py, key, &value, "", truncate_env()).map_err(|err| {
            if err.is_instance_of::<pyo3::exceptions::PyTypeError>(py) {
                to_pyerr(py, Error::Internal(err.value(py).to_string()))
            } else {
                err
            }
        })?;
        let tags = match tag {
            (key, TagValue::Text(value)) => vec![(key, value)],
            (_, TagValue::Unbindable(_)) => unreachable!("set_tag values are str"),
        };
        let run_id = run_id_text(run_id)?.into_py(py)?;
        let engine = self.engine(py)?;
        run_job(py, &engine, move |s| s.store.set_tags(&run_id, &tags))
    }

    /// Tags fastflow itself sets on a run it resumes, checked as a batch's.
    fn set_tags(
        &self,
        py: Python<'_>,
        run_id: String,
        tags: Vec<(String, String)>,
    ) -> PyResult<()> {
        let truncate = truncate_env();
        let mut checked = Vec::with_capacity(tags.len());
        for (index, (key, value)) in tags.into_iter().enumerate() {
            let key = PyString::new(py, &key).into_any();
            let value = PyString::new(py, &value).into_any();
            if let (key, TagValue::Text(value)) =
                checked_tag(py, &key, &value, &format!("tags[{index}]"), truncate)?
            {
                checked.push((key, value));
            }
        }
        let engine = self.engine(py)?;
        run_job(py, &engine, move |s| s.store.set_tags(&run_id, &checked))
    }

    fn delete_tag(&self, py: Python<'_>, run_id: String, key: String) -> PyResult<()> {
        let engine = self.engine(py)?;
        run_job(py, &engine, move |s| s.store.delete_tag(&run_id, &key))
    }

    /// One request of MLflow's `log_batch` as its store takes it (the Python layer splits a
    /// larger batch as MLflow's client does, and converts metric values first). In MLflow's
    /// order: the run id's form, every metric, param and tag, the limits, duplicate param
    /// keys, the run; then params, metrics and tags are written one after the other, so a
    /// failure leaves what was written before it.
    #[pyo3(signature = (run_id, metrics, params, tags, synchronous=None))]
    fn log_batch<'py>(
        &self,
        py: Python<'py>,
        run_id: &Bound<'py, PyAny>,
        metrics: Vec<BatchMetric<'py>>,
        params: Vec<(Bound<'py, PyAny>, String)>,
        tags: Vec<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
        synchronous: Option<bool>,
    ) -> PyResult<()> {
        let Ok(run_id) = run_id.cast::<PyString>() else {
            return Err(metrics::not_a_string(py, run_id));
        };
        let run_id = run_id.to_cow()?.into_owned();
        validation::validate_run_id(&run_id).into_py(py)?;
        let checked_metrics = metrics::check_batch(py, &metrics)?;
        let truncate = truncate_env();
        let mut checked_params = Vec::with_capacity(params.len());
        for (index, (key, value)) in params.into_iter().enumerate() {
            checked_params.push(checked_param(
                py,
                &key,
                value,
                &format!("params[{index}]"),
                truncate,
            )?);
        }
        let mut checked_tags = Vec::with_capacity(tags.len());
        for (index, (key, value)) in tags.iter().enumerate() {
            checked_tags.push(checked_tag(
                py,
                key,
                value,
                &format!("tags[{index}]"),
                truncate,
            )?);
        }
        validation::validate_batch_limits(metrics.len(), checked_params.len(), checked_tags.len())
            .into_py(py)?;
        validation::validate_unique_param_keys(checked_params.iter().map(|(k, _)| k.as_str()))
            .into_py(py)?;
        let engine = self.engine(py)?;
        raise_pending(py, &engine)?;
        let slot = self.run_slot(py, &engine, &run_id)?;
        slot.check_active().into_py(py)?;
        if !checked_params.is_empty() {
            let id = run_id.clone();
            run_job(py, &engine, move |s| {
                s.store.log_params(&id, &checked_params, false)
            })?;
        }
        if !checked_metrics.is_empty() {
            let points = metrics::stored(py, &slot, &checked_metrics)?;
            metrics::send_stored(py, &engine, points)?;
        }
        if let Some(err) = unbindable_tags(py, &run_id, &checked_tags)? {
            return Err(err);
        }
        let tags: Vec<(String, Option<String>)> = checked_tags
            .into_iter()
            .filter_map(|(key, value)| match value {
                TagValue::Text(value) => Some((key, value)),
                TagValue::Unbindable(_) => None,
            })
            .collect();
        if !tags.is_empty() {
            run_job(py, &engine, move |s| s.store.set_tags(&run_id, &tags))?;
        }
        if synchronous == Some(true) {
            flush_engine(py, &engine)?;
        }
        Ok(())
    }

    /// MLflow's client `log_metric`: defaults for the timestamp and step, the value's
    /// conversion, the point's checks, then the run's, then the point is queued.
    #[pyo3(signature = (run_id, key, value, timestamp=None, step=None, synchronous=None))]
    #[allow(clippy::too_many_arguments)]
    fn log_metric(
        &self,
        py: Python<'_>,
        run_id: &Bound<'_, PyAny>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        timestamp: Option<&Bound<'_, PyAny>>,
        step: Option<&Bound<'_, PyAny>>,
        synchronous: Option<bool>,
    ) -> PyResult<()> {
        let engine = self.engine(py)?;
        raise_pending(py, &engine)?;
        let timestamp = Given::or_else(timestamp, entities::now_millis);
        let step = Given::or_else(step, || 0);
        let value = Value::convert(value)?;
        let checked = metrics::check_metric(py, key, value, timestamp, step, "")?;
        let run_id = run_id_text(run_id)?.into_py(py)?;
        let slot = self.run_slot(py, &engine, &run_id)?;
        slot.check_active().into_py(py)?;
        let points = metrics::stored(py, &slot, std::slice::from_ref(&checked))?;
        metrics::send_stored(py, &engine, points)?;
        if synchronous == Some(true) {
            flush_engine(py, &engine)?;
        }
        Ok(())
    }

    fn get_metric_history(
        &self,
        py: Python<'_>,
        run_id: String,
        key: String,
    ) -> PyResult<Vec<HistoryPoint>> {
        let engine = self.engine(py)?;
        let metric_key = key.clone();
        let series = run_job(py, &engine, move |s| {
            s.write_pending()?;
            s.store.metric_series(&run_id, &key)
        })?;
        // One key string for every point, not one read from SQLite per row.
        let shared_key = PyString::new(py, &metric_key).unbind();
        Ok((0..series.len())
            .map(|i| {
                (
                    shared_key.clone_ref(py),
                    series.values[i],
                    series.timestamps[i],
                    series.steps[i],
                )
            })
            .collect())
    }

    /// The history as packed little-endian columns (timestamps, steps, values) and whether
    /// every timestamp and step is whole (i64 columns; f64 otherwise): no object per point.
    fn get_metric_columns(
        &self,
        py: Python<'_>,
        run_id: String,
        key: String,
    ) -> PyResult<MetricColumns> {
        let engine = self.engine(py)?;
        let series = run_job(py, &engine, move |s| {
            s.write_pending()?;
            s.store.metric_series(&run_id, &key)
        })?;
        let whole = series
            .timestamps
            .iter()
            .chain(series.steps.iter())
            .all(|n| n.as_int().is_some());
        let packed = |numbers: &[Number]| -> Vec<u8> {
            numbers
                .iter()
                .flat_map(|n| match (whole, *n) {
                    (true, Number::Int(i)) => i.to_le_bytes(),
                    (_, Number::Int(i)) => (i as f64).to_le_bytes(),
                    (_, Number::Real(r)) => r.to_le_bytes(),
                })
                .collect()
        };
        let values: Vec<u8> = series.values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok((
            PyBytes::new(py, &packed(&series.timestamps)).unbind(),
            PyBytes::new(py, &packed(&series.steps)).unbind(),
            PyBytes::new(py, &values).unbind(),
            whole,
        ))
    }

    /// At most `max_points` points of the history, in step order, that keep the curve's
    /// shape (see `series::sample`); steps outside `[first_step, last_step]` are left out.
    #[pyo3(signature = (run_id, key, max_points, first_step=None, last_step=None))]
    fn get_metric_history_sampled(
        &self,
        py: Python<'_>,
        run_id: String,
        key: String,
        max_points: usize,
        first_step: Option<i64>,
        last_step: Option<i64>,
    ) -> PyResult<Vec<MetricTuple>> {
        let engine = self.engine(py)?;
        let metric_key = key.clone();
        let sampled = run_job(py, &engine, move |s| {
            s.write_pending()?;
            let series = s.store.metric_series_by_step(&run_id, &key)?;
            let inside = series::within_steps(&series, first_step, last_step);
            if inside.len() == series.len() {
                return Ok(series.select(&series::sample(&series, max_points)));
            }
            let inside = series.select(&inside);
            Ok(inside.select(&series::sample(&inside, max_points)))
        })?;
        Ok((0..sampled.len())
            .map(|i| {
                (
                    metric_key.clone(),
                    sampled.values[i],
                    sampled.timestamps[i],
                    sampled.steps[i],
                )
            })
            .collect())
    }

    /// Queues a packet shipped by another process's outbox (see `outbox`). Every point is
    /// queued; points of runs the store lacks or has deleted are held by the writer, and the
    /// first such run is reported to the sender.
    fn log_packed(
        &self,
        py: Python<'_>,
        run_ids: Vec<String>,
        keys: Vec<String>,
        records: &[u8],
    ) -> PyResult<()> {
        let decoded = outbox::decode(records, run_ids.len(), keys.len()).into_py(py)?;
        let interner = process::current().interner.clone();
        let key_ids = keys
            .iter()
            .map(|key| interner.intern_metric_key(key))
            .collect::<Result<Vec<u32>>>()
            .into_py(py)?;
        let engine = self.engine(py)?;
        let mut refused: Option<Error> = None;
        let mut run_indexes = Vec::with_capacity(run_ids.len());
        for run_id in &run_ids {
            let slot = match engine.runs.get(run_id) {
                Some(slot) => slot,
                None => {
                    let id = run_id.clone();
                    let stage = run_job(py, &engine, move |s| s.store.run_lifecycle(&id))?;
                    if stage.is_none() {
                        refused.get_or_insert(Error::not_found(format!(
                            "Run with id={run_id} not found"
                        )));
                    }
                    let active = stage
                        .as_deref()
                        .is_none_or(|s| s == entities::LIFECYCLE_ACTIVE);
                    engine.runs.register(run_id, active)
                }
            };
            if let Err(error) = slot.check_active() {
                refused.get_or_insert(error);
            }
            run_indexes.push(slot.index);
        }
        let records = decoded
            .into_iter()
            .map(|r| MetricRecord {
                run: run_indexes[r.run as usize],
                key: key_ids[r.key as usize],
                ..r
            })
            .collect();
        metrics::send_records(py, &engine, records)?;
        refused.map_or(Ok(()), |error| Err(to_pyerr(py, error)))
    }

    /// One page of runs in MLflow's order; points still queued are written first. With
    /// `as_columns`, the shape a DataFrame is built from (see `columns_object`), its text
    /// columns as Arrow buffers with `packed_texts`.
    #[pyo3(signature = (
        experiment_ids, filter, view_type, order_by, offset, limit, as_columns=false,
        packed_texts=false
    ))]
    #[allow(clippy::too_many_arguments)]
    fn search_runs(
        &self,
        py: Python<'_>,
        experiment_ids: Vec<String>,
        filter: String,
        view_type: i64,
        order_by: Vec<String>,
        offset: i64,
        limit: Option<i64>,
        as_columns: bool,
        packed_texts: bool,
    ) -> PyResult<Py<PyAny>> {
        let search = run_search(
            py,
            experiment_ids,
            filter,
            view_type,
            order_by,
            offset,
            limit,
        )?;
        let engine = self.engine(py)?;
        if as_columns {
            let columns = run_job(py, &engine, move |s| {
                s.write_pending()?;
                s.store.search_run_columns(&search)
            })?;
            return Ok(columns_object(py, columns, packed_texts)?
                .into_any()
                .unbind());
        }
        let runs = run_job(py, &engine, move |s| {
            s.write_pending()?;
            s.store.search_runs(&search)
        })?;
        let rows: Vec<RunTuple> = runs.into_iter().map(run_tuple).collect();
        Ok(rows.into_pyobject(py)?.into_any().unbind())
    }

    #[pyo3(signature = (filter, view_type, order_by, offset, limit))]
    fn search_experiments(
        &self,
        py: Python<'_>,
        filter: String,
        view_type: i64,
        order_by: Vec<String>,
        offset: i64,
        limit: i64,
    ) -> PyResult<Vec<ExperimentTuple>> {
        let search = search::ExperimentSearch {
            filter,
            view_type,
            order_by,
            offset,
            limit,
        };
        let engine = self.engine(py)?;
        let found = run_job(py, &engine, move |s| s.store.search_experiments(&search))?;
        Ok(found.into_iter().map(experiment_tuple).collect())
    }

    /// Delivers what dead processes left in the spool for this store: points, and the end
    /// of the runs they left running. Counts include what opening the store replayed.
    fn sync(&self, py: Python<'_>) -> PyResult<(u64, u64, u64, u64)> {
        let engine = self.engine(py)?;
        let r = run_job(py, &engine, |s| s.replay_orphans())?;
        Ok((r.files, r.points, r.runs_ended, r.dropped))
    }

    /// Points delivered from dead processes' journals since this store was opened here.
    fn replayed_points(&self, py: Python<'_>) -> PyResult<u64> {
        let engine = self.engine(py)?;
        Ok(engine
            .shared
            .replayed_points
            .load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Waits until everything logged to this store is written.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.engine(py)?;
        flush_engine(py, &engine)
    }

    /// Waits until everything logged to this store is committed and readable by other
    /// connections (MLflow's own, in this process or another), without the fsync of `flush`.
    fn make_visible(&self, py: Python<'_>) -> PyResult<()> {
        let engine = self.engine(py)?;
        make_visible_engine(py, &engine)
    }

    fn __repr__(&self) -> String {
        format!("Tracker({:?})", crate::uri::redacted(&self.uri))
    }

    /// The points of the history MLflow's SQL store pages through, in its order (timestamp,
    /// step, value): from `offset` on, at most `limit` of them (all without a limit).
    #[pyo3(signature = (run_id, key, offset, limit=None))]
    fn get_metric_history_page(
        &self,
        py: Python<'_>,
        run_id: String,
        key: String,
        offset: usize,
        limit: Option<usize>,
    ) -> PyResult<Vec<HistoryPoint>> {
        let engine = self.engine(py)?;
        let metric_key = key.clone();
        let page = run_job(py, &engine, move |s| {
            s.write_pending()?;
            let series = s.store.metric_series(&run_id, &key)?;
            let start = offset.min(series.len());
            let end = limit.map_or(series.len(), |l| start.saturating_add(l).min(series.len()));
            if start == 0 && end == series.len() {
                return Ok(series);
            }
            Ok(series.select(&(start..end).collect::<Vec<_>>()))
        })?;
        let shared_key = PyString::new(py, &metric_key).unbind();
        Ok((0..page.len())
            .map(|i| {
                let (value, timestamp, step) = (page.values[i], page.timestamps[i], page.steps[i]);
                (shared_key.clone_ref(py), value, timestamp, step)
            })
            .collect())
    }

    /// What MLflow's SQL store answers for one run of a chart request
    /// (`get_metric_history_bulk_interval`): of the points whose step lies in
    /// `[first_step, last_step]` (every point without bounds), in the order of the stored key
    /// (step, timestamp, value, NaN-ness), those `series::mlflow_interval_sample` keeps.
    #[pyo3(signature = (run_id, key, max_results, first_step=None, last_step=None))]
    fn get_metric_history_interval(
        &self,
        py: Python<'_>,
        run_id: String,
        key: String,
        max_results: usize,
        first_step: Option<i64>,
        last_step: Option<i64>,
    ) -> PyResult<Vec<HistoryPoint>> {
        let engine = self.engine(py)?;
        let metric_key = key.clone();
        let sampled = run_job(py, &engine, move |s| {
            s.write_pending()?;
            let series = series::by_stored_key(match (first_step, last_step) {
                (Some(first), Some(last)) => s
                    .store
                    .metric_series_between_steps(&run_id, &key, first, last)?,
                _ => s
                    .store
                    .metric_series_by_step(&run_id, &key)?
                    .as_ref()
                    .clone(),
            });
            Ok(series.select(&series::mlflow_interval_sample(series.len(), max_results)))
        })?;
        let shared_key = PyString::new(py, &metric_key).unbind();
        Ok((0..sampled.len())
            .map(|i| {
                let (value, timestamp) = (sampled.values[i], sampled.timestamps[i]);
                (shared_key.clone_ref(py), value, timestamp, sampled.steps[i])
            })
            .collect())
    }

    /// The points whose step is one of `steps`, in the order of the stored key (step,
    /// timestamp, value, NaN-ness), at most `limit` of them: MLflow's
    /// `get_metric_history_bulk_interval_from_steps` for one run.
    fn get_metric_history_at_steps(
        &self,
        py: Python<'_>,
        run_id: String,
        key: String,
        steps: Vec<i64>,
        limit: usize,
    ) -> PyResult<Vec<HistoryPoint>> {
        let engine = self.engine(py)?;
        let metric_key = key.clone();
        let found = run_job(py, &engine, move |s| {
            s.write_pending()?;
            let cached = s.store.metric_series_by_step(&run_id, &key)?;
            let series = series::by_stored_key(cached.as_ref().clone());
            let mut chosen = series::at_steps(&series, &steps);
            chosen.truncate(limit);
            Ok(series.select(&chosen))
        })?;
        let shared_key = PyString::new(py, &metric_key).unbind();
        Ok((0..found.len())
            .map(|i| {
                let (value, timestamp, step) =
                    (found.values[i], found.timestamps[i], found.steps[i]);
                (shared_key.clone_ref(py), value, timestamp, step)
            })
            .collect())
    }
}

/// MLflow's check of a run id's form (its client makes it before `get_run`).
#[pyfunction]
pub fn _check_run_id(py: Python<'_>, run_id: &Bound<'_, PyAny>) -> PyResult<()> {
    let Ok(text) = run_id.cast::<PyString>() else {
        return Err(metrics::not_a_string(py, run_id));
    };
    validation::validate_run_id(&text.to_cow()?).into_py(py)
}

/// MLflow's limits on one `log_batch`, for trackers that validate before sending anything.
#[pyfunction]
pub fn _validate_batch_limits(
    py: Python<'_>,
    metrics: usize,
    params: usize,
    tags: usize,
) -> PyResult<()> {
    validation::validate_batch_limits(metrics, params, tags).into_py(py)
}

/// The journals in the spool of the store behind `uri`, without opening the store (which
/// would replay them): `(path, live, pid, points, runs left open, last write ms)` each.
#[pyfunction]
#[allow(clippy::type_complexity)]
pub fn _spool_survey(
    py: Python<'_>,
    uri: &str,
) -> PyResult<Vec<(String, bool, u32, usize, Vec<String>, i64)>> {
    let lower = uri.to_ascii_lowercase();
    let key = if lower.starts_with("http://")
        || lower.starts_with("https://")
        || crate::workspace::is_workspace_uri(uri)
    {
        server_name(uri.trim_end_matches('/')).into_py(py)?
    } else {
        engine_key(&crate::uri::sqlite_path(uri).into_py(py)?)
    };
    let Some(dir) = spool::dir_for(&key) else {
        return Ok(Vec::new());
    };
    Ok(spool::survey(&dir)
        .into_iter()
        .map(|j| {
            (
                j.path.display().to_string(),
                j.live,
                j.pid,
                j.points,
                j.open_runs,
                j.last_write_ms,
            )
        })
        .collect())
}

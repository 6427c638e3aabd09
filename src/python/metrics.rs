//! The hot path: `log_metric` finds the thread's active run, stamps the point and sends a
//! 32-byte record to the writer. Only unusual input (non-float values, explicit steps that
//! need conversion, a full queue, no active run) leaves the fast lane.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString};
use rustc_hash::FxHashMap;

use super::errors::{mlflow_exception, raise_pending, to_pyerr, IntoPyResult};
use super::outbox::Outbox;
use super::tracker::{flush_engine, Tracker};
use crate::entities::now_millis;
use crate::error::{Error, Result};
use crate::process;
use crate::runs::RunSlot;
use crate::validation::{invalid_value_message, validate_key, KeyKind};
use crate::writer::{Engine, MetricRecord, Msg, Undelivered};

/// The run that fluent calls on this thread log to, mirrored from the Python run stack.
struct ThreadRun {
    generation: u64,
    engine: Arc<Engine>,
    slot: Arc<RunSlot>,
    /// Steps at which the run logged a model (MLflow's ``log_model``): MLflow links a fluent
    /// metric of such a step to those models, so those points take MLflow's path.
    model_steps: Box<[i64]>,
}

/// Whether a fluent point of `step` (None is step 0) on the thread's run (or on `run_id`
/// when that is the thread's run) must be linked to a model the run logged at that step.
fn links_a_model(run_id: Option<&str>, step: Option<&Bound<'_, PyAny>>) -> bool {
    ACTIVE.with(|cell| {
        let Ok(active) = cell.try_borrow() else {
            return false;
        };
        let Some(run) = active.as_ref() else {
            return false;
        };
        if run.model_steps.is_empty() || run_id.is_some_and(|id| id != &*run.slot.id) {
            return false;
        }
        let step = match step {
            None => 0,
            Some(step) if step.is_none() => 0,
            Some(step) => match step.extract::<i64>() {
                Ok(step) => step,
                Err(_) => return false,
            },
        };
        run.model_steps.contains(&step)
    })
}

#[derive(Default)]
struct KeyCache {
    generation: u64,
    ids: FxHashMap<Box<str>, u32>,
}

thread_local! {
    static ACTIVE: RefCell<Option<ThreadRun>> = const { RefCell::new(None) };
    static KEYS: RefCell<KeyCache> = RefCell::new(KeyCache::default());
}

static RUN_FOR_LOGGING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RUN_OPERATIONS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static LINKED_METRICS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static JSON_DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static NUMBER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

/// A `keep_waiting` callback for blocking waits: re-attaches to check for Ctrl-C and keeps
/// the `KeyboardInterrupt` so it can be raised as it came.
pub fn signal_check(slot: &mut Option<PyErr>) -> impl FnMut() -> Result<()> + '_ {
    move || {
        if process::exit_deadline_passed() {
            return Err(Error::Unavailable(
                "gave up waiting: the process is exiting and FASTFLOW_EXIT_TIMEOUT passed".into(),
            ));
        }
        Python::attach(|py| py.check_signals()).map_err(|err| {
            *slot = Some(err);
            Error::Interrupted
        })
    }
}

pub fn raise(py: Python<'_>, error: Error, interrupt: Option<PyErr>) -> PyErr {
    match (error, interrupt) {
        (Error::Interrupted, Some(err)) => err,
        (error, _) => to_pyerr(py, error),
    }
}

fn send_blocking(py: Python<'_>, engine: &Engine, msg: Msg) -> PyResult<()> {
    let mut interrupt = None;
    let result = py.detach(|| engine.send(msg, &mut signal_check(&mut interrupt)));
    result.map_err(|error| raise(py, error, interrupt))
}

pub fn send_msg(py: Python<'_>, engine: &Engine, msg: Msg) -> PyResult<()> {
    send_blocking(py, engine, msg)
}

pub fn send_records(py: Python<'_>, engine: &Engine, records: Vec<MetricRecord>) -> PyResult<()> {
    for record in records {
        if let Err(msg) = engine.try_send_metric(record) {
            send_blocking(py, engine, msg)?;
        }
    }
    Ok(())
}

#[inline]
fn key_id(key: &str) -> Result<u32> {
    KEYS.with(|cache| {
        let mut cache = cache.borrow_mut();
        let generation = process::generation();
        if cache.generation != generation {
            cache.ids.clear();
            cache.generation = generation;
        }
        if let Some(&id) = cache.ids.get(key) {
            return Ok(id);
        }
        let id = process::current().interner.intern_metric_key(key)?;
        cache.ids.insert(key.into(), id);
        Ok(id)
    })
}

fn json_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn dumps(value: &Bound<'_, PyAny>) -> String {
    let py = value.py();
    let dumped = JSON_DUMPS.import(py, "json", "dumps").and_then(|dumps| {
        let kwargs = PyDict::new(py);
        kwargs.set_item("sort_keys", true)?;
        kwargs.set_item("separators", (",", ":"))?;
        dumps.call((value,), Some(&kwargs))?.extract::<String>()
    });
    dumped.unwrap_or_else(|_| value.repr().map(|r| r.to_string()).unwrap_or_default())
}

fn invalid(py: Python<'_>, message: String) -> PyErr {
    mlflow_exception(py, &message, "INVALID_PARAMETER_VALUE")
}

fn metric_key<'a>(
    py: Python<'_>,
    key: &'a Bound<'_, PyAny>,
    path: &str,
) -> PyResult<(&'a str, u32)> {
    let name_path = json_path(path, "name");
    let Ok(text) = key.cast::<PyString>() else {
        let message = if key.is_none() {
            "Metric name cannot be None. A key name must be provided."
        } else {
            "Metric name must be a string."
        };
        return Err(invalid(
            py,
            invalid_value_message(&name_path, &dumps(key), message),
        ));
    };
    let text = text.to_str()?;
    match key_id(text) {
        Ok(id) => Ok((text, id)),
        // The interner checks with MLflow's single-metric wording; say where in a batch.
        Err(_) => Err(to_pyerr(
            py,
            validate_key(KeyKind::Metric, text, &name_path).unwrap_err(),
        )),
    }
}

fn metric_value(
    py: Python<'_>,
    value: &Bound<'_, PyAny>,
    timestamp: i64,
    path: &str,
) -> PyResult<f64> {
    if let Ok(float) = value.cast_exact::<PyFloat>() {
        return Ok(float.value());
    }
    if value.is_exact_instance_of::<PyInt>() {
        return value.extract::<f64>();
    }
    let value_path = json_path(path, "value");
    if value.is_none() {
        return Err(invalid(
            py,
            format!("Missing value for required parameter '{value_path}'."),
        ));
    }
    let number = NUMBER.import(py, "numbers", "Number")?;
    if value.is_instance_of::<PyBool>() || !value.is_instance(number)? {
        return Err(invalid(
            py,
            invalid_value_message(
                &value_path,
                &dumps(value),
                &format!(
                    "(timestamp={timestamp}). Please specify value as a valid double (64-bit \
                     floating point)"
                ),
            ),
        ));
    }
    value.call_method0("__float__")?.extract::<f64>()
}

fn metric_integer(
    py: Python<'_>,
    given: Option<&Bound<'_, PyAny>>,
    field: &str,
    key: &str,
    value: &Bound<'_, PyAny>,
    path: &str,
) -> PyResult<Option<i64>> {
    let Some(given) = given.filter(|g| !g.is_none()) else {
        return Ok(None);
    };
    if let Ok(int) = given.extract::<i64>() {
        if field == "step" || int >= 0 {
            return Ok(Some(int));
        }
    }
    let rule = if field == "step" {
        "Step must be a valid long (64-bit integer)."
    } else {
        "Timestamp must be a nonnegative long (64-bit integer) "
    };
    let shown = value.str().map(|s| s.to_string()).unwrap_or_default();
    Err(invalid(
        py,
        invalid_value_message(
            &json_path(path, field),
            &dumps(given),
            &format!("metric '{key}' (value={shown}). {rule}"),
        ),
    ))
}

/// Where MLflow says a metric sits: nowhere for a single one, `metrics[3]` in a batch.
pub fn entry_path(single: bool, index: usize) -> String {
    if single {
        String::new()
    } else {
        format!("metrics[{index}]")
    }
}

/// A metric of `log_batch` as Python hands it over: (key, value, timestamp, step).
pub type BatchMetric<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

/// The records of a batch, every entry validated (with its place in MLflow's wording).
pub fn batch_records(
    py: Python<'_>,
    slot: &RunSlot,
    metrics: &[BatchMetric<'_>],
) -> PyResult<Vec<MetricRecord>> {
    let single = metrics.len() == 1;
    let mut records = Vec::with_capacity(metrics.len());
    for (index, (key, value, timestamp, step)) in metrics.iter().enumerate() {
        let path = entry_path(single, index);
        records.push(metric_record(
            py,
            slot,
            key,
            value,
            Some(timestamp),
            Some(step),
            &path,
        )?);
    }
    Ok(records)
}

/// Validates one point as MLflow would and packs it for the writer.
pub fn metric_record(
    py: Python<'_>,
    slot: &RunSlot,
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    timestamp: Option<&Bound<'_, PyAny>>,
    step: Option<&Bound<'_, PyAny>>,
    path: &str,
) -> PyResult<MetricRecord> {
    let (name, key) = metric_key(py, key, path)?;
    let timestamp_given = metric_integer(py, timestamp, "timestamp", name, value, path)?;
    let timestamp = timestamp_given.unwrap_or_else(now_millis);
    let value_f = metric_value(py, value, timestamp, path)?;
    let step = metric_integer(py, step, "step", name, value, path)?.unwrap_or(0);
    Ok(MetricRecord {
        run: slot.index,
        key,
        value: value_f,
        timestamp,
        step,
    })
}

enum Fast {
    Sent,
    Slow,
}

/// The common case, done while borrowing the thread's run: a str key, a float or int value,
/// no explicit timestamp, an int step or none, room in the queue. No Python code runs here,
/// so nothing can re-enter and replace the run under the borrow.
#[inline]
fn try_fast(
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    step: Option<&Bound<'_, PyAny>>,
) -> Fast {
    ACTIVE.with(|cell| {
        let Ok(active) = cell.try_borrow() else {
            return Fast::Slow;
        };
        let Some(run) = active.as_ref() else {
            return Fast::Slow;
        };
        if run.generation != process::generation()
            || run.engine.shared.has_error()
            || run.slot.check_active().is_err()
            || !run.model_steps.is_empty()
        {
            return Fast::Slow;
        }
        let Ok(key) = key.cast_exact::<PyString>() else {
            return Fast::Slow;
        };
        let Ok(key) = key.to_str() else {
            return Fast::Slow;
        };
        let value = if let Ok(float) = value.cast_exact::<PyFloat>() {
            float.value()
        } else {
            return Fast::Slow;
        };
        let step = match step {
            None => 0,
            Some(step) if step.is_exact_instance_of::<PyInt>() => match step.extract::<i64>() {
                Ok(step) => step,
                Err(_) => return Fast::Slow,
            },
            Some(_) => return Fast::Slow,
        };
        let Ok(key) = key_id(key) else {
            return Fast::Slow;
        };
        let record = MetricRecord {
            run: run.slot.index,
            key,
            value,
            timestamp: now_millis(),
            step,
        };
        match run.engine.try_send_metric(record) {
            Ok(()) => Fast::Sent,
            Err(_) => Fast::Slow,
        }
    })
}

/// The engine and run slot a fluent call logs to: the thread's active run, the run named
/// by `run_id`, or a run the Python layer starts (MLflow auto-starts one).
fn resolve_target(py: Python<'_>, run_id: Option<&str>) -> PyResult<(Arc<Engine>, Arc<RunSlot>)> {
    let current = ACTIVE.with(|cell| {
        cell.borrow()
            .as_ref()
            .map(|run| (run.generation, run.engine.clone(), run.slot.clone()))
    });
    if let Some((generation, engine, slot)) = current {
        if generation == process::generation() && run_id.is_none_or(|id| id == &*slot.id) {
            return Ok((engine, slot));
        }
    }
    let hook = RUN_FOR_LOGGING.import(py, "fastflow.fluent", "_run_for_logging")?;
    let (tracker, id): (Bound<'_, PyAny>, String) = hook.call1((run_id,))?.extract()?;
    match Sink::of(&tracker)? {
        Sink::Store(tracker) => {
            let tracker = tracker.get();
            let engine = tracker.engine(py)?;
            let slot = tracker.run_slot(py, &engine, &id)?;
            Ok((engine, slot))
        }
        Sink::Outbox(outbox) => {
            let outbox = outbox.get();
            Ok((outbox.engine.clone(), outbox.run_slot(py, &id)?))
        }
    }
}

/// Where a tracker's records go: a store's writer, or an outbox whose packets another
/// process writes (a Python tracker that holds one as `_outbox`).
enum Sink<'py> {
    Store(Bound<'py, Tracker>),
    Outbox(Bound<'py, Outbox>),
}

impl<'py> Sink<'py> {
    fn of(tracker: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(store) = tracker.cast::<Tracker>() {
            return Ok(Sink::Store(store.clone()));
        }
        let outbox = tracker.getattr("_outbox")?;
        Ok(Sink::Outbox(outbox.cast_into::<Outbox>()?))
    }

    fn engine(&self, py: Python<'_>) -> PyResult<Arc<Engine>> {
        match self {
            Sink::Store(tracker) => tracker.get().engine(py),
            Sink::Outbox(outbox) => Ok(outbox.get().engine.clone()),
        }
    }
}

fn after_send(
    py: Python<'_>,
    engine: &Engine,
    synchronous: Option<bool>,
) -> PyResult<Option<Py<PyAny>>> {
    match synchronous {
        Some(true) => {
            flush_engine(py, engine)?;
            Ok(None)
        }
        Some(false) => {
            let class = RUN_OPERATIONS.import(py, "fastflow.fluent", "RunOperations")?;
            Ok(Some(class.call0()?.unbind()))
        }
        None => Ok(None),
    }
}

/// A metric tied to a logged model or a dataset: MLflow's own code records the link (the
/// Python layer hands it over), so the writer's compact records never carry one.
fn log_linked<'py>(
    py: Python<'py>,
    name: &str,
    args: impl IntoPyObject<'py, Target = pyo3::types::PyTuple>,
) -> PyResult<Option<Py<PyAny>>> {
    let hook = LINKED_METRICS.import(py, "fastflow.fluent", "_log_linked_metrics")?;
    let result = hook.call1((name, args))?;
    Ok((!result.is_none()).then(|| result.unbind()))
}

#[pyfunction]
#[pyo3(signature = (key, value, step=None, synchronous=None, timestamp=None, run_id=None, model_id=None, dataset=None))]
#[allow(clippy::too_many_arguments)]
pub fn log_metric(
    py: Python<'_>,
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    step: Option<&Bound<'_, PyAny>>,
    synchronous: Option<bool>,
    timestamp: Option<&Bound<'_, PyAny>>,
    run_id: Option<&str>,
    model_id: Option<&Bound<'_, PyAny>>,
    dataset: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    if model_id.is_some() || dataset.is_some() || links_a_model(run_id, step) {
        return log_linked(
            py,
            "log_metric",
            (
                key,
                value,
                step,
                synchronous,
                timestamp,
                run_id,
                model_id,
                dataset,
            ),
        );
    }
    if synchronous.is_none() && timestamp.is_none() && run_id.is_none() {
        if let Fast::Sent = try_fast(key, value, step) {
            return Ok(None);
        }
    }
    let (engine, slot) = resolve_target(py, run_id)?;
    raise_pending(py, &engine)?;
    slot.check_active().into_py(py)?;
    let record = metric_record(py, &slot, key, value, timestamp, step, "")?;
    send_records(py, &engine, vec![record])?;
    after_send(py, &engine, synchronous)
}

#[pyfunction]
#[pyo3(signature = (metrics, step=None, synchronous=None, run_id=None, timestamp=None, model_id=None, dataset=None))]
#[allow(clippy::too_many_arguments)]
pub fn log_metrics(
    py: Python<'_>,
    metrics: &Bound<'_, PyDict>,
    step: Option<&Bound<'_, PyAny>>,
    synchronous: Option<bool>,
    run_id: Option<&str>,
    timestamp: Option<&Bound<'_, PyAny>>,
    model_id: Option<&Bound<'_, PyAny>>,
    dataset: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    if model_id.is_some() || dataset.is_some() || links_a_model(run_id, step) {
        return log_linked(
            py,
            "log_metrics",
            (
                metrics,
                step,
                synchronous,
                run_id,
                timestamp,
                model_id,
                dataset,
            ),
        );
    }
    let (engine, slot) = resolve_target(py, run_id)?;
    raise_pending(py, &engine)?;
    slot.check_active().into_py(py)?;
    // One timestamp for the whole dict, and nothing sent unless every entry is valid.
    let now = now_millis().into_pyobject(py)?.into_any();
    let timestamp = timestamp.filter(|t| !t.is_none()).unwrap_or(&now);
    let single = metrics.len() == 1;
    let mut records = Vec::with_capacity(metrics.len());
    for (index, (key, value)) in metrics.iter().enumerate() {
        let path = entry_path(single, index);
        records.push(metric_record(
            py,
            &slot,
            &key,
            &value,
            Some(timestamp),
            step,
            &path,
        )?);
    }
    send_records(py, &engine, records)?;
    after_send(py, &engine, synchronous)
}

/// Called by the Python run stack whenever the top of this thread's stack changes.
#[pyfunction]
#[pyo3(signature = (tracker, run_id, model_steps=Vec::new()))]
pub fn _set_thread_run(
    py: Python<'_>,
    tracker: Option<Bound<'_, PyAny>>,
    run_id: Option<String>,
    model_steps: Vec<i64>,
) -> PyResult<()> {
    let next = match (tracker, run_id) {
        (Some(tracker), Some(run_id)) => {
            let engine = Sink::of(&tracker)?.engine(py)?;
            let slot = engine.runs.register(&run_id, true);
            Some(ThreadRun {
                generation: process::generation(),
                engine,
                slot,
                model_steps: model_steps.into_boxed_slice(),
            })
        }
        _ => None,
    };
    let previous = ACTIVE.with(|cell| cell.replace(next));
    drop(previous);
    Ok(())
}

/// Called just before `fork()`: holds every writer outside SQLite until the fork is done.
#[pyfunction]
pub fn _before_fork() {
    process::before_fork();
}

#[pyfunction]
pub fn _after_fork_in_parent() {
    process::after_fork_in_parent();
}

/// Called in a forked child: the parent's writer threads and connections are not ours, and
/// (as in MLflow) the child starts with no active run. The parent's handles are forgotten,
/// never dropped: their locks may be held by threads that do not exist here.
#[pyfunction]
pub fn _after_fork_in_child() {
    process::after_fork_in_child();
    ACTIVE.with(|cell| std::mem::forget(cell.take()));
}

/// From now on, blocking waits give up after `seconds` (the process is ending).
#[pyfunction]
pub fn _set_exit_deadline(seconds: f64) {
    process::set_exit_deadline(Duration::from_secs_f64(seconds.max(0.0)));
}

fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn undelivered_line(store: &str, reason: &str, lost: Option<Undelivered>) -> String {
    let store = crate::uri::redacted(store);
    let Some(lost) = lost else {
        return format!(
            "fastflow: logged data was not delivered to {store} before exit ({reason}); the \
             spool is off (FASTFLOW_SPOOL=0), so it is lost"
        );
    };
    let dir = lost
        .dir
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let missing = lost.records - lost.kept;
    let mut line = format!(
        "fastflow: {} logged points were not delivered to {store} before exit ({reason}); ",
        count(lost.records)
    );
    if lost.kept > 0 {
        line.push_str(&format!(
            "{} are kept in {dir}: run fastflow.sync() with this store (or open it again with \
             fastflow) to deliver them",
            count(lost.kept)
        ));
    }
    if missing > 0 {
        if lost.kept > 0 {
            line.push_str("; ");
        }
        line.push_str(&format!(
            "{} could not be kept in the spool ({}) and are lost",
            count(missing),
            lost.journal_error.as_deref().unwrap_or("write failed")
        ));
    }
    line
}

/// The end of the process: waits for every store until the exit deadline, folds each
/// SQLite WAL into its database, and removes journals whose contents were delivered.
/// Returns one line per store that did not take everything, for stderr. Ctrl-C stops the
/// wait; what was not delivered stays in the spool.
#[pyfunction]
pub fn _shutdown(py: Python<'_>) -> PyResult<Vec<String>> {
    let mut lines = Vec::new();
    let mut interrupted = false;
    for engine in process::current().outbox_engines() {
        let _ = wait_at_exit(py, &mut interrupted, &engine, |keep| engine.flush(keep));
    }
    for (store, engine) in process::current().named_engines() {
        let mut outcome = wait_at_exit(py, &mut interrupted, &engine, |keep| engine.flush(keep));
        if outcome.is_ok() {
            outcome = wait_at_exit(py, &mut interrupted, &engine, |keep| {
                let answer = engine.submit(|s| s.store.leave(), keep)?;
                Engine::wait(&answer, keep)
            });
            // A checkpoint that could not run leaves a complete store all the same.
            if let Err(Error::Database { .. }) = outcome {
                outcome = Ok(());
            }
        }
        let delivered = outcome.is_ok();
        let lost = py.detach(|| engine.finish(delivered));
        if let Err(error) = outcome {
            let reason = match error {
                Error::Interrupted => "interrupted".to_string(),
                other => other.to_string(),
            };
            if lost.is_some() || !engine.spooled() {
                lines.push(undelivered_line(&store, &reason, lost));
            }
        }
    }
    Ok(lines)
}

/// Waits at exit; a store failure the writer reported meanwhile (a full disk) ends the wait
/// at once instead of at the deadline, and becomes the reason given.
fn wait_at_exit(
    py: Python<'_>,
    interrupted: &mut bool,
    engine: &Engine,
    wait: impl FnOnce(&mut dyn FnMut() -> Result<()>) -> Result<()> + Send,
) -> Result<()> {
    if *interrupted {
        return Err(Error::Interrupted);
    }
    let mut interrupt: Option<PyErr> = None;
    let outcome = py.detach(|| {
        let mut signals = signal_check(&mut interrupt);
        let mut keep_waiting = || match engine.shared.take_error() {
            Some(error) => Err(error),
            None => signals(),
        };
        wait(&mut keep_waiting)
    });
    if interrupt.is_some() {
        *interrupted = true;
    }
    outcome
}

/// Writes what every store of this process still holds (used at interpreter exit).
#[pyfunction]
pub fn _flush_all(py: Python<'_>) -> PyResult<()> {
    let mut first_error = None;
    for engine in process::current().engines() {
        if let Err(err) = flush_engine(py, &engine) {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
}

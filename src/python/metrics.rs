//! The hot path: `log_metric` finds the thread's active run, stamps the point and leaves a
//! 32-byte record in the thread's lane (see `lanes`). Only unusual input (non-float values,
//! explicit steps that need conversion, a full lane, no active run) leaves the fast lane.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyString, PyTuple};
use rustc_hash::FxHashMap;

use super::errors::{raise_pending, to_pyerr, IntoPyResult};
use super::outbox::Outbox;
use super::tracker::{flush_engine, Tracker};
use crate::clock::MillisClock;
use crate::entities::{now_millis, sanitize_metric_value, Number};
use crate::error::{Error, Result};
use crate::lanes::{Lane, Producer};
use crate::process;
use crate::runs::RunSlot;
use crate::validation::{
    self, invalid_value_message, missing_value_message, KeyKind, MAX_METRICS_PER_BATCH,
};
use crate::writer::{Engine, ExactPoint, MetricRecord, Msg, Undelivered};

/// The run that fluent calls on this thread log to, mirrored from the Python run stack.
struct ThreadRun {
    generation: u64,
    engine: Arc<Engine>,
    slot: Arc<RunSlot>,
    /// This thread's lane into the engine: the hot path's points wait there.
    producer: Producer,
    keys: KeyObjects,
    clock: MillisClock,
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

/// Key ids by the identity of the key's str object: a loop passes the same object on every
/// call, and a hit skips reading and hashing the text. Each entry holds its object, so its
/// address cannot be reused by another string while it is cached.
#[derive(Default)]
struct KeyObjects {
    slots: [Option<(Py<PyString>, u32)>; KEY_OBJECTS],
}

const KEY_OBJECTS: usize = 16;

impl KeyObjects {
    #[inline]
    fn slot(key: &Bound<'_, PyString>) -> usize {
        // Objects are 16-byte aligned; the next bits spread neighbours across slots.
        (key.as_ptr() as usize >> 4) % KEY_OBJECTS
    }

    #[inline]
    fn get(&self, key: &Bound<'_, PyString>) -> Option<u32> {
        match &self.slots[Self::slot(key)] {
            Some((cached, id)) if cached.as_ptr() == key.as_ptr() => Some(*id),
            _ => None,
        }
    }

    fn put(&mut self, key: &Bound<'_, PyString>, id: u32) {
        self.slots[Self::slot(key)] = Some((key.clone().unbind(), id));
    }
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
static CONVERT: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static STATEMENT_ERROR: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
static RE_MATCH: PyOnceLock<Py<PyAny>> = PyOnceLock::new();

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

/// Queues points through this thread's lane, so that they keep their order with the points
/// of the hot path; waits (without the GIL) only when the lane fills and the queue is full.
pub fn send_records(py: Python<'_>, engine: &Engine, records: Vec<MetricRecord>) -> PyResult<()> {
    let producer = engine.producer();
    for record in records {
        while !producer.push(record) {
            send_lane(py, engine, producer.lane())?;
        }
    }
    Ok(())
}

fn send_lane(py: Python<'_>, engine: &Engine, lane: &Lane) -> PyResult<()> {
    let mut interrupt = None;
    let result = py.detach(|| engine.send_lane(lane, &mut signal_check(&mut interrupt)));
    result.map_err(|error| raise(py, error, interrupt))
}

/// Whether this thread already has `key` as a valid metric key (checked when first seen).
fn known_key(key: &str) -> bool {
    KEYS.with(|cache| {
        let cache = cache.borrow();
        cache.generation == process::generation() && cache.ids.contains_key(key)
    })
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

/// `json.dumps` as MLflow quotes a bad value; what json cannot encode raises, as in MLflow.
fn dumps(value: &Bound<'_, PyAny>) -> PyResult<String> {
    let py = value.py();
    let dumps = JSON_DUMPS.import(py, "json", "dumps")?;
    let kwargs = PyDict::new(py);
    kwargs.set_item("sort_keys", true)?;
    kwargs.set_item("separators", (",", ":"))?;
    dumps.call((value,), Some(&kwargs))?.extract::<String>()
}

fn invalid(py: Python<'_>, message: String) -> PyErr {
    to_pyerr(py, Error::invalid(message))
}

/// The `TypeError` MLflow's name check raises for a name that is not a str: the check is a
/// Python regex, so Python's `re` words the error.
pub fn not_a_string(py: Python<'_>, name: &Bound<'_, PyAny>) -> PyErr {
    match RE_MATCH
        .import(py, "re", "match")
        .and_then(|m| m.call1(("", name)))
    {
        Err(err) => err,
        Ok(_) => PyTypeError::new_err("expected string or bytes-like object"),
    }
}

/// A metric value as MLflow's client hands it to its store.
pub enum Value<'py> {
    Float(f64),
    /// What `float()` could not convert (a non-numeric string, None): the store refuses it.
    Other(Bound<'py, PyAny>),
}

impl<'py> Value<'py> {
    /// MLflow's client conversion; exact floats and ints never leave Rust.
    pub fn convert(value: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(float) = value.cast_exact::<PyFloat>() {
            return Ok(Value::Float(float.value()));
        }
        if value.is_exact_instance_of::<PyInt>() {
            return value.extract::<f64>().map(Value::Float);
        }
        if value.is_none() {
            return Ok(Value::Other(value.clone()));
        }
        let py = value.py();
        let convert = CONVERT.import(py, "fastflow._values", "metric_value")?;
        let converted = convert.call1((value,))?;
        Ok(match converted.cast_exact::<PyFloat>() {
            Ok(float) => Value::Float(float.value()),
            Err(_) => Value::Other(converted),
        })
    }
}

/// A step or timestamp as given: a 64-bit integer settled at once, or an object that
/// MLflow's checks, then SQLite's binding, decide on.
#[derive(Clone)]
pub enum Given<'py> {
    Int(i64),
    Obj(Bound<'py, PyAny>),
}

impl<'py> Given<'py> {
    pub fn of(value: &Bound<'py, PyAny>) -> Self {
        if value.is_exact_instance_of::<PyInt>() {
            if let Ok(int) = value.extract::<i64>() {
                return Given::Int(int);
            }
        }
        Given::Obj(value.clone())
    }

    /// MLflow's client default: the given value unless it is None.
    pub fn or_else(value: Option<&Bound<'py, PyAny>>, default: impl FnOnce() -> i64) -> Self {
        match value {
            Some(value) if !value.is_none() => Given::of(value),
            _ => Given::Int(default()),
        }
    }

    /// MLflow's fluent default (`step or 0`): any falsy value gives way to the default.
    pub fn or_falsy(
        value: Option<&Bound<'py, PyAny>>,
        default: impl FnOnce() -> i64,
    ) -> PyResult<Self> {
        match value {
            Some(value) if value.is_truthy()? => Ok(Given::of(value)),
            _ => Ok(Given::Int(default())),
        }
    }

    fn text(&self) -> PyResult<String> {
        match self {
            Given::Int(int) => Ok(int.to_string()),
            Given::Obj(obj) => Ok(obj.str()?.to_string()),
        }
    }

    fn dumped(&self) -> PyResult<String> {
        match self {
            Given::Int(int) => Ok(int.to_string()),
            Given::Obj(obj) => dumps(obj),
        }
    }

    fn object(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        match self {
            Given::Int(int) => Ok(int.into_pyobject(py)?.into_any()),
            Given::Obj(obj) => Ok(obj.clone()),
        }
    }
}

fn is_number(value: &Bound<'_, PyAny>) -> PyResult<bool> {
    if value.is_instance_of::<PyInt>() || value.is_instance_of::<PyFloat>() {
        return Ok(true);
    }
    value.is_instance(NUMBER.import(value.py(), "numbers", "Number")?)
}

/// A point MLflow's checks accepted, its step and timestamp still as given: MLflow learns
/// whether SQLite can store them only when it writes, after checking the run.
pub struct Checked<'py> {
    key: u32,
    name: Bound<'py, PyString>,
    value: f64,
    timestamp: Given<'py>,
    step: Given<'py>,
}

/// MLflow's checks of one point, in its order: the name's characters, the value, the
/// timestamp, the step, then the name's length. `path` is where the point sits in a batch
/// (`metrics[3]`), empty for a single one.
pub fn check_metric<'py>(
    py: Python<'py>,
    key: &Bound<'py, PyAny>,
    value: Value<'py>,
    timestamp: Given<'py>,
    step: Given<'py>,
    path: &str,
) -> PyResult<Checked<'py>> {
    let name_path = json_path(path, "name");
    if key.is_none() {
        return Err(invalid(
            py,
            invalid_value_message(
                &name_path,
                "null",
                "Metric name cannot be None. A key name must be provided.",
            ),
        ));
    }
    let Ok(name) = key.cast::<PyString>() else {
        return Err(not_a_string(py, key));
    };
    let text = name.to_cow()?;
    if !known_key(&text) {
        validation::validate_key_name(&text, &name_path).into_py(py)?;
    }
    let value_path = json_path(path, "value");
    let value = match value {
        Value::Float(float) => float,
        Value::Other(other) if other.is_none() => {
            return Err(invalid(py, missing_value_message(&value_path)));
        }
        Value::Other(other) if !other.is_instance_of::<PyBool>() && is_number(&other)? => {
            other.extract::<f64>()?
        }
        Value::Other(other) => {
            let message = format!(
                "(timestamp={}). Please specify value as a valid double (64-bit floating point)",
                timestamp.text()?
            );
            return Err(invalid(
                py,
                invalid_value_message(&value_path, &dumps(&other)?, &message),
            ));
        }
    };
    let bad_timestamp = match &timestamp {
        Given::Int(int) => *int < 0,
        Given::Obj(obj) => !is_number(obj)? || obj.lt(0)?,
    };
    let shown = || PyFloat::new(py, value).str().map(|s| s.to_string());
    if bad_timestamp {
        let message = format!(
            "metric '{text}' (value={}). Timestamp must be a nonnegative long (64-bit integer) ",
            shown()?
        );
        return Err(invalid(
            py,
            invalid_value_message(
                &json_path(path, "timestamp"),
                &timestamp.dumped()?,
                &message,
            ),
        ));
    }
    if let Given::Obj(obj) = &step {
        if !is_number(obj)? {
            let message = format!(
                "metric '{text}' (value={}). Step must be a valid long (64-bit integer).",
                shown()?
            );
            return Err(invalid(
                py,
                invalid_value_message(&json_path(path, "step"), &step.dumped()?, &message),
            ));
        }
    }
    let key = match key_id(&text) {
        Ok(id) => id,
        Err(_) => {
            return Err(to_pyerr(
                py,
                validation::validate_key(KeyKind::Metric, &text, &name_path).unwrap_err(),
            ))
        }
    };
    Ok(Checked {
        key,
        name: name.clone(),
        value,
        timestamp,
        step,
    })
}

/// Why SQLite would not take a step or timestamp MLflow's checks let through.
enum Unstorable {
    /// A type sqlite3 cannot bind (a Decimal, a complex).
    Unbindable,
    /// An int past 64 bits: sqlite3's own OverflowError, which MLflow lets through.
    TooLarge,
    /// NaN, which SQLite stores as NULL in a NOT NULL column.
    Null,
}

/// The number SQLite stores for a step or timestamp. numpy scalars are stored as the
/// numbers they hold (MLflow's sqlite3 binds them as raw bytes, which no reader expects).
fn storable(given: &Given<'_>) -> PyResult<std::result::Result<Number, Unstorable>> {
    let obj = match given {
        Given::Int(int) => return Ok(Ok(Number::Int(*int))),
        Given::Obj(obj) => obj,
    };
    let whole = obj.is_instance_of::<PyInt>()
        || (!obj.is_instance_of::<PyFloat>() && is_buffer(obj) && obj.hasattr("__index__")?);
    if whole {
        return Ok(match obj.extract::<i64>() {
            Ok(int) => Ok(Number::Int(int)),
            Err(_) => Err(Unstorable::TooLarge),
        });
    }
    if obj.is_instance_of::<PyFloat>() || is_buffer(obj) {
        let float = obj.extract::<f64>()?;
        return Ok(if float.is_nan() {
            Err(Unstorable::Null)
        } else {
            Ok(Number::from_f64(float))
        });
    }
    Ok(Err(Unstorable::Unbindable))
}

#[cfg(not(feature = "abi3"))]
fn is_buffer(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: `obj` is a live object and the GIL is held.
    unsafe { pyo3::ffi::PyObject_CheckBuffer(obj.as_ptr()) != 0 }
}

/// Python 3.9's stable ABI cannot ask whether an object has a buffer, only take a view.
#[cfg(feature = "abi3")]
fn is_buffer(obj: &Bound<'_, PyAny>) -> bool {
    let py = obj.py();
    // SAFETY: `obj` is a live object and the GIL is held; the view is released at once.
    unsafe { Bound::from_owned_ptr_or_err(py, pyo3::ffi::PyMemoryView_FromObject(obj.as_ptr())) }
        .is_ok()
}

/// Points ready for the writer: the queue's compact records when every step and timestamp
/// is a 64-bit integer, else the same points with their numbers as they are.
pub enum Stored {
    Queued(Vec<MetricRecord>),
    Exact(Vec<ExactPoint>),
}

/// Fixes each point's step and timestamp as SQLite stores them, refusing the batch as
/// MLflow's store does when SQLite cannot (after the run was checked, as there).
pub fn stored(py: Python<'_>, slot: &RunSlot, points: &[Checked<'_>]) -> PyResult<Stored> {
    let mut exact = Vec::with_capacity(points.len());
    let mut all_int = true;
    for (index, point) in points.iter().enumerate() {
        let timestamp = storable(&point.timestamp)?;
        let step = storable(&point.step)?;
        let (timestamp, step) = match (timestamp, step) {
            (Ok(timestamp), Ok(step)) => (timestamp, step),
            (timestamp, step) => {
                // sqlite3 binds a row's values in order, then SQLite checks its columns.
                let (problem, parameter) = match (timestamp, step) {
                    (Err(p @ (Unstorable::Unbindable | Unstorable::TooLarge)), _) => (p, 3),
                    (_, Err(p @ (Unstorable::Unbindable | Unstorable::TooLarge))) => (p, 4),
                    (Err(p), _) => (p, 3),
                    (_, Err(p)) => (p, 4),
                    (Ok(_), Ok(_)) => unreachable!(),
                };
                return Err(unstorable_error(
                    py, slot, points, index, problem, parameter,
                ));
            }
        };
        all_int &= timestamp.as_int().is_some() && step.as_int().is_some();
        exact.push(ExactPoint {
            run: slot.index,
            key: point.key,
            value: point.value,
            timestamp,
            step,
        });
    }
    if !all_int {
        return Ok(Stored::Exact(exact));
    }
    Ok(Stored::Queued(
        exact
            .into_iter()
            .map(|p| MetricRecord {
                run: p.run,
                key: p.key,
                value: p.value,
                timestamp: p.timestamp.as_int().unwrap_or(0),
                step: p.step.as_int().unwrap_or(0),
            })
            .collect(),
    ))
}

fn unstorable_error(
    py: Python<'_>,
    slot: &RunSlot,
    points: &[Checked<'_>],
    bad_row: usize,
    problem: Unstorable,
    parameter: usize,
) -> PyErr {
    if let Unstorable::TooLarge = problem {
        return to_pyerr(
            py,
            Error::Internal("Python int too large to convert to SQLite INTEGER".into()),
        );
    }
    let message = (|| -> PyResult<String> {
        let mut rows = Vec::with_capacity(points.len());
        for point in points {
            let (value, is_nan) = sanitize_metric_value(point.value);
            rows.push(PyTuple::new(
                py,
                [
                    point.name.clone().into_any(),
                    PyFloat::new(py, value).into_any(),
                    point.timestamp.object(py)?,
                    point.step.object(py)?,
                    (is_nan as i64).into_pyobject(py)?.into_any(),
                    PyString::new(py, &slot.id).into_any(),
                ],
            )?);
        }
        STATEMENT_ERROR
            .import(py, "fastflow._values", "statement_error")?
            .call1(("metrics", rows, bad_row, parameter))?
            .extract()
    })();
    match message {
        Ok(message) => to_pyerr(py, Error::BadRequest(message)),
        Err(err) => err,
    }
}

/// Sends stored points: records through the queue; exact points are written at once,
/// after what is queued, by the store's writer.
pub fn send_stored(py: Python<'_>, engine: &Arc<Engine>, stored: Stored) -> PyResult<()> {
    match stored {
        Stored::Queued(records) => send_records(py, engine, records),
        Stored::Exact(points) => {
            if !engine.takes_jobs() {
                return Err(invalid(
                    py,
                    "fastflow passes only whole-number steps and timestamps on to another \
                     process; this step or timestamp is not one"
                        .into(),
                ));
            }
            super::tracker::run_job(py, engine, move |s| s.write_exact(&points))
        }
    }
}

/// Where MLflow says a metric of a batch sits: `metrics[3]`.
pub fn entry_path(index: usize) -> String {
    format!("metrics[{index}]")
}

/// A metric of `log_batch` as Python hands it over: (key, value, timestamp, step), the
/// value as MLflow's client converted it.
pub type BatchMetric<'py> = (
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
    Bound<'py, PyAny>,
);

/// MLflow's store checks of a batch's metrics, each named by its place in the batch.
pub fn check_batch<'py>(
    py: Python<'py>,
    metrics: &[BatchMetric<'py>],
) -> PyResult<Vec<Checked<'py>>> {
    let mut checked = Vec::with_capacity(metrics.len());
    for (index, (key, value, timestamp, step)) in metrics.iter().enumerate() {
        checked.push(check_metric(
            py,
            key,
            Value::convert(value)?,
            Given::of(timestamp),
            Given::of(step),
            &entry_path(index),
        )?);
    }
    Ok(checked)
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
    try_fast_keys(key, value, step, true)
}

/// `try_fast` for callers outside PyO3's call guard (see `fast_entry`): they may not keep a
/// new key object (that would drop a Python reference without the guard), so a key not
/// cached yet declines the fast lane.
#[inline]
pub(super) fn try_fast_known_key(
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    step: Option<&Bound<'_, PyAny>>,
) -> bool {
    matches!(try_fast_keys(key, value, step, false), Fast::Sent)
}

#[inline(always)]
fn try_fast_keys(
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    step: Option<&Bound<'_, PyAny>>,
    learn_keys: bool,
) -> Fast {
    ACTIVE.with(|cell| {
        let Ok(mut active) = cell.try_borrow_mut() else {
            return Fast::Slow;
        };
        let Some(run) = active.as_mut() else {
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
        let value = if let Ok(float) = value.cast_exact::<PyFloat>() {
            float.value()
        } else if value.is_exact_instance_of::<PyInt>() {
            // MLflow stores `float(value)`; an int past a double's range takes the slow
            // path, which raises Python's OverflowError as MLflow does.
            match value.extract::<f64>() {
                Ok(float) => float,
                Err(_) => return Fast::Slow,
            }
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
        let key = match run.keys.get(key) {
            Some(id) => id,
            None if !learn_keys => return Fast::Slow,
            None => {
                let Ok(id) = key
                    .to_cow()
                    .map_err(|_| ())
                    .and_then(|k| key_id(&k).map_err(|_| ()))
                else {
                    return Fast::Slow;
                };
                run.keys.put(key, id);
                id
            }
        };
        let record = MetricRecord {
            run: run.slot.index,
            key,
            value,
            timestamp: run.clock.now(),
            step,
        };
        if run.producer.push(record) {
            Fast::Sent
        } else {
            Fast::Slow
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
pub(crate) enum Sink<'py> {
    Store(Bound<'py, Tracker>),
    Outbox(Bound<'py, Outbox>),
}

impl<'py> Sink<'py> {
    pub(crate) fn of(tracker: &Bound<'py, PyAny>) -> PyResult<Self> {
        if let Ok(store) = tracker.cast::<Tracker>() {
            return Ok(Sink::Store(store.clone()));
        }
        let outbox = tracker.getattr("_outbox")?;
        Ok(Sink::Outbox(outbox.cast_into::<Outbox>()?))
    }

    pub(crate) fn engine(&self, py: Python<'_>) -> PyResult<Arc<Engine>> {
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
    // The fast lane declines a run that logged models (see `links_a_model`).
    if synchronous.is_none()
        && timestamp.is_none()
        && run_id.is_none()
        && model_id.is_none()
        && dataset.is_none()
    {
        if let Fast::Sent = try_fast(key, value, step) {
            return Ok(None);
        }
    }
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
    let (engine, slot) = resolve_target(py, run_id)?;
    raise_pending(py, &engine)?;
    // MLflow's fluent defaults (`timestamp or now`, `step or 0`), then its client's
    // conversion, then its store's checks; the run's state is checked last, as there.
    let timestamp = Given::or_falsy(timestamp, now_millis)?;
    let step = Given::or_falsy(step, || 0)?;
    let checked = check_metric(py, key, Value::convert(value)?, timestamp, step, "")?;
    slot.check_active().into_py(py)?;
    let points = stored(py, &slot, std::slice::from_ref(&checked))?;
    send_stored(py, &engine, points)?;
    after_send(py, &engine, synchronous)
}

#[pyfunction]
#[pyo3(signature = (metrics, step=None, synchronous=None, run_id=None, timestamp=None, model_id=None, dataset=None))]
#[allow(clippy::too_many_arguments)]
pub fn log_metrics(
    py: Python<'_>,
    metrics: &Bound<'_, PyAny>,
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
    // As MLflow: one timestamp for the whole dict; every value converted before any is
    // checked; then chunks of at most 1,000 points, each checked and logged in turn.
    let timestamp = Given::or_falsy(timestamp, now_millis)?;
    let step = Given::or_falsy(step, || 0)?;
    let mut entries = Vec::new();
    for item in metrics.call_method0("items")?.try_iter()? {
        let (key, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = item?.extract()?;
        entries.push((key, value));
    }
    if entries.is_empty() {
        return Ok(None);
    }
    let mut converted = Vec::with_capacity(entries.len());
    for (key, value) in &entries {
        converted.push((key, Value::convert(value)?));
    }
    let mut converted = converted.into_iter();
    loop {
        let chunk: Vec<_> = converted.by_ref().take(MAX_METRICS_PER_BATCH).collect();
        if chunk.is_empty() {
            break;
        }
        let mut checked = Vec::with_capacity(chunk.len());
        for (index, (key, value)) in chunk.into_iter().enumerate() {
            checked.push(check_metric(
                py,
                key,
                value,
                timestamp.clone(),
                step.clone(),
                &entry_path(index),
            )?);
        }
        slot.check_active().into_py(py)?;
        let points = stored(py, &slot, &checked)?;
        send_stored(py, &engine, points)?;
    }
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
                producer: engine.producer(),
                keys: KeyObjects::default(),
                clock: MillisClock::default(),
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
    crate::lanes::forget_in_child();
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

/// Commits what every store of this process still holds, without waiting for the disk.
#[pyfunction]
pub fn _make_visible_all(py: Python<'_>) -> PyResult<()> {
    let mut first_error = None;
    for engine in process::current().engines() {
        if let Err(err) = super::tracker::make_visible_engine(py, &engine) {
            first_error.get_or_insert(err);
        }
    }
    first_error.map_or(Ok(()), Err)
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

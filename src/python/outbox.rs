//! `Outbox` and `Packet`: the worker side of the Ray funnel. Logging calls feed the outbox's
//! engine through the same hot path as a store's; a shipping thread takes packets out and
//! settles each one once the receiving process has it.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::{raise_pending, to_pyerr, IntoPyResult};
use super::metrics::{self, send_stored, BatchMetric, Given, Value};
use crate::entities::now_millis;
use crate::error::Error;
use crate::outbox::{self, Drained};
use crate::process;
use crate::runs::RunSlot;
use crate::writer::{Config, Engine, Shared};

#[pyclass(module = "fastflow._fastflow", frozen)]
pub struct Outbox {
    pub engine: Arc<Engine>,
    drain: Mutex<outbox::Outbox>,
}

impl Outbox {
    /// The slot of a run the Python side registered (it asks the store owner first).
    pub fn run_slot(&self, py: Python<'_>, run_id: &str) -> PyResult<Arc<RunSlot>> {
        self.engine.runs.get(run_id).ok_or_else(|| {
            to_pyerr(
                py,
                Error::not_found(format!("Run with id={run_id} not found")),
            )
        })
    }
}

#[pymethods]
impl Outbox {
    #[new]
    fn new() -> Self {
        let (engine, drain) = outbox::open(process::current().interner.clone(), Config::from_env());
        let engine = Arc::new(engine);
        process::current().adopt_outbox(engine.clone());
        Outbox {
            engine,
            drain: Mutex::new(drain),
        }
    }

    #[pyo3(signature = (run_id, active=true))]
    fn register_run(&self, run_id: &str, active: bool) {
        self.engine.runs.register(run_id, active);
    }

    fn is_registered(&self, run_id: &str) -> bool {
        self.engine.runs.get(run_id).is_some()
    }

    #[pyo3(signature = (run_id, key, value, timestamp=None, step=None))]
    fn log_metric(
        &self,
        py: Python<'_>,
        run_id: &str,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        timestamp: Option<&Bound<'_, PyAny>>,
        step: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        raise_pending(py, &self.engine)?;
        let timestamp = Given::or_else(timestamp, now_millis);
        let step = Given::or_else(step, || 0);
        let checked = metrics::check_metric(py, key, Value::convert(value)?, timestamp, step, "")?;
        let slot = self.run_slot(py, run_id)?;
        slot.check_active().into_py(py)?;
        let points = metrics::stored(py, &slot, std::slice::from_ref(&checked))?;
        send_stored(py, &self.engine, points)
    }

    /// The metrics of a `log_batch`, all validated before any is queued; with `check_only`,
    /// validated and not queued (a batch is refused whole, before its params are written).
    #[pyo3(signature = (run_id, metrics, check_only=false))]
    fn log_metrics(
        &self,
        py: Python<'_>,
        run_id: &str,
        metrics: Vec<BatchMetric<'_>>,
        check_only: bool,
    ) -> PyResult<()> {
        raise_pending(py, &self.engine)?;
        let checked = metrics::check_batch(py, &metrics)?;
        let slot = self.run_slot(py, run_id)?;
        slot.check_active().into_py(py)?;
        let points = metrics::stored(py, &slot, &checked)?;
        if check_only {
            return Ok(());
        }
        send_stored(py, &self.engine, points)
    }

    /// Waits until everything logged here is durable in the receiving process's store.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        super::tracker::flush_engine(py, &self.engine)
    }

    /// The next packet to ship, or None after `idle_seconds` with nothing to ship.
    fn next_packet(&self, py: Python<'_>, idle_seconds: f64) -> PyResult<Option<Packet>> {
        let idle = Duration::from_secs_f64(idle_seconds.max(0.0));
        let drained = py
            .detach(|| self.drain.lock().next_packet(idle))
            .into_py(py)?;
        Ok(match drained {
            Drained::Packet(packet) => Some(Packet {
                shared: self.engine.shared.clone(),
                inner: Mutex::new(Some(packet)),
            }),
            Drained::Idle | Drained::Closed => None,
        })
    }
}

#[pyclass(module = "fastflow._fastflow", frozen)]
pub struct Packet {
    shared: Arc<Shared>,
    inner: Mutex<Option<outbox::Packet>>,
}

impl Packet {
    fn read<T>(&self, f: impl FnOnce(&outbox::Packet) -> T) -> PyResult<T> {
        match self.inner.lock().as_ref() {
            Some(packet) => Ok(f(packet)),
            None => Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this packet was already settled",
            )),
        }
    }
}

#[pymethods]
impl Packet {
    #[getter]
    fn run_ids(&self) -> PyResult<Vec<String>> {
        self.read(|p| p.run_ids.iter().map(|id| id.to_string()).collect())
    }

    #[getter]
    fn keys(&self) -> PyResult<Vec<String>> {
        self.read(|p| p.keys.iter().map(|k| k.to_string()).collect())
    }

    #[getter]
    fn records<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.read(|p| PyBytes::new(py, &p.records))
    }

    /// Whether a caller waits for this packet to be durable at the receiver.
    #[getter]
    fn durable(&self) -> PyResult<bool> {
        self.read(|p| p.durable())
    }

    fn __len__(&self) -> PyResult<usize> {
        self.read(|p| p.len())
    }

    /// Reports how delivery went: `error` is None, or MLflow's (message, error code). With
    /// nobody waiting, a failure is raised by the next logging call instead.
    #[pyo3(signature = (error=None))]
    fn settle(&self, error: Option<(String, String)>) {
        let Some(packet) = self.inner.lock().take() else {
            return;
        };
        let outcome = match error {
            None => Ok(()),
            Some((message, code)) => Err(Error::from_code(&code, message)),
        };
        if let Err(error) = &outcome {
            if !packet.durable() {
                self.shared.report(error.clone());
            }
        }
        packet.settle(&outcome);
    }
}

//! Glue for `system_metrics`: a sampler thread per run that logs into the run's engine.

use parking_lot::Mutex;
use pyo3::prelude::*;

use super::metrics::Sink;
use crate::clock::now_millis;
use crate::process;
use crate::system_metrics::{Sampler, Schedule};
use crate::writer::{MetricRecord, Msg};

/// `start_run(log_system_metrics=True)`'s sampler for one run; `stop()` at the run's end.
#[pyclass(module = "fastflow._fastflow", frozen)]
pub struct SystemMetricsSampler {
    sampler: Mutex<Option<Sampler>>,
    /// The process that started the thread: a forked child has no such thread to stop.
    pid: u32,
}

#[pymethods]
impl SystemMetricsSampler {
    #[new]
    #[pyo3(signature = (tracker, run_id, interval, samples_before_logging, prefix, first_step))]
    fn new(
        py: Python<'_>,
        tracker: &Bound<'_, PyAny>,
        run_id: &str,
        interval: f64,
        samples_before_logging: u32,
        prefix: String,
        first_step: i64,
    ) -> PyResult<Self> {
        let engine = Sink::of(tracker)?.engine(py)?;
        let slot = engine.runs.register(run_id, true);
        let interner = process::current().interner.clone();
        let schedule = Schedule {
            interval: std::time::Duration::try_from_secs_f64(interval.max(0.0))
                .map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?,
            samples_before_logging,
            prefix,
            first_step,
        };
        let publish = Box::new(move |metrics: Vec<(String, f64)>, step: i64| {
            if slot.check_active().is_err() {
                return false;
            }
            let timestamp = now_millis();
            let records: Vec<MetricRecord> = metrics
                .iter()
                .filter_map(|(name, value)| {
                    let key = interner.intern_metric_key(name).ok()?;
                    Some(MetricRecord {
                        run: slot.index,
                        key,
                        value: *value,
                        timestamp,
                        step,
                    })
                })
                .collect();
            engine.send(Msg::Block(records), &mut || Ok(())).is_ok()
        });
        let sampler = Sampler::start(schedule, publish)?;
        Ok(SystemMetricsSampler {
            sampler: Mutex::new(Some(sampler)),
            pid: std::process::id(),
        })
    }

    /// Ends the thread; samples not published yet are dropped, as MLflow's monitor does.
    fn stop(&self, py: Python<'_>) {
        let taken = self.sampler.lock().take();
        if let Some(mut sampler) = taken {
            if self.pid == std::process::id() {
                py.detach(move || sampler.stop());
            } else {
                std::mem::forget(sampler);
            }
        }
    }
}

impl Drop for SystemMetricsSampler {
    fn drop(&mut self) {
        if let Some(sampler) = self.sampler.get_mut().take() {
            if self.pid == std::process::id() {
                drop(sampler);
            } else {
                std::mem::forget(sampler);
            }
        }
    }
}

//! The `fastflow._fastflow` extension module.

mod artifacts;
mod errors;
mod fast_entry;
mod metrics;
mod outbox;
mod sqlite_check;
mod system_metrics;
mod tracker;
mod workspace;

use pyo3::prelude::*;

/// A step or timestamp reaches Python as the int or float the store holds.
impl<'py> IntoPyObject<'py> for crate::entities::Number {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(match self {
            crate::entities::Number::Int(i) => i.into_pyobject(py)?.into_any(),
            crate::entities::Number::Real(f) => f.into_pyobject(py)?.into_any(),
        })
    }
}

#[pymodule]
fn _fastflow(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // As early as fastflow runs: before anything else in the process starts SQLite.
    crate::sqlite_library::skip_memory_statistics();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add("ALEMBIC_HEAD", crate::schema::ALEMBIC_HEAD)?;
    m.add_class::<tracker::Tracker>()?;
    m.add_class::<outbox::Outbox>()?;
    m.add_class::<outbox::Packet>()?;
    m.add_class::<system_metrics::SystemMetricsSampler>()?;
    fast_entry::add_log_metric(m)?;
    m.add_function(wrap_pyfunction!(metrics::log_metrics, m)?)?;
    m.add_function(wrap_pyfunction!(tracker::_spool_survey, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_set_thread_run, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_before_fork, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_after_fork_in_parent, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_set_exit_deadline, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_shutdown, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_flush_all, m)?)?;
    m.add_function(wrap_pyfunction!(metrics::_make_visible_all, m)?)?;
    m.add_function(wrap_pyfunction!(tracker::_validate_batch_limits, m)?)?;
    m.add_function(wrap_pyfunction!(tracker::_check_run_id, m)?)?;
    m.add_function(wrap_pyfunction!(sqlite_check::_sqlite_library, m)?)?;
    m.add_function(wrap_pyfunction!(workspace::_register_workspace, m)?)?;
    m.add_function(wrap_pyfunction!(artifacts::_log_artifact, m)?)?;
    m.add_function(wrap_pyfunction!(artifacts::_log_artifacts, m)?)?;
    m.add_function(wrap_pyfunction!(artifacts::_list_artifacts, m)?)?;
    m.add_function(wrap_pyfunction!(artifacts::_download_artifacts, m)?)?;
    m.add_function(wrap_pyfunction!(artifacts::_local_artifact_path, m)?)?;
    Ok(())
}

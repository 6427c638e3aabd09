//! An empty `log_metric` with fastflow's signature: the floor under fastflow's hot call. What
//! it costs is CPython's vectorcall plus PyO3's argument parsing and extraction, which any
//! PyO3 function of this signature pays. fastflow's `log_metric` recognises the shapes a
//! training loop calls in before PyO3 parses anything (`src/python/fast_entry.rs`), and
//! takes PyO3's path for every other call.

use pyo3::prelude::*;

/// Takes and extracts the arguments exactly as fastflow's `log_metric` declares them
/// (`src/python/metrics.rs`): keep the two signatures identical, or the floor moves.
#[pyfunction]
#[pyo3(signature = (key, value, step=None, synchronous=None, timestamp=None, run_id=None, model_id=None, dataset=None))]
#[allow(clippy::too_many_arguments)]
pub fn log_metric(
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    step: Option<&Bound<'_, PyAny>>,
    synchronous: Option<bool>,
    timestamp: Option<&Bound<'_, PyAny>>,
    run_id: Option<&str>,
    model_id: Option<&Bound<'_, PyAny>>,
    dataset: Option<&Bound<'_, PyAny>>,
) -> PyResult<Option<Py<PyAny>>> {
    // black_box keeps the optimizer from dropping the extractions that fastflow cannot skip.
    std::hint::black_box((
        key,
        value,
        step,
        synchronous,
        timestamp,
        run_id,
        model_id,
        dataset,
    ));
    Ok(None)
}

#[pymodule]
fn _floor(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(log_metric, m)?)
}

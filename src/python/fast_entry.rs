//! `log_metric`'s entry point from Python.
//!
//! PyO3's wrapper parses the whole eight-parameter signature on every call, which is most of
//! what a call costs before fastflow does anything. A training loop calls in three shapes:
//! `(key, value)`, `(key, value, step)` and `(key, value, step=...)`. This entry recognises
//! them from the argument count and the keyword names alone and leaves the point in the
//! thread's lane (see `metrics::try_fast_known_key`). Every other call, and every point the
//! fast lane declines, goes to the PyO3 function unchanged, with MLflow's parsing, checks
//! and errors.

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;

use pyo3::exceptions::PyRuntimeError;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyString;
use pyo3::Borrowed;

use super::metrics::{self, try_fast_known_key};

/// The PyO3 function: what the entry hands calls to.
static FULL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
/// `"step"`, interned: keyword names compiled into a caller's code are interned, so a
/// pointer comparison usually settles it.
static STEP: PyOnceLock<Py<PyString>> = PyOnceLock::new();

/// Adds `log_metric` to the module: this entry, with the PyO3 function's signature.
pub fn add_log_metric(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let full = wrap_pyfunction!(metrics::log_metric, module)?;
    let signature: String = full.getattr("__text_signature__")?.extract()?;
    // CPython reads a builtin's signature from the head of its doc string.
    let doc = CString::new(format!("log_metric{signature}\n--\n\n"))?;
    let _ = STEP.set(py, PyString::intern(py, "step").unbind());
    let _ = FULL.set(py, full.into_any().unbind());
    // The definition must outlive the function object, which lives as long as the module.
    #[cfg(not(feature = "abi3"))]
    let (ml_meth, ml_flags) = (
        ffi::PyMethodDefPointer {
            PyCFunctionFastWithKeywords: log_metric_entry,
        },
        ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    );
    // Python 3.9's stable ABI has no vectorcall: arguments come as a tuple and a dict.
    #[cfg(feature = "abi3")]
    let (ml_meth, ml_flags) = (
        ffi::PyMethodDefPointer {
            PyCFunctionWithKeywords: log_metric_entry_tuple,
        },
        ffi::METH_VARARGS | ffi::METH_KEYWORDS,
    );
    let definition = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"log_metric".as_ptr(),
        ml_meth,
        ml_flags,
        ml_doc: doc.into_raw(),
    }));
    let module_name = module.name()?;
    // SAFETY: `definition` is 'static; a NULL self and class make a module-level function.
    let function = unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyCMethod_New(
                definition,
                ptr::null_mut(),
                module_name.as_ptr(),
                ptr::null_mut(),
            ),
        )?
    };
    module.add("log_metric", function)
}

/// A new reference to None, for the caller to own (`Py_NewRef` is Python 3.10's).
fn new_none() -> *mut ffi::PyObject {
    // SAFETY: called attached to the interpreter, by the entries.
    unsafe {
        let none = ffi::Py_None();
        ffi::Py_INCREF(none);
        none
    }
}

#[cfg(not(feature = "abi3"))]
/// Where the step is among the arguments, for the shapes the fast lane takes: `Some(None)`
/// for no step, `Some(Some(2))` for the third argument.
///
/// # Safety
/// `kwnames` is NULL or a tuple of str, as CPython passes it.
unsafe fn step_position(
    py: Python<'_>,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> Option<Option<usize>> {
    if kwnames.is_null() {
        return match nargs {
            2 => Some(None),
            3 => Some(Some(2)),
            _ => None,
        };
    }
    // SAFETY: kwnames is a tuple (the caller's contract).
    if nargs != 2 || unsafe { ffi::PyTuple_Size(kwnames) } != 1 {
        return None;
    }
    // SAFETY: the tuple has one item.
    let name = unsafe { ffi::PyTuple_GetItem(kwnames, 0) };
    let step = STEP.get(py)?.as_ptr();
    // SAFETY: `name` is a str (CPython's keyword names always are).
    let is_step = name == step
        || unsafe { ffi::PyUnicode_CompareWithASCIIString(name, c"step".as_ptr()) } == 0;
    is_step.then_some(Some(2))
}

#[cfg(not(feature = "abi3"))]
/// # Safety
/// Called by CPython as a METH_FASTCALL | METH_KEYWORDS function: attached to the
/// interpreter, `args` holding `nargs` positional values followed by one value per name in
/// `kwnames`.
unsafe extern "C" fn log_metric_entry(
    _module: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this attached (see above).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: kwnames as CPython passes it.
    if let Some(step_at) = unsafe { step_position(py, nargs, kwnames) } {
        // SAFETY: every index used is below nargs plus the number of keyword names.
        let arg = |at: usize| unsafe { Borrowed::from_ptr(py, *args.add(at)) };
        let sent = catch_unwind(AssertUnwindSafe(|| {
            let step = step_at.map(arg);
            try_fast_known_key(&arg(0), &arg(1), step.as_deref())
        }));
        if let Ok(true) = sent {
            return new_none();
        }
    }
    match FULL.get(py) {
        // SAFETY: the arguments go on exactly as they came.
        Some(full) => unsafe {
            ffi::PyObject_Vectorcall(full.as_ptr(), args, nargs as usize, kwnames)
        },
        None => {
            PyRuntimeError::new_err("fastflow's log_metric is not initialised").restore(py);
            ptr::null_mut()
        }
    }
}

/// The entry under the stable ABI of Python 3.9, for the same three shapes.
///
/// # Safety
/// Called by CPython as a METH_VARARGS | METH_KEYWORDS function: attached to the
/// interpreter, `args` a tuple and `kwargs` NULL or a dict.
#[cfg(feature = "abi3")]
unsafe extern "C" fn log_metric_entry_tuple(
    _module: *mut ffi::PyObject,
    args: *mut ffi::PyObject,
    kwargs: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls this attached (see above).
    let py = unsafe { Python::assume_attached() };
    // SAFETY: `args` is a tuple and `kwargs` NULL or a dict (the caller's contract).
    let nargs = unsafe { ffi::PyTuple_Size(args) };
    let step = if kwargs.is_null() {
        match nargs {
            2 => Some(None),
            // SAFETY: index 2 of a tuple of three.
            3 => Some(Some(unsafe { ffi::PyTuple_GetItem(args, 2) })),
            _ => None,
        }
    } else if nargs == 2 && unsafe { ffi::PyDict_Size(kwargs) } == 1 {
        STEP.get(py).and_then(|name| {
            // SAFETY: a borrowed reference, or NULL when the one keyword is not `step`.
            let value = unsafe { ffi::PyDict_GetItem(kwargs, name.as_ptr()) };
            (!value.is_null()).then_some(Some(value))
        })
    } else {
        None
    };
    if let Some(step) = step {
        // SAFETY: items of the live tuple and dict, borrowed for this call.
        let arg = |item: *mut ffi::PyObject| unsafe { Borrowed::from_ptr(py, item) };
        let sent = catch_unwind(AssertUnwindSafe(|| {
            // SAFETY: the tuple has at least two items.
            let (key, value) =
                unsafe { (ffi::PyTuple_GetItem(args, 0), ffi::PyTuple_GetItem(args, 1)) };
            let step = step.map(arg);
            try_fast_known_key(&arg(key), &arg(value), step.as_deref())
        }));
        if let Ok(true) = sent {
            return new_none();
        }
    }
    match FULL.get(py) {
        // SAFETY: the arguments go on exactly as they came.
        Some(full) => unsafe { ffi::PyObject_Call(full.as_ptr(), args, kwargs) },
        None => {
            PyRuntimeError::new_err("fastflow's log_metric is not initialised").restore(py);
            ptr::null_mut()
        }
    }
}

//! fastflow: MLflow-compatible experiment tracking whose logging calls only hand a record to
//! a batched background writer.
//!
//! The core (store, writer, validation, errors) is plain Rust; `python` is the PyO3 layer,
//! built only with the `python` feature.

pub mod artifacts;
pub mod backend;
pub mod checkpointer;
pub mod clock;
pub mod entities;
pub mod error;
pub mod filter;
pub mod interner;
pub mod lanes;
pub mod outbox;
pub mod process;
pub mod rest;
pub mod rest_store;
pub mod run_columns;
pub mod runs;
pub mod schema;
pub mod search;
pub mod series;
pub mod spool;
pub mod sqlite_library;
pub mod store;
pub mod system_metrics;
pub mod uri;
pub mod validation;
pub mod workspace;
pub mod writer;

#[cfg(feature = "python")]
mod python;

pub use error::{Error, ErrorCode, Result};

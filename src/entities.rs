//! Plain values read from and written to the store, shaped like MLflow's entities.

use std::time::{SystemTime, UNIX_EPOCH};

pub const LIFECYCLE_ACTIVE: &str = "active";
pub const LIFECYCLE_DELETED: &str = "deleted";
pub const RUN_NAME_TAG: &str = "mlflow.runName";
pub const RUN_STATUSES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

pub fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: Option<i64>,
    pub last_update_time: Option<i64>,
    pub tags: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    pub run_id: String,
    pub experiment_id: String,
    pub run_name: String,
    pub user_id: String,
    pub status: String,
    pub start_time: Option<i64>,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub info: RunInfo,
    /// The latest value of each metric, as `latest_metrics` holds it.
    pub metrics: Vec<Metric>,
    pub params: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    /// Left empty by readers that were not asked for it (see `Backend::get_run_with_io`).
    pub io: RunIo,
}

/// A dataset as MLflow's `datasets` table and its `Dataset` entity hold it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Dataset {
    pub name: String,
    pub digest: String,
    pub source_type: String,
    pub source: String,
    pub schema: Option<String>,
    pub profile: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct DatasetInput {
    pub dataset: Dataset,
    /// `input_tags`: (key, value).
    pub tags: Vec<(String, String)>,
}

/// What a run used and produced: `run.inputs` and `run.outputs` of MLflow's `get_run`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunIo {
    pub dataset_inputs: Vec<DatasetInput>,
    /// Ids of logged models the run took as input.
    pub model_inputs: Vec<String>,
    /// (model id, step) of logged models the run produced.
    pub model_outputs: Vec<(String, i64)>,
}

/// How MLflow stores a metric value: NaN as `(0, is_nan)`, infinities clamped to the
/// largest finite doubles.
pub fn sanitize_metric_value(value: f64) -> (f64, bool) {
    if value.is_nan() {
        (0.0, true)
    } else if value == f64::INFINITY {
        (f64::MAX, false)
    } else if value == f64::NEG_INFINITY {
        (f64::MIN, false)
    } else {
        (value, false)
    }
}

pub fn stored_metric_value(value: f64, is_nan: bool) -> f64 {
    if is_nan {
        f64::NAN
    } else {
        value
    }
}

pub fn validate_status(status: &str) -> crate::Result<()> {
    if RUN_STATUSES.contains(&status) {
        Ok(())
    } else {
        Err(crate::Error::invalid(format!(
            "Could not get run status corresponding to string {status}. Valid run status \
             strings: {RUN_STATUSES:?}"
        )))
    }
}

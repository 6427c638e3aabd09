//! Plain values read from and written to the store, shaped like MLflow's entities.

pub const LIFECYCLE_ACTIVE: &str = "active";
pub const LIFECYCLE_DELETED: &str = "deleted";
pub const RUN_NAME_TAG: &str = "mlflow.runName";
pub const RUN_STATUSES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

pub use crate::clock::now_millis;

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: Option<i64>,
    pub last_update_time: Option<i64>,
    /// A tag's value is NULL when `create_experiment` was given `None` for it.
    pub tags: Vec<(String, Option<String>)>,
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

/// A metric's step or timestamp as the store holds it. MLflow writes whatever number it is
/// given into these BIGINT columns, and SQLite keeps a float that is not a whole number (or
/// is out of the 64-bit range) as a REAL; MLflow reads it back as a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Int(i64),
    Real(f64),
}

impl Number {
    /// The value SQLite stores for a float bound to an INTEGER-affinity column: an integer
    /// when the float is one exactly, else the float.
    pub fn from_f64(value: f64) -> Number {
        // 2^63 itself does not fit; every float below it that is a whole number does.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if value.fract() == 0.0 && (-LIMIT..LIMIT).contains(&value) {
            Number::Int(value as i64)
        } else {
            Number::Real(value)
        }
    }

    pub fn as_int(self) -> Option<i64> {
        match self {
            Number::Int(i) => Some(i),
            Number::Real(_) => None,
        }
    }

    /// Orders as SQLite and Python compare an integer with a float: by numeric value.
    pub fn cmp_value(self, other: Number) -> std::cmp::Ordering {
        use std::cmp::Ordering;
        match (self, other) {
            (Number::Int(a), Number::Int(b)) => a.cmp(&b),
            (Number::Real(a), Number::Real(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
            (Number::Int(a), Number::Real(b)) => cmp_int_real(a, b),
            (Number::Real(a), Number::Int(b)) => cmp_int_real(b, a).reverse(),
        }
    }
}

fn cmp_int_real(int: i64, real: f64) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    if real.is_nan() {
        return Ordering::Equal;
    }
    let floor = real.floor();
    // Past the i64 range the float wins outright; inside it, compare whole parts exactly.
    if floor >= 9_223_372_036_854_775_808.0 {
        return Ordering::Less;
    }
    if floor < -9_223_372_036_854_775_808.0 {
        return Ordering::Greater;
    }
    match int.cmp(&(floor as i64)) {
        Ordering::Equal if real > floor => Ordering::Less,
        other => other,
    }
}

impl From<i64> for Number {
    fn from(value: i64) -> Self {
        Number::Int(value)
    }
}

impl rusqlite::types::ToSql for Number {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match *self {
            Number::Int(i) => rusqlite::types::ToSqlOutput::from(i),
            Number::Real(f) => rusqlite::types::ToSqlOutput::from(f),
        })
    }
}

impl rusqlite::types::FromSql for Number {
    fn column_result(value: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<Self> {
        match value {
            rusqlite::types::ValueRef::Integer(i) => Ok(Number::Int(i)),
            rusqlite::types::ValueRef::Real(f) => Ok(Number::Real(f)),
            _ => Err(rusqlite::types::FromSqlError::InvalidType),
        }
    }
}

impl serde::Serialize for Number {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match *self {
            Number::Int(i) => serializer.serialize_i64(i),
            Number::Real(f) => serializer.serialize_f64(f),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: Number,
    pub step: Number,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub info: RunInfo,
    /// The latest value of each metric, as `latest_metrics` holds it.
    pub metrics: Vec<Metric>,
    pub params: Vec<(String, String)>,
    /// A tag's value is NULL when MLflow's `log_batch` was given `None` for it.
    pub tags: Vec<(String, Option<String>)>,
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

#[cfg(test)]
mod tests {
    use super::Number;
    use std::cmp::Ordering;

    const TWO_63: f64 = 9_223_372_036_854_775_808.0;

    #[test]
    fn floats_become_integers_as_sqlite_stores_them() {
        assert_eq!(Number::from_f64(2.0), Number::Int(2));
        assert_eq!(Number::from_f64(-0.0), Number::Int(0));
        assert_eq!(Number::from_f64(1.5), Number::Real(1.5));
        assert_eq!(Number::from_f64(1e20), Number::Real(1e20));
        assert_eq!(Number::from_f64(-TWO_63), Number::Int(i64::MIN));
        assert_eq!(Number::from_f64(TWO_63), Number::Real(TWO_63));
        assert!(matches!(Number::from_f64(f64::INFINITY), Number::Real(_)));
    }

    #[test]
    fn mixed_numbers_compare_by_value() {
        assert_eq!(Number::Int(1).cmp_value(Number::Real(1.5)), Ordering::Less);
        assert_eq!(
            Number::Int(2).cmp_value(Number::Real(1.5)),
            Ordering::Greater
        );
        assert_eq!(
            Number::Real(-1.5).cmp_value(Number::Int(-1)),
            Ordering::Less
        );
        assert_eq!(
            Number::Int(i64::MAX).cmp_value(Number::Real(1e20)),
            Ordering::Less
        );
        assert_eq!(
            Number::Real(f64::NEG_INFINITY).cmp_value(Number::Int(i64::MIN)),
            Ordering::Less
        );
        assert_eq!(Number::Int(3).cmp_value(Number::Real(3.0)), Ordering::Equal);
    }
}

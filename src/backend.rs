//! What the writer thread drives: a SQLite store on this machine or a tracking server over
//! HTTP. Both speak in MLflow's entities and errors, so every store operation and the
//! batching writer are written once.

use crate::entities::{Experiment, Metric, Run, RunInfo};
use crate::error::Result;
use crate::run_columns::RunColumns;
use crate::search::{ExperimentSearch, RunSearch};
use crate::store::MetricRow;

pub trait Backend: Send {
    fn create_experiment(
        &mut self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[(String, Option<String>)],
    ) -> Result<String>;
    fn get_experiment(&self, experiment_id: &str) -> Result<Experiment>;
    fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>>;
    fn delete_experiment(&mut self, experiment_id: &str) -> Result<()>;
    fn restore_experiment(&mut self, experiment_id: &str) -> Result<()>;
    fn set_experiment_tags(&mut self, experiment_id: &str, tags: &[(String, String)])
        -> Result<()>;
    fn search_experiments(&self, search: &ExperimentSearch) -> Result<Vec<Experiment>>;

    fn create_run(
        &mut self,
        experiment_id: &str,
        user_id: &str,
        start_time: i64,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<Run>;
    fn get_run(&self, run_id: &str) -> Result<Run>;
    /// `get_run` with the run's dataset and model inputs and its model outputs filled in,
    /// as MLflow's `get_run` returns it.
    fn get_run_with_io(&self, run_id: &str) -> Result<Run>;
    /// The run's lifecycle stage, or `None` when the store has no such run.
    fn run_lifecycle(&self, run_id: &str) -> Result<Option<String>>;
    fn update_run_info(
        &mut self,
        run_id: &str,
        status: Option<&str>,
        end_time: Option<i64>,
        run_name: Option<&str>,
    ) -> Result<RunInfo>;
    fn delete_run(&mut self, run_id: &str) -> Result<()>;
    fn restore_run(&mut self, run_id: &str) -> Result<()>;
    fn run_ids_of_experiment(&self, experiment_id: &str) -> Result<Vec<String>>;
    fn search_runs(&self, search: &RunSearch) -> Result<Vec<Run>>;
    /// `search_runs` as the columns of MLflow's DataFrame.
    fn search_run_columns(&self, search: &RunSearch) -> Result<RunColumns> {
        Ok(RunColumns::from_runs(self.search_runs(search)?))
    }

    /// `single`: one `log_param` call, whose errors MLflow words differently from a batch's.
    fn log_params(&mut self, run_id: &str, params: &[(String, String)], single: bool)
        -> Result<()>;
    fn set_tags(&mut self, run_id: &str, tags: &[(String, Option<String>)]) -> Result<()>;
    fn delete_tag(&mut self, run_id: &str, key: &str) -> Result<()>;
    fn insert_metrics(&mut self, rows: &[MetricRow<'_>]) -> Result<()>;
    fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>>;

    /// The history as columns, in `get_metric_history`'s order.
    fn metric_series(&self, run_id: &str, key: &str) -> Result<crate::series::Series> {
        Ok(crate::series::Series::from_metrics(
            self.get_metric_history(run_id, key)?,
        ))
    }

    /// The history as columns, by step and then timestamp (a plot's order).
    fn metric_series_by_step(
        &self,
        run_id: &str,
        key: &str,
    ) -> Result<std::sync::Arc<crate::series::Series>> {
        Ok(std::sync::Arc::new(
            self.metric_series(run_id, key)?.by_step(),
        ))
    }

    /// The points whose step lies in `[first, last]`, by step and then timestamp.
    fn metric_series_between_steps(
        &self,
        run_id: &str,
        key: &str,
        first: i64,
        last: i64,
    ) -> Result<crate::series::Series> {
        let series = self.metric_series_by_step(run_id, key)?;
        let inside = crate::series::step_range(&series, first, last);
        Ok(series.select(&inside.collect::<Vec<_>>()))
    }

    /// `false`: metric commits from now on need only be visible to other readers, not on
    /// disk, until `true` again. Nothing for a tracking server, whose answer is both.
    fn set_durable(&mut self, _durable: bool) -> Result<()> {
        Ok(())
    }

    /// Puts on disk whatever was committed while not durable.
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }

    /// Folds what the store keeps beside its main file back into it, so the file alone is
    /// complete (a SQLite WAL); nothing for a tracking server.
    fn checkpoint(&mut self) -> Result<()> {
        Ok(())
    }

    /// The process is done with the store: leave it as MLflow leaves its stores, one file
    /// that holds everything, when no other process has it open.
    /// Held by a thread of the backend's own while it is inside SQLite: a fork waits for it.
    fn checkpoint_gate(&self) -> Option<std::sync::Arc<parking_lot::Mutex<()>>> {
        None
    }
    fn leave(&mut self) -> Result<()> {
        self.checkpoint()
    }
}

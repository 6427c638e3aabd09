//! MLflow's REST API as a `Backend`: the writer ships queued metrics in `runs/log-batch`
//! calls (at most 1,000 per call, runs in the order they were logged), and every other
//! store operation is one call. Reads follow the server's pages.

use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value as Json};

use crate::backend::Backend;
use crate::entities::{Dataset, DatasetInput, Experiment, Metric, Number, Run, RunInfo, RunIo};
use crate::error::{Error, Result};
use crate::rest::Client;
use crate::search::{ExperimentSearch, RunSearch};
use crate::store::MetricRow;

const LOG_BATCH_METRICS: usize = 1000;
const PAGE: i64 = 50_000;
const HISTORY_PAGE: i64 = 25_000;
/// How long one background delivery keeps retrying before the writer takes over (it backs
/// off and tries again, while records wait in the queue).
const DELIVERY_PATIENCE: Duration = Duration::from_secs(10);

pub struct RestStore {
    client: Client,
}

impl RestStore {
    pub fn new(uri: &str) -> Result<RestStore> {
        Ok(RestStore {
            client: Client::new(uri)?,
        })
    }

    fn get(&self, endpoint: &str, query: &[(&str, String)]) -> Result<Json> {
        self.client.call("GET", endpoint, query, None)
    }

    fn post(&self, endpoint: &str, body: Json) -> Result<Json> {
        self.client.call("POST", endpoint, &[], Some(&body))
    }
}

fn int(value: Option<&Json>) -> Option<i64> {
    match value? {
        Json::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Json::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(value: Option<&Json>) -> String {
    match value {
        Some(Json::String(s)) => s.clone(),
        Some(Json::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

/// MLflow's JSON writes non-finite doubles as the strings "NaN", "Infinity", "-Infinity".
fn double(value: Option<&Json>) -> f64 {
    match value {
        Some(Json::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
        Some(Json::String(s)) => match s.as_str() {
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or(f64::NAN),
        },
        _ => 0.0,
    }
}

fn double_json(value: f64) -> Json {
    if value.is_nan() {
        json!("NaN")
    } else if value == f64::INFINITY {
        json!("Infinity")
    } else if value == f64::NEG_INFINITY {
        json!("-Infinity")
    } else {
        json!(value)
    }
}

fn pairs(value: Option<&Json>) -> Vec<(String, String)> {
    value
        .and_then(Json::as_array)
        .map(|items| {
            items
                .iter()
                .map(|p| (text(p.get("key")), text(p.get("value"))))
                .collect()
        })
        .unwrap_or_default()
}

fn pairs_json(pairs: &[(String, String)]) -> Json {
    Json::Array(
        pairs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect(),
    )
}

fn experiment(j: &Json) -> Experiment {
    Experiment {
        experiment_id: text(j.get("experiment_id")),
        name: text(j.get("name")),
        artifact_location: text(j.get("artifact_location")),
        lifecycle_stage: text(j.get("lifecycle_stage")),
        creation_time: int(j.get("creation_time")),
        last_update_time: int(j.get("last_update_time")),
        tags: pairs(j.get("tags"))
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect(),
    }
}

fn run_info(j: &Json) -> RunInfo {
    RunInfo {
        run_id: text(j.get("run_id").or_else(|| j.get("run_uuid"))),
        experiment_id: text(j.get("experiment_id")),
        run_name: text(j.get("run_name")),
        user_id: text(j.get("user_id")),
        status: text(j.get("status")),
        start_time: int(j.get("start_time")),
        end_time: int(j.get("end_time")),
        artifact_uri: text(j.get("artifact_uri")),
        lifecycle_stage: text(j.get("lifecycle_stage")),
    }
}

fn number(value: Option<&Json>) -> Number {
    match value {
        Some(Json::Number(n)) => match n.as_i64() {
            Some(i) => Number::Int(i),
            None => Number::from_f64(n.as_f64().unwrap_or(0.0)),
        },
        value => Number::Int(int(value).unwrap_or(0)),
    }
}

fn metric(j: &Json) -> Metric {
    Metric {
        key: text(j.get("key")),
        value: double(j.get("value")),
        timestamp: number(j.get("timestamp")),
        step: number(j.get("step")),
    }
}

fn optional_text(value: Option<&Json>) -> Option<String> {
    match value {
        None | Some(Json::Null) => None,
        value => Some(text(value)),
    }
}

fn items(value: Option<&Json>) -> &[Json] {
    value.and_then(Json::as_array).map_or(&[], Vec::as_slice)
}

fn dataset_input(j: &Json) -> DatasetInput {
    let d = j.get("dataset").unwrap_or(&Json::Null);
    DatasetInput {
        dataset: Dataset {
            name: text(d.get("name")),
            digest: text(d.get("digest")),
            source_type: text(d.get("source_type")),
            source: text(d.get("source")),
            // Absent when empty, as MLflow's client reads them (`HasField`).
            schema: optional_text(d.get("schema")),
            profile: optional_text(d.get("profile")),
        },
        tags: pairs(j.get("tags")),
    }
}

/// `inputs` and `outputs` of a run as the server's `runs/get` writes them.
fn run_io(j: &Json) -> RunIo {
    let inputs = j.get("inputs");
    let outputs = j.get("outputs");
    RunIo {
        dataset_inputs: items(inputs.and_then(|i| i.get("dataset_inputs")))
            .iter()
            .map(dataset_input)
            .collect(),
        model_inputs: items(inputs.and_then(|i| i.get("model_inputs")))
            .iter()
            .map(|m| text(m.get("model_id")))
            .collect(),
        model_outputs: items(outputs.and_then(|o| o.get("model_outputs")))
            .iter()
            .map(|m| (text(m.get("model_id")), int(m.get("step")).unwrap_or(0)))
            .collect(),
    }
}

fn run(j: &Json) -> Run {
    let data = j.get("data");
    // In the server's order, which is its store's: MLflow's client keeps it.
    let metrics: Vec<Metric> = data
        .and_then(|d| d.get("metrics"))
        .and_then(Json::as_array)
        .map(|m| m.iter().map(metric).collect())
        .unwrap_or_default();
    Run {
        info: run_info(j.get("info").unwrap_or(&Json::Null)),
        metrics,
        params: pairs(data.and_then(|d| d.get("params"))),
        tags: pairs(data.and_then(|d| d.get("tags")))
            .into_iter()
            .map(|(k, v)| (k, Some(v)))
            .collect(),
        io: RunIo::default(),
    }
}

fn view_name(view_type: i64) -> &'static str {
    match view_type {
        2 => "DELETED_ONLY",
        3 => "ALL",
        _ => "ACTIVE_ONLY",
    }
}

fn offset_token(offset: i64) -> Option<String> {
    (offset > 0).then(|| {
        base64::engine::general_purpose::STANDARD.encode(format!("{{\"offset\": {offset}}}"))
    })
}

fn next_token(answer: &Json) -> Option<String> {
    answer
        .get("next_page_token")
        .and_then(Json::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

impl Backend for RestStore {
    fn create_experiment(
        &mut self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[(String, Option<String>)],
    ) -> Result<String> {
        let tags: Vec<Json> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        let mut body = json!({"name": name, "tags": tags});
        if let Some(location) = artifact_location {
            body["artifact_location"] = json!(location);
        }
        Ok(text(
            self.post("experiments/create", body)?.get("experiment_id"),
        ))
    }

    fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let answer = self.get(
            "experiments/get",
            &[("experiment_id", experiment_id.into())],
        )?;
        Ok(experiment(answer.get("experiment").unwrap_or(&Json::Null)))
    }

    fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        match self.get(
            "experiments/get-by-name",
            &[("experiment_name", name.into())],
        ) {
            Ok(answer) => Ok(Some(experiment(
                answer.get("experiment").unwrap_or(&Json::Null),
            ))),
            Err(Error::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn delete_experiment(&mut self, experiment_id: &str) -> Result<()> {
        self.post(
            "experiments/delete",
            json!({"experiment_id": experiment_id}),
        )
        .map(drop)
    }

    fn restore_experiment(&mut self, experiment_id: &str) -> Result<()> {
        self.post(
            "experiments/restore",
            json!({"experiment_id": experiment_id}),
        )
        .map(drop)
    }

    fn set_experiment_tags(
        &mut self,
        experiment_id: &str,
        tags: &[(String, String)],
    ) -> Result<()> {
        for (key, value) in tags {
            self.post(
                "experiments/set-experiment-tag",
                json!({"experiment_id": experiment_id, "key": key, "value": value}),
            )?;
        }
        Ok(())
    }

    fn search_experiments(&self, search: &ExperimentSearch) -> Result<Vec<Experiment>> {
        let mut found = Vec::new();
        let mut token = offset_token(search.offset);
        while (found.len() as i64) < search.limit {
            let mut body = json!({
                "max_results": (search.limit - found.len() as i64).min(PAGE),
                "filter": search.filter,
                "order_by": search.order_by,
                "view_type": view_name(search.view_type),
            });
            if let Some(token) = &token {
                body["page_token"] = json!(token);
            }
            let answer = self.post("experiments/search", body)?;
            if let Some(items) = answer.get("experiments").and_then(Json::as_array) {
                found.extend(items.iter().map(experiment));
            }
            token = next_token(&answer);
            if token.is_none() {
                break;
            }
        }
        Ok(found)
    }

    fn create_run(
        &mut self,
        experiment_id: &str,
        user_id: &str,
        start_time: i64,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<Run> {
        let answer = self.post(
            "runs/create",
            json!({
                "experiment_id": experiment_id,
                "user_id": user_id,
                "start_time": start_time,
                "run_name": run_name,
                "tags": pairs_json(tags),
            }),
        )?;
        Ok(run(answer.get("run").unwrap_or(&Json::Null)))
    }

    fn get_run(&self, run_id: &str) -> Result<Run> {
        let answer = self.get("runs/get", &[("run_id", run_id.into())])?;
        Ok(run(answer.get("run").unwrap_or(&Json::Null)))
    }

    fn get_run_with_io(&self, run_id: &str) -> Result<Run> {
        let answer = self.get("runs/get", &[("run_id", run_id.into())])?;
        let found = answer.get("run").unwrap_or(&Json::Null);
        let mut run = run(found);
        run.io = run_io(found);
        Ok(run)
    }

    fn run_lifecycle(&self, run_id: &str) -> Result<Option<String>> {
        match self.get_run(run_id) {
            Ok(found) => Ok(Some(found.info.lifecycle_stage)),
            Err(Error::NotFound(_)) => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn update_run_info(
        &mut self,
        run_id: &str,
        status: Option<&str>,
        end_time: Option<i64>,
        run_name: Option<&str>,
    ) -> Result<RunInfo> {
        let mut body = json!({"run_id": run_id, "run_uuid": run_id});
        if let Some(status) = status {
            body["status"] = json!(status);
        }
        if let Some(end_time) = end_time {
            body["end_time"] = json!(end_time);
        }
        if let Some(name) = run_name {
            body["run_name"] = json!(name);
        }
        let answer = self.post("runs/update", body)?;
        Ok(run_info(answer.get("run_info").unwrap_or(&Json::Null)))
    }

    fn delete_run(&mut self, run_id: &str) -> Result<()> {
        self.post("runs/delete", json!({"run_id": run_id}))
            .map(drop)
    }

    fn restore_run(&mut self, run_id: &str) -> Result<()> {
        self.post("runs/restore", json!({"run_id": run_id}))
            .map(drop)
    }

    /// Only used to mirror deletions into this process's run flags; the server refuses
    /// later writes to those runs by itself.
    fn run_ids_of_experiment(&self, _experiment_id: &str) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn search_runs(&self, search: &RunSearch) -> Result<Vec<Run>> {
        let limit = search.limit.unwrap_or(i64::MAX);
        let mut found = Vec::new();
        let mut token = offset_token(search.offset);
        let experiment_ids: Vec<String> =
            search.experiment_ids.iter().map(i64::to_string).collect();
        while (found.len() as i64) < limit {
            let mut body = json!({
                "experiment_ids": experiment_ids,
                "filter": search.filter,
                "run_view_type": view_name(search.view_type),
                "max_results": (limit - found.len() as i64).min(PAGE),
                "order_by": search.order_by,
            });
            if let Some(token) = &token {
                body["page_token"] = json!(token);
            }
            let answer = self.post("runs/search", body)?;
            if let Some(items) = answer.get("runs").and_then(Json::as_array) {
                found.extend(items.iter().map(run));
            }
            token = next_token(&answer);
            if token.is_none() {
                break;
            }
        }
        Ok(found)
    }

    fn log_params(
        &mut self,
        run_id: &str,
        params: &[(String, String)],
        single: bool,
    ) -> Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        if single && params.len() == 1 {
            let (key, value) = &params[0];
            return self
                .post(
                    "runs/log-parameter",
                    json!({"run_id": run_id, "run_uuid": run_id, "key": key, "value": value}),
                )
                .map(drop);
        }
        self.post(
            "runs/log-batch",
            json!({"run_id": run_id, "params": pairs_json(params)}),
        )
        .map(drop)
    }

    fn set_tags(&mut self, run_id: &str, tags: &[(String, Option<String>)]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let tags: Vec<Json> = tags
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        self.post("runs/log-batch", json!({"run_id": run_id, "tags": tags}))
            .map(drop)
    }

    fn delete_tag(&mut self, run_id: &str, key: &str) -> Result<()> {
        self.post("runs/delete-tag", json!({"run_id": run_id, "key": key}))
            .map(drop)
    }

    fn insert_metrics(&mut self, rows: &[MetricRow<'_>]) -> Result<()> {
        // Rows arrive grouped by run: one call per run and per 1,000 points, in order. A
        // retry may resend calls that already succeeded; the server keeps one copy of a
        // point logged twice (same key, value, timestamp and step).
        let deadline = Some(Instant::now() + DELIVERY_PATIENCE);
        let mut start = 0;
        while start < rows.len() {
            let run_id = rows[start].run_id;
            let mut end = start;
            while end < rows.len() && rows[end].run_id == run_id && end - start < LOG_BATCH_METRICS
            {
                end += 1;
            }
            let metrics: Vec<Json> = rows[start..end]
                .iter()
                .map(|r| {
                    json!({"key": r.key, "value": double_json(r.value),
                           "timestamp": r.timestamp, "step": r.step})
                })
                .collect();
            let body = json!({"run_id": run_id, "metrics": metrics});
            self.client.request(
                "POST",
                "runs/log-batch",
                &[],
                Some(&body),
                u32::MAX,
                deadline,
            )?;
            start = end;
        }
        Ok(())
    }

    fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![
                ("run_id", run_id.to_string()),
                ("metric_key", key.to_string()),
                ("max_results", HISTORY_PAGE.to_string()),
            ];
            if let Some(token) = &token {
                query.push(("page_token", token.clone()));
            }
            let answer = self.get("metrics/get-history", &query)?;
            if let Some(items) = answer.get("metrics").and_then(Json::as_array) {
                found.extend(items.iter().map(metric));
            }
            token = next_token(&answer);
            if token.is_none() {
                return Ok(found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_and_outputs_are_read_from_a_run_as_the_server_writes_it() {
        let answer: Json = serde_json::from_str(
            r#"{"info": {"run_id": "r"}, "data": {},
                "inputs": {"dataset_inputs": [
                    {"tags": [{"key": "mlflow.data.context", "value": "train"}],
                     "dataset": {"name": "d", "digest": "aa", "source_type": "code",
                                 "source": "{}", "schema": "{\"s\": 1}"}},
                    {"dataset": {"name": "e", "digest": "bb", "source_type": "http",
                                 "source": "u"}}],
                    "model_inputs": [{"model_id": "m-1"}]},
                "outputs": {"model_outputs": [{"model_id": "m-2", "step": "7"}]}}"#,
        )
        .unwrap();
        let io = run_io(&answer);
        assert_eq!(io.dataset_inputs.len(), 2);
        let first = &io.dataset_inputs[0];
        assert_eq!(first.dataset.name, "d");
        assert_eq!(first.dataset.schema.as_deref(), Some("{\"s\": 1}"));
        assert_eq!(first.dataset.profile, None);
        assert_eq!(
            first.tags,
            vec![("mlflow.data.context".to_string(), "train".to_string())]
        );
        assert!(io.dataset_inputs[1].tags.is_empty());
        assert_eq!(io.model_inputs, vec!["m-1"]);
        assert_eq!(io.model_outputs, vec![("m-2".to_string(), 7)]);
        assert_eq!(run_io(&json!({})), RunIo::default());
    }
}

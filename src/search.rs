//! Search as MLflow's SQL store runs it, translated to SQLite: parsed clauses become
//! parameterised SQL (every key and value is a bound parameter, so no input changes the
//! query's shape), ordered as MLflow orders (missing values last, NaN after numbers, then
//! newest first and run id), and paged by offset.

use rusqlite::types::Value as Sql;
use rusqlite::types::ValueRef;
use rusqlite::{params_from_iter, Connection};
use rustc_hash::FxHashMap;

use crate::entities::{
    stored_metric_value, Metric, Number, Run, RunIo, LIFECYCLE_ACTIVE, LIFECYCLE_DELETED,
    RUN_NAME_TAG,
};
use crate::error::{Error, Result};
use crate::filter::{self, Clause, Entity, Op, OrderBy, Target, Value};
use crate::run_columns::{Keyed, RunAttributes, RunColumns, Texts};
use crate::store::{run_info_from_row, RUN_COLUMNS};
use crate::validation;

/// MLflow's `ViewType`: 1 active only, 2 deleted only, 3 all.
pub fn stages(view_type: i64) -> Result<&'static [&'static str]> {
    match view_type {
        1 => Ok(&[LIFECYCLE_ACTIVE]),
        2 => Ok(&[LIFECYCLE_DELETED]),
        3 => Ok(&[LIFECYCLE_ACTIVE, LIFECYCLE_DELETED]),
        other => Err(Error::invalid(format!("Invalid view type {other}"))),
    }
}

pub struct RunSearch {
    pub experiment_ids: Vec<i64>,
    pub filter: String,
    pub view_type: i64,
    pub order_by: Vec<String>,
    pub offset: i64,
    /// Rows to return at most; the caller asks for one more to learn whether a page follows.
    pub limit: Option<i64>,
}

pub struct ExperimentSearch {
    pub filter: String,
    pub view_type: i64,
    pub order_by: Vec<String>,
    pub offset: i64,
    pub limit: i64,
}

struct Query {
    sql: String,
    args: Vec<Sql>,
}

impl Query {
    fn bind(&mut self, value: Sql) -> &'static str {
        self.args.push(value);
        "?"
    }

    fn bind_list(&mut self, values: impl IntoIterator<Item = Sql>) -> String {
        let marks: Vec<&str> = values.into_iter().map(|v| self.bind(v)).collect();
        format!("({})", marks.join(", "))
    }
}

fn number(value: &Value) -> Sql {
    match value {
        Value::Integer(i) => Sql::Integer(*i),
        Value::Float(f) => Sql::Real(*f),
        _ => Sql::Null,
    }
}

fn text(value: &Value) -> Sql {
    match value {
        Value::Text(t) => Sql::Text(t.clone()),
        _ => Sql::Null,
    }
}

/// `<column> <op> <value>` with SQLAlchemy's renderings: ILIKE compares lower-cased sides.
fn compare(query: &mut Query, column: &str, op: Op, value: &Value) -> String {
    match op {
        Op::ILike => {
            let mark = query.bind(text(value));
            format!("lower({column}) LIKE lower({mark})")
        }
        Op::In | Op::NotIn => {
            let Value::List(items) = value else {
                return "0".into();
            };
            let list = query.bind_list(items.iter().map(|s| Sql::Text(s.clone())));
            if op == Op::In {
                format!("{column} IN {list}")
            } else {
                format!("({column} NOT IN {list})")
            }
        }
        _ => {
            let bound = match value {
                Value::Text(_) => text(value),
                other => number(other),
            };
            let mark = query.bind(bound);
            format!("{column} {} {mark}", op.sql())
        }
    }
}

fn run_column(key: &str) -> &'static str {
    match key {
        "run_id" => "runs.run_uuid",
        "run_name" => "runs.name",
        "user_id" => "runs.user_id",
        "status" => "runs.status",
        "artifact_uri" => "runs.artifact_uri",
        "start_time" => "runs.start_time",
        _ => "runs.end_time",
    }
}

fn run_condition(query: &mut Query, clause: &Clause) -> Result<String> {
    let table = match clause.entity {
        Entity::Metric => "latest_metrics",
        Entity::Param => "params",
        Entity::Tag => "tags",
        Entity::Attribute if clause.key == "run_name" => {
            // MLflow reads run names from the tag: runs of MLflow <= 1.29 have no name column.
            let key = query.bind(Sql::Text(RUN_NAME_TAG.into()));
            let cond = compare(query, "value", clause.op, &clause.value);
            return Ok(format!(
                "runs.run_uuid IN (SELECT run_uuid FROM tags WHERE key = {key} AND {cond})"
            ));
        }
        Entity::Attribute => {
            return Ok(compare(
                query,
                run_column(&clause.key),
                clause.op,
                &clause.value,
            ));
        }
        Entity::Dataset => return Ok(dataset_condition(query, clause)),
    };
    let key = query.bind(Sql::Text(clause.key.clone()));
    match clause.op {
        Op::IsNull | Op::IsNotNull => {
            let negate = if clause.op == Op::IsNull { "NOT " } else { "" };
            return Ok(format!(
                "{negate}EXISTS (SELECT 1 FROM {table} e WHERE e.run_uuid = runs.run_uuid \
                 AND e.key = {key})"
            ));
        }
        _ => {}
    }
    let mut cond = compare(query, "value", clause.op, &clause.value);
    if clause.entity == Entity::Metric {
        // NaN is stored as 0 with is_nan set: it satisfies only "!=".
        cond = if clause.op == Op::Ne {
            format!("({cond} OR is_nan = 1)")
        } else {
            format!("({cond} AND is_nan = 0)")
        };
    }
    Ok(format!(
        "runs.run_uuid IN (SELECT run_uuid FROM {table} WHERE key = {key} AND {cond})"
    ))
}

fn dataset_condition(query: &mut Query, clause: &Clause) -> String {
    if clause.key == "context" {
        let name = query.bind(Sql::Text("mlflow.data.context".into()));
        let cond = compare(query, "t.value", clause.op, &clause.value);
        return format!(
            "runs.run_uuid IN (SELECT i.destination_id FROM datasets d \
             JOIN inputs i ON i.source_id = d.dataset_uuid \
             JOIN input_tags t ON t.input_uuid = i.input_uuid \
             WHERE t.name = {name} AND {cond})"
        );
    }
    let column = if clause.key == "digest" {
        "d.dataset_digest"
    } else {
        "d.name"
    };
    let cond = compare(query, column, clause.op, &clause.value);
    format!(
        "runs.run_uuid IN (SELECT i.destination_id FROM datasets d \
         JOIN inputs i ON i.source_id = d.dataset_uuid WHERE {cond})"
    )
}

/// The conjunction of `terms`, nested as a balanced tree: SQLite refuses an expression more
/// than 1000 levels deep, and a flat chain of N terms is N levels deep.
fn all_of(terms: &[String]) -> String {
    match terms {
        [] => "1".to_string(),
        [one] => one.clone(),
        _ => {
            let (left, right) = terms.split_at(terms.len() / 2);
            format!("({}) AND ({})", all_of(left), all_of(right))
        }
    }
}

/// The statement that selects `columns` of the runs a search returns, in MLflow's order.
fn run_query(search: &RunSearch, columns: &str) -> Result<Query> {
    let clauses = filter::parse_filter(&search.filter, Target::Runs)?;
    let orders = search
        .order_by
        .iter()
        .map(|o| filter::parse_order_by(o, Target::Runs))
        .collect::<Result<Vec<OrderBy>>>()?;
    let mut query = Query {
        sql: String::new(),
        args: Vec::new(),
    };
    let mut joins = String::new();
    let mut order_terms = Vec::new();
    let mut seen: Vec<(Entity, &str)> = Vec::new();
    for (index, order) in orders.iter().enumerate() {
        if seen.contains(&(order.entity, order.key.as_str())) {
            return Err(Error::invalid(format!(
                "`order_by` contains duplicate fields: {:?}",
                search.order_by
            )));
        }
        seen.push((order.entity, order.key.as_str()));
        let direction = if order.ascending { "" } else { " DESC" };
        let (value, rank) = match order.entity {
            Entity::Attribute => {
                let column = run_column(&order.key);
                (
                    column.to_string(),
                    format!("CASE WHEN {column} IS NULL THEN 1 ELSE 0 END"),
                )
            }
            entity => {
                let table = match entity {
                    Entity::Metric => "latest_metrics",
                    Entity::Param => "params",
                    _ => "tags",
                };
                let alias = format!("o{index}");
                let key = query.bind(Sql::Text(order.key.clone()));
                joins.push_str(&format!(
                    " LEFT JOIN {table} {alias} ON {alias}.run_uuid = runs.run_uuid \
                     AND {alias}.key = {key}"
                ));
                let value = format!("{alias}.value");
                let rank = if entity == Entity::Metric {
                    format!(
                        "CASE WHEN {alias}.is_nan = 1 THEN 1 WHEN {value} IS NULL THEN 2 \
                         ELSE 0 END"
                    )
                } else {
                    format!("CASE WHEN {value} IS NULL THEN 1 ELSE 0 END")
                };
                (value, rank)
            }
        };
        order_terms.push(rank);
        order_terms.push(format!("{value}{direction}"));
    }
    if !seen.contains(&(Entity::Attribute, "start_time")) {
        order_terms.push("runs.start_time DESC".into());
    }
    order_terms.push("runs.run_uuid".into());

    let experiments = query.bind_list(search.experiment_ids.iter().map(|&id| Sql::Integer(id)));
    let stage_list = query.bind_list(
        stages(search.view_type)?
            .iter()
            .map(|s| Sql::Text((*s).to_string())),
    );
    let mut conditions = vec![
        format!("runs.experiment_id IN {experiments}"),
        format!("runs.lifecycle_stage IN {stage_list}"),
    ];
    for clause in &clauses {
        conditions.push(run_condition(&mut query, clause)?);
    }
    let mut sql = format!(
        "SELECT {columns} FROM runs{joins} WHERE {} ORDER BY {}",
        all_of(&conditions),
        order_terms.join(", ")
    );
    let limit = query.bind(Sql::Integer(search.limit.unwrap_or(-1)));
    let offset = query.bind(Sql::Integer(search.offset));
    sql.push_str(&format!(" LIMIT {limit} OFFSET {offset}"));
    query.sql = sql;
    Ok(query)
}

/// The ids of the runs a search returns, in MLflow's order.
pub fn search_run_ids(conn: &Connection, search: &RunSearch) -> Result<Vec<String>> {
    let query = run_query(search, "runs.run_uuid")?;
    let mut stmt = conn.prepare(&query.sql)?;
    let ids = stmt
        .query_map(params_from_iter(query.args.iter()), |r| {
            r.get::<_, String>(0)
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids)
}

const CHUNK: usize = 500;

/// The runs with these ids, in the order given, each with latest metrics, params and tags.
pub fn load_runs(conn: &Connection, ids: &[String]) -> Result<Vec<Run>> {
    let mut by_id: FxHashMap<String, Run> = FxHashMap::default();
    for chunk in ids.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        let args = params_from_iter(chunk.iter());
        let mut stmt = conn.prepare(&format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE run_uuid IN ({marks})"
        ))?;
        let rows = stmt.query_map(args, run_info_from_row)?;
        for info in rows {
            let info = info?;
            by_id.insert(
                info.run_id.clone(),
                Run {
                    info,
                    metrics: Vec::new(),
                    params: Vec::new(),
                    tags: Vec::new(),
                    io: RunIo::default(),
                },
            );
        }
        let mut stmt = conn.prepare(&format!(
            "SELECT run_uuid, key, value, timestamp, step, is_nan FROM latest_metrics \
             WHERE run_uuid IN ({marks}) ORDER BY run_uuid"
        ))?;
        let mut rows = stmt.query(params_from_iter(chunk.iter()))?;
        while let Some(row) = rows.next()? {
            let run_id: String = row.get(0)?;
            if let Some(run) = by_id.get_mut(&run_id) {
                run.metrics.push(Metric {
                    key: row.get(1)?,
                    value: stored_metric_value(row.get(2)?, row.get(5)?),
                    timestamp: row.get::<_, Option<Number>>(3)?.unwrap_or(Number::Int(0)),
                    step: row.get(4)?,
                });
            }
        }
        for (table, params) in [("params", true), ("tags", false)] {
            let mut stmt = conn.prepare(&format!(
                "SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({marks})"
            ))?;
            let mut rows = stmt.query(params_from_iter(chunk.iter()))?;
            while let Some(row) = rows.next()? {
                let run_id: String = row.get(0)?;
                if let Some(run) = by_id.get_mut(&run_id) {
                    let key = row.get(1)?;
                    let value = row.get::<_, Option<String>>(2)?;
                    if params {
                        run.params.push((key, value.unwrap_or_default()));
                    } else {
                        run.tags.push((key, value));
                    }
                }
            }
        }
    }
    Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
}

/// A search that selects at least 1/`SCAN_SHARE` of the store's runs reads the metric, param
/// and tag tables whole, in storage order, and drops the rows of other runs: looking each run
/// up through a table's run index costs an index probe and a page out of order per run,
/// about twice what scanning a run's rows costs.
const SCAN_SHARE: i64 = 2;

fn scan_whole_tables(conn: &Connection, selected: usize) -> Result<bool> {
    if selected == 0 {
        return Ok(false);
    }
    // The largest rowid bounds the number of runs without counting them.
    let runs: Option<i64> = conn.query_row("SELECT max(rowid) FROM runs", [], |r| r.get(0))?;
    Ok(selected as i64 * SCAN_SHARE >= runs.unwrap_or(0))
}

fn text_at<'r>(row: &'r rusqlite::Row<'_>, index: usize) -> rusqlite::Result<Option<&'r str>> {
    match row.get_ref(index)? {
        ValueRef::Null => Ok(None),
        value => value.as_str().map(Some).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(index, value.data_type(), e.into())
        }),
    }
}

/// The row of each selected run, found by the bytes of its id. A table's rows of one run
/// are mostly stored together, so the run found last is tried before the map.
struct RunRows<'a> {
    rows: FxHashMap<&'a [u8], usize>,
    last: Option<(&'a [u8], usize)>,
}

impl<'a> RunRows<'a> {
    fn new(ids: &'a [String]) -> Self {
        let rows = ids
            .iter()
            .enumerate()
            .map(|(at, id)| (id.as_bytes(), at))
            .collect();
        RunRows { rows, last: None }
    }

    fn find(&mut self, id: &[u8]) -> Option<usize> {
        if let Some((last, at)) = self.last {
            if last == id {
                return Some(at);
            }
        }
        let (&key, &at) = self.rows.get_key_value(id)?;
        self.last = Some((key, at));
        Some(at)
    }
}

/// Calls `each` with the row index of the run and the row, for every row of `select` (whose
/// first column is the run id) that belongs to one of the runs in `ids`. Within a run, rows
/// come in insertion order either way, as MLflow's reads list them.
fn each_run_row(
    conn: &Connection,
    select: &str,
    ids: &[String],
    scan: bool,
    mut each: impl FnMut(usize, &rusqlite::Row<'_>) -> Result<()>,
) -> Result<()> {
    let mut rows = RunRows::new(ids);
    let mut read = |sql: &str, args: &[String]| -> Result<()> {
        let mut stmt = conn.prepare(sql)?;
        let mut found = stmt.query(params_from_iter(args.iter()))?;
        while let Some(row) = found.next()? {
            let ValueRef::Text(run_id) = row.get_ref(0)? else {
                continue;
            };
            if let Some(at) = rows.find(run_id) {
                each(at, row)?;
            }
        }
        Ok(())
    };
    if scan {
        return read(select, &[]);
    }
    for chunk in ids.chunks(CHUNK) {
        let marks = vec!["?"; chunk.len()].join(", ");
        read(&format!("{select} WHERE run_uuid IN ({marks})"), chunk)?;
    }
    Ok(())
}

/// The attributes of the runs a search returns, in MLflow's order, read as `RunInfo` reads
/// them.
fn run_attributes(conn: &Connection, search: &RunSearch) -> Result<RunAttributes> {
    let query = run_query(
        search,
        "runs.run_uuid, runs.experiment_id, runs.status, runs.artifact_uri, runs.start_time, \
         runs.end_time",
    )?;
    let mut attributes = RunAttributes::default();
    let mut stmt = conn.prepare(&query.sql)?;
    let mut found = stmt.query(params_from_iter(query.args.iter()))?;
    while let Some(row) = found.next()? {
        attributes.run_ids.push(row.get(0)?);
        let experiment_id: Option<i64> = row.get(1)?;
        attributes
            .experiment_ids
            .push(experiment_id.map(|e| e.to_string()).unwrap_or_default());
        attributes
            .statuses
            .push(text_at(row, 2)?.unwrap_or_default().to_owned());
        attributes
            .artifact_uris
            .push(text_at(row, 3)?.unwrap_or_default().to_owned());
        attributes.start_times.push(row.get(4)?);
        attributes.end_times.push(row.get(5)?);
    }
    Ok(attributes)
}

/// The page of runs a search returns as columns, read from the tables straight into them.
pub fn search_run_columns(conn: &Connection, search: &RunSearch) -> Result<RunColumns> {
    let attributes = run_attributes(conn, search)?;
    let ids = &attributes.run_ids;
    let scan = scan_whole_tables(conn, ids.len())?;
    let mut metrics = Keyed::new(ids.len(), f64::NAN);
    let mut params = Texts::new(ids.len());
    let mut tags = Texts::new(ids.len());
    each_run_row(
        conn,
        "SELECT run_uuid, key, value, is_nan FROM latest_metrics",
        ids,
        scan,
        |at, row| {
            let key = text_at(row, 1)?.unwrap_or_default();
            metrics.set(at, key, stored_metric_value(row.get(2)?, row.get(3)?));
            Ok(())
        },
    )?;
    for (table, texts) in [("params", &mut params), ("tags", &mut tags)] {
        let is_param = table == "params";
        each_run_row(
            conn,
            &format!("SELECT run_uuid, key, value FROM {table}"),
            ids,
            scan,
            |at, row| {
                let key = text_at(row, 1)?.unwrap_or_default();
                let value = text_at(row, 2)?;
                // A param is never missing once read: `Run.params` holds "" for NULL.
                let value = if is_param { value.or(Some("")) } else { value };
                texts.set(at, key, value);
                Ok(())
            },
        )?;
    }
    Ok(RunColumns {
        attributes,
        metrics,
        params,
        tags,
    })
}

fn experiment_condition(query: &mut Query, clause: &Clause) -> Result<String> {
    match clause.entity {
        Entity::Tag => match clause.op {
            Op::IsNull | Op::IsNotNull => {
                let key = query.bind(Sql::Text(clause.key.clone()));
                let negate = if clause.op == Op::IsNull { "NOT " } else { "" };
                Ok(format!(
                    "{negate}EXISTS (SELECT 1 FROM experiment_tags t WHERE t.experiment_id = \
                     experiments.experiment_id AND t.key = {key})"
                ))
            }
            Op::Eq | Op::Ne | Op::Like | Op::ILike => {
                let key = query.bind(Sql::Text(clause.key.clone()));
                let cond = compare(query, "value", clause.op, &clause.value);
                Ok(format!(
                    "experiments.experiment_id IN (SELECT experiment_id FROM experiment_tags \
                     WHERE key = {key} AND {cond})"
                ))
            }
            op => Err(Error::invalid(format!(
                "Invalid comparator for tag: {}",
                op.sql()
            ))),
        },
        _ => match clause.key.as_str() {
            "experiment_id" => {
                if !matches!(clause.op, Op::Eq | Op::Ne | Op::In | Op::NotIn) {
                    return Err(Error::invalid(format!(
                        "Invalid comparator for experiment_id: {}",
                        clause.op.sql()
                    )));
                }
                let value = match &clause.value {
                    Value::List(items) => Value::List(
                        items
                            .iter()
                            .map(|s| validation::parse_experiment_id(s).map(|i| i.to_string()))
                            .collect::<Result<_>>()?,
                    ),
                    Value::Text(s) => Value::Integer(validation::parse_experiment_id(s)?),
                    other => other.clone(),
                };
                let column = "experiments.experiment_id";
                if let Value::List(items) = &value {
                    let ints = items
                        .iter()
                        .map(|s| Sql::Integer(s.parse::<i64>().unwrap_or_default()));
                    let list = query.bind_list(ints);
                    let not = if clause.op == Op::NotIn { "NOT " } else { "" };
                    return Ok(format!("({column} {not}IN {list})"));
                }
                Ok(compare(query, column, clause.op, &value))
            }
            "name" => {
                if !matches!(clause.op, Op::Eq | Op::Ne | Op::Like | Op::ILike) {
                    return Err(Error::invalid(format!(
                        "Invalid comparator for string attribute: {}",
                        clause.op.sql()
                    )));
                }
                Ok(compare(query, "experiments.name", clause.op, &clause.value))
            }
            key => {
                if let Value::Float(f) = clause.value {
                    return Err(Error::invalid(format!(
                        "Invalid value for numeric attribute '{key}': '{f}'"
                    )));
                }
                Ok(compare(
                    query,
                    &format!("experiments.{key}"),
                    clause.op,
                    &clause.value,
                ))
            }
        },
    }
}

/// The ids of the experiments a search returns, in MLflow's order.
pub fn search_experiment_ids(conn: &Connection, search: &ExperimentSearch) -> Result<Vec<i64>> {
    let clauses = filter::parse_filter(&search.filter, Target::Experiments)?;
    let default_order = [
        "creation_time DESC".to_string(),
        "experiment_id ASC".to_string(),
    ];
    let order_by = if search.order_by.is_empty() {
        &default_order[..]
    } else {
        &search.order_by[..]
    };
    let mut terms = Vec::new();
    let mut by_id = false;
    for text in order_by {
        let order = filter::parse_order_by(text, Target::Experiments)?;
        by_id |= order.key == "experiment_id";
        let direction = if order.ascending { "ASC" } else { "DESC" };
        terms.push(format!("experiments.{} {direction}", order.key));
    }
    if !by_id {
        terms.push("experiments.experiment_id DESC".into());
    }
    let mut query = Query {
        sql: String::new(),
        args: Vec::new(),
    };
    let stage_list = query.bind_list(
        stages(search.view_type)?
            .iter()
            .map(|s| Sql::Text((*s).to_string())),
    );
    let mut conditions = vec![format!("experiments.lifecycle_stage IN {stage_list}")];
    for clause in &clauses {
        conditions.push(experiment_condition(&mut query, clause)?);
    }
    let limit = query.bind(Sql::Integer(search.limit));
    let offset = query.bind(Sql::Integer(search.offset));
    query.sql = format!(
        "SELECT experiments.experiment_id FROM experiments WHERE {} ORDER BY {} \
         LIMIT {limit} OFFSET {offset}",
        all_of(&conditions),
        terms.join(", ")
    );
    let mut stmt = conn.prepare(&query.sql)?;
    let ids = stmt
        .query_map(params_from_iter(query.args.iter()), |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::store::{MetricRow, Store};

    fn store_with_runs(dir: &std::path::Path) -> (Store, Vec<String>) {
        let mut store = Store::open(&dir.join("mlflow.db"), "/tmp/mlruns").unwrap();
        let mut ids = Vec::new();
        for i in 0..6i64 {
            let name = format!("run-{i}");
            let tags = vec![(RUN_NAME_TAG.to_string(), name.clone())];
            let run = store.create_run("0", "me", 1000 + i, &name, &tags).unwrap();
            let id = run.info.run_id;
            store
                .log_params(&id, &[("lr".into(), format!("0.{i}"))], false)
                .unwrap();
            let value = if i == 2 { f64::NAN } else { i as f64 };
            let rows = [MetricRow {
                run_id: &id,
                key: "acc",
                value,
                timestamp: 1.into(),
                step: 0.into(),
            }];
            if i != 4 {
                store.insert_metrics(&rows).unwrap();
            }
            ids.push(id);
        }
        (store, ids)
    }

    fn search(store: &Store, filter: &str, order_by: &[&str]) -> Result<Vec<String>> {
        let found = store.search_runs(&RunSearch {
            experiment_ids: vec![0],
            filter: filter.into(),
            view_type: 1,
            order_by: order_by.iter().map(|s| s.to_string()).collect(),
            offset: 0,
            limit: None,
        })?;
        Ok(found.into_iter().map(|r| r.info.run_name).collect())
    }

    #[test]
    fn filters_and_orders_as_mlflow() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_runs(dir.path());
        assert_eq!(
            search(&store, "metrics.acc > 2", &[]).unwrap(),
            ["run-5", "run-3"]
        );
        // NaN satisfies only "!=", missing metrics nothing.
        assert_eq!(
            search(&store, "metrics.acc != 3", &["attributes.start_time"]).unwrap(),
            ["run-0", "run-1", "run-2", "run-5"]
        );
        // Numbers first, then NaN, then runs without the metric, whichever the direction.
        assert_eq!(
            search(&store, "", &["metrics.acc DESC"]).unwrap(),
            ["run-5", "run-3", "run-1", "run-0", "run-2", "run-4"]
        );
        assert_eq!(
            search(
                &store,
                "attributes.run_name LIKE 'run-_' AND params.lr = '0.1'",
                &[]
            )
            .unwrap(),
            ["run-1"]
        );
    }

    /// Everything a frame shows of `columns`, with keys in a fixed order.
    fn described(columns: &RunColumns) -> Vec<String> {
        let a = &columns.attributes;
        let mut lines = vec![format!(
            "{:?} {:?} {:?} {:?} {:?} {:?}",
            a.run_ids, a.experiment_ids, a.statuses, a.artifact_uris, a.start_times, a.end_times
        )];
        let mut keyed: Vec<String> = columns
            .metrics
            .columns
            .iter()
            .map(|(key, values)| {
                let bits: Vec<u64> = values.iter().map(|v| v.to_bits()).collect();
                format!("metric {key} {bits:?}")
            })
            .collect();
        for (kind, texts) in [("param", &columns.params), ("tag", &columns.tags)] {
            for (key, cells) in &texts.keyed.columns {
                let values: Vec<Option<&str>> = cells.iter().map(|&c| texts.text(c)).collect();
                keyed.push(format!("{kind} {key} {values:?}"));
            }
        }
        keyed.sort();
        lines.extend(keyed);
        lines.push(format!(
            "{:?} {:?} {:?}",
            columns.metrics.introductions(),
            columns.params.keyed.introductions(),
            columns.tags.keyed.introductions()
        ));
        lines
    }

    #[test]
    fn columns_read_from_the_tables_are_the_runs_columns() {
        let dir = tempfile::tempdir().unwrap();
        let (mut store, ids) = store_with_runs(dir.path());
        let tags = [
            ("note".to_string(), None),
            ("team".to_string(), Some("a".into())),
        ];
        store.set_tags(&ids[3], &tags).unwrap();
        // All six runs: the tables are read whole. One run of six: through the run index.
        for filter in ["", "params.lr = '0.1'", "metrics.acc > 3"] {
            let search = RunSearch {
                experiment_ids: vec![0],
                filter: filter.into(),
                view_type: 1,
                order_by: vec!["metrics.acc DESC".into()],
                offset: 0,
                limit: None,
            };
            let read = store.search_run_columns(&search).unwrap();
            let built = RunColumns::from_runs(store.search_runs(&search).unwrap());
            assert!(!read.attributes.is_empty(), "{filter}");
            assert_eq!(described(&read), described(&built), "{filter}");
        }
    }

    #[test]
    fn filter_text_never_reaches_the_sql() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = store_with_runs(dir.path());
        for hostile in [
            "params.lr = '0.1'' OR ''1''=''1'",
            "tags.`x' OR 1=1 --` = 'a'",
            "params.\"lr\"\" OR 1=1 --\" = 'x'",
        ] {
            match search(&store, hostile, &[]) {
                Ok(found) => assert!(found.is_empty(), "{hostile} matched {found:?}"),
                Err(error) => assert!(matches!(error, Error::InvalidParameter(_)), "{error}"),
            }
        }
        let ordered = search(&store, "", &["tags.`a) DESC; DROP TABLE runs; --` DESC"]);
        assert_eq!(ordered.unwrap().len(), 6);
        assert_eq!(search(&store, "", &[]).unwrap().len(), 6);
    }
}

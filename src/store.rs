//! The SQLite tracking store: MLflow's tables, read and written the way MLflow does.
//!
//! Every write runs in a `BEGIN IMMEDIATE` transaction: the write lock is taken up front, so
//! two processes never hold read locks that both wait to upgrade (SQLite would fail one of
//! them at once instead of waiting out the busy timeout).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{
    params, Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior,
};
use rustc_hash::FxHashMap;

use crate::backend::Backend;
use crate::checkpointer::{Checkpointer, WAL_CAP};
use crate::entities::{
    now_millis, sanitize_metric_value, stored_metric_value, Dataset, DatasetInput, Experiment,
    Metric, Number, Run, RunInfo, RunIo, LIFECYCLE_ACTIVE, LIFECYCLE_DELETED, RUN_NAME_TAG,
};
use crate::error::{Error, Result};
use crate::run_columns::RunColumns;
use crate::schema;
use crate::search;
use crate::series::{Series, SeriesCache};
use crate::validation::{self, python_repr};

/// MLflow's busy timeout; `FASTFLOW_BUSY_TIMEOUT_MS` overrides it.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(20);

fn busy_timeout() -> Duration {
    std::env::var("FASTFLOW_BUSY_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(BUSY_TIMEOUT)
}

/// One metric point on its way into the `metrics` table.
#[derive(Debug, Clone, Copy)]
pub struct MetricRow<'a> {
    pub run_id: &'a str,
    pub key: &'a str,
    pub value: f64,
    pub timestamp: Number,
    pub step: Number,
}

pub struct Store {
    conn: Connection,
    /// Opened on read-only media: reads only, and nothing to checkpoint.
    read_only: bool,
    default_artifact_root: String,
    /// The WAL beside the file, when the store runs in WAL mode (commits at NORMAL are only
    /// cheaper there).
    wal: Option<PathBuf>,
    /// Metric commits wait for the disk (`synchronous = FULL`); off for `make_visible`.
    durable: bool,
    /// A commit at NORMAL left WAL frames the disk may not hold yet.
    unsynced: bool,
    /// Histories read lately, valid while `PRAGMA data_version` (changed by other
    /// connections' commits) stays as it was when they were read.
    series: RefCell<(i64, SeriesCache)>,
    /// Copies the WAL into the file beside the writer (see `checkpointer`).
    checkpointer: Option<Checkpointer>,
}

fn run_not_found(run_id: &str) -> Error {
    Error::not_found(format!("Run with id={run_id} not found"))
}

fn experiment_not_found(experiment_id: &str) -> Error {
    Error::not_found(format!("No Experiment with id={experiment_id} exists"))
}

pub(crate) const RUN_COLUMNS: &str =
    "run_uuid, experiment_id, name, user_id, status, start_time, end_time, \
                           artifact_uri, lifecycle_stage";

pub(crate) fn run_info_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RunInfo> {
    let experiment_id: Option<i64> = row.get(1)?;
    Ok(RunInfo {
        run_id: row.get(0)?,
        experiment_id: experiment_id.map(|e| e.to_string()).unwrap_or_default(),
        run_name: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
        user_id: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
        status: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
        start_time: row.get(5)?,
        end_time: row.get(6)?,
        artifact_uri: row.get::<_, Option<String>>(7)?.unwrap_or_default(),
        lifecycle_stage: row.get::<_, Option<String>>(8)?.unwrap_or_default(),
    })
}

/// `append_to_uri_path` for the plain paths and URIs MLflow keeps as artifact locations.
fn join_uri(base: &str, tail: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), tail)
}

/// `Path.mkdir(parents=True, exist_ok=True)`, which MLflow runs on a SQLite store's
/// directory; a failure names the directory it stopped at, as Python's does.
fn make_dirs(dir: &Path) -> Result<()> {
    match std::fs::create_dir(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            match dir.parent() {
                Some(parent) if parent != dir && !parent.as_os_str().is_empty() => {
                    make_dirs(parent)?
                }
                _ => return Err(Error::os(&err, dir)),
            }
            match std::fs::create_dir(dir) {
                Err(err) if !dir.is_dir() => Err(Error::os(&err, dir)),
                _ => Ok(()),
            }
        }
        Err(_) if dir.is_dir() => Ok(()),
        Err(err) => Err(Error::os(&err, dir)),
    }
}

fn is_read_only_error(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::CannotOpen | rusqlite::ErrorCode::ReadOnly)
    )
}

/// `file:` URI of `path` with `immutable=1`; the path is percent-encoded where SQLite's
/// URI parser would read it otherwise.
fn immutable_uri(path: &Path) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    PathBuf::from(uri)
}

/// Rows one INSERT carries. Each execution of a statement opens and closes cursors on the
/// table and its indexes and allocates for them; many rows per execution pay that once.
const ROWS_PER_INSERT: usize = 64;

fn multi_row_insert(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES ",
    );
    for i in 0..rows {
        if i > 0 {
            sql.push(',');
        }
        sql.push_str("(?,?,?,?,?,?)");
    }
    sql
}

fn bind_metric_rows(
    insert: &mut rusqlite::CachedStatement<'_>,
    rows: &[&MetricRow<'_>],
) -> Result<()> {
    for (i, row) in rows.iter().enumerate() {
        let (value, is_nan) = sanitize_metric_value(row.value);
        let at = i * 6;
        insert.raw_bind_parameter(at + 1, row.key)?;
        insert.raw_bind_parameter(at + 2, value)?;
        insert.raw_bind_parameter(at + 3, row.timestamp)?;
        insert.raw_bind_parameter(at + 4, row.run_id)?;
        insert.raw_bind_parameter(at + 5, row.step)?;
        insert.raw_bind_parameter(at + 6, is_nan)?;
    }
    Ok(())
}

impl Store {
    /// Opens the store at `path` as MLflow does: missing parent directories are created, a
    /// new file gets MLflow's schema, and a store of another schema version is refused. On
    /// read-only media the store is opened for reading; writes then fail as MLflow's do.
    pub fn open(path: &Path, default_artifact_root: &str) -> Result<Store> {
        if let Some(parent) = path.parent() {
            make_dirs(parent)?;
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let opened = Connection::open_with_flags(path, flags);
        let writable = match opened {
            // SQLite falls back to a read-only handle when the file cannot be written.
            Ok(conn) if !conn.is_readonly(rusqlite::MAIN_DB)? => Some(conn),
            Ok(_) => None,
            Err(err) if path.exists() && is_read_only_error(&err) => None,
            Err(err) => return Err(err.into()),
        };
        let Some(mut conn) = writable else {
            return Self::open_read_only(path, default_artifact_root);
        };
        conn.busy_timeout(busy_timeout())?;
        // WAL lets readers (mlflow ui, other workers) proceed while the writer commits; the
        // mode is stored in the file, and MLflow reads such stores as they are.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        let wal = mode.eq_ignore_ascii_case("wal").then(|| {
            let mut name = path.as_os_str().to_owned();
            name.push("-wal");
            PathBuf::from(name)
        });
        // Some system builds of SQLite zero every freed page (SECURE_DELETE); a store that
        // only grows gains nothing from it and its inserts lose several percent.
        conn.execute_batch(
            "PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = true; \
             PRAGMA synchronous = FULL; PRAGMA secure_delete = OFF;",
        )?;
        schema::ensure(&mut conn, default_artifact_root)?;
        Ok(Store {
            conn,
            read_only: false,
            default_artifact_root: default_artifact_root.to_string(),
            wal,
            durable: true,
            unsynced: false,
            series: RefCell::default(),
            checkpointer: None,
        })
    }

    /// Moves checkpoints to a thread of their own (see `checkpointer`) where that is safe: a
    /// writable store in WAL mode, in a process whose SQLite is not in the safe mode. Without
    /// the thread (it could not start), SQLite checkpoints inside commits as before.
    pub fn with_background_checkpoints(mut self, path: &Path) -> Store {
        let safe_mode = crate::sqlite_library::chosen().is_some_and(|c| c.safe_mode);
        let Some(wal) = self.wal.clone().filter(|_| !self.read_only && !safe_mode) else {
            return self;
        };
        let Ok(checkpointer) = Checkpointer::start(path, &wal) else {
            return self;
        };
        if self
            .conn
            .execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .is_ok()
        {
            self.checkpointer = Some(checkpointer);
        }
        self
    }

    /// The history read earlier, unless another connection changed the store since.
    fn cached_series(&self, run_id: &str, key: &str) -> Result<Option<Arc<Series>>> {
        let version: i64 = self
            .conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))?;
        let mut cached = self.series.borrow_mut();
        if cached.0 != version {
            cached.0 = version;
            cached.1.clear();
        }
        Ok(cached.1.get(run_id, key))
    }

    /// A history in the order of MLflow's (run_uuid, key, step) index: SQLite sorts
    /// nothing, and the few points of one step are put in timestamp order afterwards.
    fn read_series_by_step(&self, run_id: &str, key: &str) -> Result<Series> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT timestamp, step, value, is_nan FROM metrics \
             WHERE run_uuid = ?1 AND key = ?2 ORDER BY step",
        )?;
        let mut series = Series::default();
        let mut rows = stmt.query(params![run_id, key])?;
        while let Some(row) = rows.next()? {
            series.push(
                row.get(0)?,
                row.get(1)?,
                stored_metric_value(row.get(2)?, row.get(3)?),
            );
        }
        Ok(series.by_step())
    }

    fn open_read_only(path: &Path, default_artifact_root: &str) -> Result<Store> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(busy_timeout())?;
        let conn = match schema::verify_read_only(&conn) {
            Ok(()) => conn,
            // A WAL store whose -shm file is gone cannot be read where that file cannot be
            // created. Nobody can be writing it then (a writer keeps -shm beside the file),
            // so SQLite may read the file as immutable, which needs no -shm at all.
            Err(Error::Database { .. }) => {
                drop(conn);
                let conn = Connection::open_with_flags(immutable_uri(path), flags)?;
                schema::verify_read_only(&conn)?;
                conn
            }
            Err(err) => return Err(err),
        };
        conn.execute_batch("PRAGMA case_sensitive_like = true;")?;
        Ok(Store {
            conn,
            read_only: true,
            default_artifact_root: default_artifact_root.to_string(),
            wal: None,
            durable: true,
            unsynced: false,
            series: RefCell::default(),
            checkpointer: None,
        })
    }

    fn write(&mut self) -> Result<Transaction<'_>> {
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.before_write(WAL_CAP);
        }
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    fn experiment_from_id(conn: &Connection, id: i64) -> Result<Option<Experiment>> {
        let row = conn
            .query_row(
                "SELECT experiment_id, name, artifact_location, lifecycle_stage, creation_time, \
                 last_update_time FROM experiments WHERE experiment_id = ?1",
                [id],
                |row| {
                    Ok(Experiment {
                        experiment_id: row.get::<_, i64>(0)?.to_string(),
                        name: row.get(1)?,
                        artifact_location: row.get::<_, Option<String>>(2)?.unwrap_or_default(),
                        lifecycle_stage: row.get::<_, Option<String>>(3)?.unwrap_or_default(),
                        creation_time: row.get(4)?,
                        last_update_time: row.get(5)?,
                        tags: Vec::new(),
                    })
                },
            )
            .optional()?;
        let Some(mut experiment) = row else {
            return Ok(None);
        };
        // No ORDER BY, as MLflow reads them: rows come in the order they were inserted.
        let mut stmt =
            conn.prepare_cached("SELECT key, value FROM experiment_tags WHERE experiment_id = ?1")?;
        experiment.tags = stmt
            .query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        Ok(Some(experiment))
    }

    fn set_experiment_stage(&mut self, experiment_id: &str, stage: &str) -> Result<()> {
        let id = validation::parse_experiment_id(experiment_id)?;
        let tx = self.write()?;
        let current: Option<String> = tx
            .query_row(
                "SELECT lifecycle_stage FROM experiments WHERE experiment_id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current) = current else {
            return Err(experiment_not_found(&id.to_string()));
        };
        if stage == LIFECYCLE_DELETED && current != LIFECYCLE_ACTIVE {
            return Err(experiment_not_found(&id.to_string()));
        }
        if stage == LIFECYCLE_ACTIVE && current != LIFECYCLE_DELETED {
            return Err(experiment_not_found(&id.to_string()));
        }
        let now = now_millis();
        tx.execute(
            "UPDATE experiments SET lifecycle_stage = ?1, last_update_time = ?2 \
             WHERE experiment_id = ?3",
            params![stage, now, id],
        )?;
        let deleted_time = (stage == LIFECYCLE_DELETED).then_some(now);
        let (from, to) = if stage == LIFECYCLE_DELETED {
            (LIFECYCLE_ACTIVE, LIFECYCLE_DELETED)
        } else {
            (LIFECYCLE_DELETED, LIFECYCLE_ACTIVE)
        };
        tx.execute(
            "UPDATE runs SET lifecycle_stage = ?1, deleted_time = ?2 \
             WHERE experiment_id = ?3 AND lifecycle_stage = ?4",
            params![to, deleted_time, id, from],
        )?;
        tx.commit()?;
        Ok(())
    }

    pub fn get_run_info(&self, run_id: &str) -> Result<RunInfo> {
        self.conn
            .query_row(
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE run_uuid = ?1"),
                [run_id],
                run_info_from_row,
            )
            .optional()?
            .ok_or_else(|| run_not_found(run_id))
    }

    /// Rows of a run's params or tags in the order MLflow's reads list them (no ORDER BY:
    /// SQLite walks the run's index, so rows come in the order they were inserted).
    fn pairs(&self, sql: &str, run_id: &str) -> Result<Vec<(String, Option<String>)>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map([run_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// The run's inputs and outputs, read as MLflow's `get_run` reads them. The statements
    /// are MLflow's own (its SQLAlchemy emits them), so that SQLite picks the same plans and
    /// the lists come out in MLflow's order, which none of them sets.
    fn run_io(&self, run_id: &str) -> Result<RunIo> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT inputs.input_uuid, inputs.destination_id AS run_uuid, \
             datasets.dataset_uuid, datasets.experiment_id, datasets.name, datasets.digest, \
             datasets.dataset_source_type, datasets.dataset_source, datasets.dataset_schema, \
             datasets.dataset_profile, input_tags.input_uuid, input_tags.name, \
             input_tags.value \
             FROM inputs JOIN datasets ON inputs.source_id = datasets.dataset_uuid \
             LEFT OUTER JOIN input_tags ON input_tags.input_uuid = inputs.input_uuid \
             WHERE inputs.destination_type = ?1 AND inputs.destination_id IN (?2) \
             ORDER BY run_uuid",
        )?;
        let mut rows = stmt.query(params!["RUN", run_id])?;
        // MLflow keys a run's inputs by dataset, in the order each dataset first appears.
        let mut dataset_uuids: Vec<String> = Vec::new();
        let mut dataset_inputs: Vec<DatasetInput> = Vec::new();
        while let Some(row) = rows.next()? {
            let dataset_uuid: String = row.get(2)?;
            let at = match dataset_uuids.iter().position(|u| *u == dataset_uuid) {
                Some(at) => at,
                None => {
                    dataset_uuids.push(dataset_uuid);
                    dataset_inputs.push(DatasetInput {
                        dataset: Dataset {
                            name: row.get(4)?,
                            digest: row.get(5)?,
                            source_type: row.get(6)?,
                            source: row.get(7)?,
                            schema: row.get(8)?,
                            profile: row.get(9)?,
                        },
                        tags: Vec::new(),
                    });
                    dataset_inputs.len() - 1
                }
            };
            let tag: Option<String> = row.get(11)?;
            if let Some(key) = tag {
                dataset_inputs[at].tags.push((key, row.get(12)?));
            }
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT inputs.input_uuid, inputs.source_type, inputs.source_id, \
             inputs.destination_type, inputs.destination_id, inputs.step \
             FROM inputs \
             WHERE inputs.source_type = ?1 AND inputs.source_id = ?2 \
             AND inputs.destination_type = ?3",
        )?;
        let model_inputs = stmt
            .query_map(params!["RUN_INPUT", run_id, "MODEL_INPUT"], |r| r.get(4))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        let model_outputs = stmt
            .query_map(params!["RUN_OUTPUT", run_id, "MODEL_OUTPUT"], |r| {
                Ok((r.get(4)?, r.get(5)?))
            })?
            .collect::<rusqlite::Result<Vec<(String, i64)>>>()?;
        Ok(RunIo {
            dataset_inputs,
            model_inputs,
            model_outputs,
        })
    }

    fn active_run_in(tx: &Transaction<'_>, run_id: &str) -> Result<()> {
        let stage: Option<String> = tx
            .query_row(
                "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()?;
        match stage {
            None => Err(run_not_found(run_id)),
            Some(stage) if stage != LIFECYCLE_ACTIVE => Err(run_not_active(run_id, &stage)),
            Some(_) => Ok(()),
        }
    }

    fn set_run_stage(&mut self, run_id: &str, stage: &str) -> Result<()> {
        let tx = self.write()?;
        if tx
            .query_row("SELECT 1 FROM runs WHERE run_uuid = ?1", [run_id], |_| {
                Ok(())
            })
            .optional()?
            .is_none()
        {
            return Err(run_not_found(run_id));
        }
        let deleted_time = (stage == LIFECYCLE_DELETED).then(now_millis);
        tx.execute(
            "UPDATE runs SET lifecycle_stage = ?1, deleted_time = ?2 WHERE run_uuid = ?3",
            params![stage, deleted_time, run_id],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// `rows` come in the order they were logged. MLflow gives a key its `latest_metrics`
    /// row when the key is first logged, and readers list a run's metrics in row order, so
    /// new keys are added in the order they first appear.
    fn insert_metrics_in(tx: &Transaction<'_>, rows: &[MetricRow<'_>]) -> Result<()> {
        // Per (run, key) the newest point of this batch; on a tie the earlier point stays,
        // as a later equal point would not replace it in MLflow either.
        let mut latest: Vec<(&str, &str, Number, Number, f64, bool)> = Vec::new();
        let mut at: FxHashMap<(&str, &str), usize> = FxHashMap::default();
        // Points of one series come in stretches; the writer's rows share one string per
        // name, so an address match finds the stretch's entry without hashing.
        let mut stretch: Option<(*const u8, *const u8, usize)> = None;
        for row in rows {
            let (value, is_nan) = sanitize_metric_value(row.value);
            let candidate = (row.run_id, row.key, row.step, row.timestamp, value, is_nan);
            let same = stretch
                .filter(|&(run, key, _)| run == row.run_id.as_ptr() && key == row.key.as_ptr());
            let found = match same {
                Some((.., i))
                    if latest[i].0.len() == row.run_id.len()
                        && latest[i].1.len() == row.key.len() =>
                {
                    Some(i)
                }
                _ => at.get(&(row.run_id, row.key)).copied(),
            };
            let i = match found {
                Some(i) => {
                    if newer(&candidate, &latest[i]) {
                        latest[i] = candidate;
                    }
                    i
                }
                None => {
                    at.insert((row.run_id, row.key), latest.len());
                    latest.push(candidate);
                    latest.len() - 1
                }
            };
            stretch = Some((row.run_id.as_ptr(), row.key.as_ptr(), i));
        }
        {
            // Sorted input fills the metrics primary-key index in order; a batch of one
            // series logged in order is sorted already.
            let in_index_order = |a: &&MetricRow<'_>, b: &&MetricRow<'_>| {
                (a.run_id, a.key)
                    .cmp(&(b.run_id, b.key))
                    .then(a.timestamp.cmp_value(b.timestamp))
                    .then(a.step.cmp_value(b.step))
            };
            let mut order: Vec<&MetricRow<'_>> = rows.iter().collect();
            if !order.is_sorted_by(|a, b| in_index_order(a, b).is_le()) {
                order.sort_by(in_index_order);
            }
            let mut chunks = order.chunks_exact(ROWS_PER_INSERT);
            let mut insert = tx.prepare_cached(&multi_row_insert(ROWS_PER_INSERT))?;
            for chunk in chunks.by_ref() {
                bind_metric_rows(&mut insert, chunk)?;
                insert.raw_execute()?;
            }
            // The rest one row at a time, so that the statement cache holds two statements
            // rather than one per remainder length.
            let mut insert = tx.prepare_cached(&multi_row_insert(1))?;
            for row in chunks.remainder() {
                bind_metric_rows(&mut insert, std::slice::from_ref(row))?;
                insert.raw_execute()?;
            }
        }
        let mut upsert = tx.prepare_cached(
            "INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value, \
             timestamp = excluded.timestamp, step = excluded.step, is_nan = excluded.is_nan \
             WHERE (excluded.step, excluded.timestamp, excluded.value) > \
             (latest_metrics.step, latest_metrics.timestamp, latest_metrics.value)",
        )?;
        for (run_id, key, step, timestamp, value, is_nan) in latest {
            upsert.execute(params![key, value, timestamp, step, is_nan, run_id])?;
        }
        Ok(())
    }
}

/// MLflow's order of metric points: by step, then timestamp, then the stored value.
fn newer(
    a: &(&str, &str, Number, Number, f64, bool),
    b: &(&str, &str, Number, Number, f64, bool),
) -> bool {
    use std::cmp::Ordering;
    a.2.cmp_value(b.2)
        .then(a.3.cmp_value(b.3))
        .then(a.4.partial_cmp(&b.4).unwrap_or(Ordering::Equal))
        == Ordering::Greater
}

impl Backend for Store {
    /// `wal_checkpoint(TRUNCATE)`, so that a copy of the `.db` file alone holds every commit.
    /// A reader on an older snapshot keeps the checkpoint from finishing (SQLite reports
    /// busy); waiting the busy timeout out would stall the writer behind a reader, so the
    /// checkpoint copies what it can now and the next one finishes the job.
    fn checkpoint(&mut self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        if let Some(checkpointer) = &self.checkpointer {
            checkpointer.wait_idle();
        }
        self.conn.busy_timeout(Duration::ZERO)?;
        let done = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                r.get::<_, i64>(0)
            });
        self.conn.busy_timeout(busy_timeout())?;
        match done {
            Ok(_) => Ok(()),
            Err(err)
                if matches!(
                    err.sqlite_error_code(),
                    Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
                ) =>
            {
                Ok(())
            }
            Err(err) => Err(err.into()),
        }
    }

    /// In WAL mode a commit at `synchronous = NORMAL` is as visible to other connections as
    /// one at FULL, but skips the fsync: the WAL is synced later (`sync`, a checkpoint, or
    /// the next commit at FULL). Other journal modes keep FULL, whose visibility costs the
    /// same.
    fn set_durable(&mut self, durable: bool) -> Result<()> {
        if self.wal.is_none() || durable == self.durable {
            return Ok(());
        }
        let level = if durable { "FULL" } else { "NORMAL" };
        self.conn
            .execute_batch(&format!("PRAGMA synchronous = {level};"))?;
        self.durable = durable;
        Ok(())
    }

    /// What a commit at FULL would have done for the frames committed at NORMAL: an fsync of
    /// the WAL. A WAL that is gone was checkpointed into the file, which that synced.
    fn sync(&mut self) -> Result<()> {
        let Some(wal) = self.wal.as_ref().filter(|_| self.unsynced) else {
            return Ok(());
        };
        match std::fs::File::open(wal).and_then(|file| file.sync_data()) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(Error::os(&err, wal)),
        }
        self.unsynced = false;
        Ok(())
    }

    /// Back to MLflow's rollback journal, so that the file alone is the store (readable on
    /// read-only media and after a copy); only possible when no other connection has the
    /// store open, else the last one to leave does it. The next open turns WAL on again.
    fn checkpoint_gate(&self) -> Option<Arc<parking_lot::Mutex<()>>> {
        self.checkpointer.as_ref().map(Checkpointer::gate)
    }

    fn leave(&mut self) -> Result<()> {
        self.checkpoint()?;
        if self.read_only {
            return Ok(());
        }
        if let Some(mut checkpointer) = self.checkpointer.take() {
            checkpointer.stop();
            self.conn
                .execute_batch("PRAGMA wal_autocheckpoint = 1000;")?;
        }
        self.conn.busy_timeout(Duration::ZERO)?;
        let _ = self
            .conn
            .query_row("PRAGMA journal_mode = DELETE", [], |_| Ok(()));
        self.conn.busy_timeout(busy_timeout())?;
        Ok(())
    }

    // ---- experiments -------------------------------------------------------------------

    fn create_experiment(
        &mut self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[(String, Option<String>)],
    ) -> Result<String> {
        validation::validate_experiment_name(name)?;
        for (key, value) in tags {
            validation::validate_experiment_tag(key, value.as_deref())?;
        }
        let root = self.default_artifact_root.clone();
        let tx = self.write()?;
        let now = now_millis();
        let inserted = tx.execute(
            "INSERT INTO experiments (name, artifact_location, lifecycle_stage, \
             creation_time, last_update_time) VALUES (?1, ?2, 'active', ?3, ?3)",
            params![name, artifact_location, now],
        );
        if let Err(err) = inserted {
            if let rusqlite::Error::SqliteFailure(e, _) = &err {
                if e.code == rusqlite::ErrorCode::ConstraintViolation {
                    // MLflow passes on SQLAlchemy's account of the failed insert.
                    let parameters = [
                        sqlalchemy_repr(&python_repr(name)),
                        "'default'".to_string(),
                        artifact_location
                            .map_or("None".to_string(), |l| sqlalchemy_repr(&python_repr(l))),
                        "'active'".to_string(),
                        now.to_string(),
                        now.to_string(),
                    ];
                    return Err(Error::AlreadyExists(format!(
                        "Experiment(name={name}) already exists. Error: (sqlite3.IntegrityError) \
                         UNIQUE constraint failed: experiments.workspace, experiments.name\n\
                         [SQL: INSERT INTO experiments (name, workspace, artifact_location, \
                         lifecycle_stage, creation_time, last_update_time) VALUES (?, ?, ?, ?, \
                         ?, ?)]\n[parameters: ({})]\n(Background on this error at: \
                         https://sqlalche.me/e/21/gkpj)",
                        parameters.join(", ")
                    )));
                }
            }
            return Err(err.into());
        }
        let id = tx.last_insert_rowid();
        if artifact_location.is_none() {
            tx.execute(
                "UPDATE experiments SET artifact_location = ?1 WHERE experiment_id = ?2",
                params![join_uri(&root, &id.to_string()), id],
            )?;
        }
        for (key, value) in tags {
            tx.execute(
                "INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key, experiment_id) DO UPDATE SET value = excluded.value",
                params![key, value, id],
            )?;
        }
        tx.commit()?;
        Ok(id.to_string())
    }

    fn get_experiment(&self, experiment_id: &str) -> Result<Experiment> {
        let id = validation::parse_experiment_id(experiment_id)?;
        Self::experiment_from_id(&self.conn, id)?
            .ok_or_else(|| experiment_not_found(&id.to_string()))
    }

    fn get_experiment_by_name(&self, name: &str) -> Result<Option<Experiment>> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT experiment_id FROM experiments WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        match id {
            Some(id) => Self::experiment_from_id(&self.conn, id),
            None => Ok(None),
        }
    }

    fn delete_experiment(&mut self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LIFECYCLE_DELETED)
    }

    fn restore_experiment(&mut self, experiment_id: &str) -> Result<()> {
        self.set_experiment_stage(experiment_id, LIFECYCLE_ACTIVE)
    }

    fn set_experiment_tags(
        &mut self,
        experiment_id: &str,
        tags: &[(String, String)],
    ) -> Result<()> {
        for (key, value) in tags {
            validation::validate_experiment_tag(key, Some(value))?;
        }
        let experiment = self.get_experiment(experiment_id)?;
        check_experiment_active(&experiment)?;
        let tx = self.write()?;
        for (key, value) in tags {
            // Updated in place, as MLflow's merge does: the tag keeps its place.
            tx.execute(
                "INSERT INTO experiment_tags (key, value, experiment_id) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key, experiment_id) DO UPDATE SET value = excluded.value",
                params![
                    key,
                    value,
                    experiment.experiment_id.parse::<i64>().unwrap_or(0)
                ],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    // ---- runs --------------------------------------------------------------------------

    fn create_run(
        &mut self,
        experiment_id: &str,
        user_id: &str,
        start_time: i64,
        run_name: &str,
        tags: &[(String, String)],
    ) -> Result<Run> {
        let experiment = self.get_experiment(experiment_id)?;
        check_experiment_active(&experiment)?;
        let run_id = uuid::Uuid::new_v4().simple().to_string();
        let artifact_uri = join_uri(
            &join_uri(&experiment.artifact_location, &run_id),
            "artifacts",
        );
        let mut tags: Vec<(String, String)> = tags.to_vec();
        if !tags.iter().any(|(k, _)| k == RUN_NAME_TAG) {
            tags.push((RUN_NAME_TAG.to_string(), run_name.to_string()));
        }
        let tx = self.write()?;
        tx.execute(
            "INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, \
             user_id, status, start_time, end_time, source_version, lifecycle_stage, \
             artifact_uri, experiment_id) VALUES (?1, ?2, 'UNKNOWN', '', '', ?3, 'RUNNING', ?4, \
             NULL, '', 'active', ?5, ?6)",
            params![
                run_id,
                run_name,
                user_id,
                start_time,
                artifact_uri,
                experiment.experiment_id.parse::<i64>().unwrap_or(0)
            ],
        )?;
        for (key, value) in &tags {
            tx.execute(
                "INSERT OR REPLACE INTO tags (key, value, run_uuid) VALUES (?1, ?2, ?3)",
                params![key, value, run_id],
            )?;
        }
        tx.commit()?;
        self.get_run(&run_id)
    }

    fn get_run(&self, run_id: &str) -> Result<Run> {
        let info = self.get_run_info(run_id)?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value, timestamp, step, is_nan FROM latest_metrics WHERE run_uuid = ?1",
        )?;
        let metrics = stmt
            .query_map([run_id], |r| {
                Ok(Metric {
                    key: r.get(0)?,
                    value: stored_metric_value(r.get(1)?, r.get(4)?),
                    timestamp: r.get::<_, Option<Number>>(2)?.unwrap_or(Number::Int(0)),
                    step: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let params = self
            .pairs("SELECT key, value FROM params WHERE run_uuid = ?1", run_id)?
            .into_iter()
            .map(|(k, v)| (k, v.unwrap_or_default()))
            .collect();
        let tags = self.pairs("SELECT key, value FROM tags WHERE run_uuid = ?1", run_id)?;
        Ok(Run {
            info,
            metrics,
            params,
            tags,
            io: RunIo::default(),
        })
    }

    fn get_run_with_io(&self, run_id: &str) -> Result<Run> {
        let mut run = self.get_run(run_id)?;
        run.io = self.run_io(run_id)?;
        Ok(run)
    }

    /// One page of `search_runs`, in MLflow's order.
    fn search_runs(&self, search: &search::RunSearch) -> Result<Vec<Run>> {
        let ids = search::search_run_ids(&self.conn, search)?;
        search::load_runs(&self.conn, &ids)
    }

    fn search_run_columns(&self, search: &search::RunSearch) -> Result<RunColumns> {
        search::search_run_columns(&self.conn, search)
    }

    /// One page of `search_experiments`, in MLflow's order.
    fn search_experiments(&self, search: &search::ExperimentSearch) -> Result<Vec<Experiment>> {
        let ids = search::search_experiment_ids(&self.conn, search)?;
        let mut experiments = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(experiment) = Self::experiment_from_id(&self.conn, id)? {
                experiments.push(experiment);
            }
        }
        Ok(experiments)
    }

    /// The run's lifecycle stage, or `None` when the store has no such run.
    fn run_lifecycle(&self, run_id: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT lifecycle_stage FROM runs WHERE run_uuid = ?1",
                [run_id],
                |r| r.get(0),
            )
            .optional()?)
    }

    fn update_run_info(
        &mut self,
        run_id: &str,
        status: Option<&str>,
        end_time: Option<i64>,
        run_name: Option<&str>,
    ) -> Result<RunInfo> {
        let tx = self.write()?;
        Self::active_run_in(&tx, run_id)?;
        if let Some(status) = status {
            tx.execute(
                "UPDATE runs SET status = ?1 WHERE run_uuid = ?2",
                params![status, run_id],
            )?;
        }
        if let Some(end_time) = end_time {
            tx.execute(
                "UPDATE runs SET end_time = ?1 WHERE run_uuid = ?2",
                params![end_time, run_id],
            )?;
        }
        if let Some(name) = run_name.filter(|n| !n.is_empty()) {
            set_run_name(&tx, run_id, name)?;
        }
        tx.commit()?;
        self.get_run_info(run_id)
    }

    fn delete_run(&mut self, run_id: &str) -> Result<()> {
        self.set_run_stage(run_id, LIFECYCLE_DELETED)
    }

    fn restore_run(&mut self, run_id: &str) -> Result<()> {
        self.set_run_stage(run_id, LIFECYCLE_ACTIVE)
    }

    fn run_ids_of_experiment(&self, experiment_id: &str) -> Result<Vec<String>> {
        let id = validation::parse_experiment_id(experiment_id)?;
        let mut stmt = self
            .conn
            .prepare_cached("SELECT run_uuid FROM runs WHERE experiment_id = ?1")?;
        let ids = stmt
            .query_map([id], |r| r.get(0))?
            .collect::<rusqlite::Result<Vec<String>>>()?;
        Ok(ids)
    }

    // ---- params and tags ---------------------------------------------------------------

    /// Writes params that are new and refuses any that would change a logged value.
    /// `single` picks MLflow's wording for `log_param` over the one for `log_batch`.
    fn log_params(
        &mut self,
        run_id: &str,
        params: &[(String, String)],
        single: bool,
    ) -> Result<()> {
        if params.is_empty() {
            return Ok(());
        }
        let tx = self.write()?;
        Self::active_run_in(&tx, run_id)?;
        let mut existing: FxHashMap<String, String> = FxHashMap::default();
        {
            let mut stmt =
                tx.prepare_cached("SELECT key, value FROM params WHERE run_uuid = ?1")?;
            let mut rows = stmt.query([run_id])?;
            while let Some(row) = rows.next()? {
                existing.insert(row.get(0)?, row.get(1)?);
            }
        }
        let mut conflicts = Vec::new();
        for (key, value) in params {
            if let Some(old) = existing.get(key) {
                if old != value {
                    conflicts.push((key.as_str(), old.as_str(), value.as_str()));
                }
            }
        }
        if let Some(&(key, old, new)) = conflicts.first() {
            let message = if single {
                format!(
                    "Changing param values is not allowed. Param with key='{key}' was already \
                     logged with value='{old}' for run ID='{run_id}'. Attempted logging new value \
                     '{new}'."
                )
            } else {
                let listed: Vec<String> = conflicts
                    .iter()
                    .map(|(k, o, n)| {
                        format!(
                            "{{'key': {}, 'old_value': {}, 'new_value': {}}}",
                            python_repr(k),
                            python_repr(o),
                            python_repr(n)
                        )
                    })
                    .collect();
                format!(
                    "Changing param values is not allowed. Params were already logged='[{}]' for \
                     run ID='{run_id}'.",
                    listed.join(", ")
                )
            };
            return Err(Error::invalid(message));
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO params (key, value, run_uuid) VALUES (?1, ?2, ?3)",
            )?;
            for (key, value) in params {
                insert.execute(params![key, value, run_id])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Upserts tags; `mlflow.runName` also renames the run, as MLflow does.
    fn set_tags(&mut self, run_id: &str, tags: &[(String, Option<String>)]) -> Result<()> {
        if tags.is_empty() {
            return Ok(());
        }
        let tx = self.write()?;
        Self::active_run_in(&tx, run_id)?;
        for (key, value) in tags {
            if key == RUN_NAME_TAG {
                // MLflow ignores an empty name rather than clearing the run's name.
                if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
                    set_run_name(&tx, run_id, value)?;
                }
            } else {
                tx.execute(
                    "INSERT INTO tags (key, value, run_uuid) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
                    params![key, value, run_id],
                )?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_tag(&mut self, run_id: &str, key: &str) -> Result<()> {
        let tx = self.write()?;
        Self::active_run_in(&tx, run_id)?;
        let removed = tx.execute(
            "DELETE FROM tags WHERE run_uuid = ?1 AND key = ?2",
            params![run_id, key],
        )?;
        if removed == 0 {
            return Err(Error::not_found(format!(
                "No tag with name: {key} in run with id {run_id}"
            )));
        }
        tx.commit()?;
        Ok(())
    }

    // ---- metrics -----------------------------------------------------------------------

    /// Writes points in one transaction and moves `latest_metrics` forward. A point equal to
    /// a stored one is skipped, as the primary key would make MLflow skip it.
    fn insert_metrics(&mut self, rows: &[MetricRow<'_>]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let changes = self.conn.total_changes();
        {
            let mut cached = self.series.borrow_mut();
            if !cached.1.is_empty() {
                for row in rows {
                    cached.1.forget(row.run_id, row.key);
                }
            }
        }
        let tx = self.write()?;
        Self::insert_metrics_in(&tx, rows)?;
        tx.commit()?;
        if !self.durable {
            self.unsynced = true;
        } else if self.conn.total_changes() > changes {
            // A commit at FULL that wrote a frame synced the whole WAL, earlier frames too.
            self.unsynced = false;
        }
        Ok(())
    }

    fn metric_series(&self, run_id: &str, key: &str) -> Result<Series> {
        Ok((*self.metric_series_by_step(run_id, key)?)
            .clone()
            .by_time())
    }

    fn metric_series_by_step(&self, run_id: &str, key: &str) -> Result<Arc<Series>> {
        if let Some(series) = self.cached_series(run_id, key)? {
            return Ok(series);
        }
        let series = Arc::new(self.read_series_by_step(run_id, key)?);
        self.series.borrow_mut().1.put(run_id, key, series.clone());
        Ok(series)
    }

    fn metric_series_between_steps(
        &self,
        run_id: &str,
        key: &str,
        first: i64,
        last: i64,
    ) -> Result<crate::series::Series> {
        if let Some(series) = self.cached_series(run_id, key)? {
            let inside = crate::series::step_range(&series, first, last);
            return Ok(series.select(&inside.collect::<Vec<_>>()));
        }
        // A range of the (run_uuid, key, step) index: a zoomed chart reads only its points.
        let mut stmt = self.conn.prepare_cached(
            "SELECT timestamp, step, value, is_nan FROM metrics \
             WHERE run_uuid = ?1 AND key = ?2 AND step >= ?3 AND step <= ?4 ORDER BY step",
        )?;
        let mut series = crate::series::Series::default();
        let mut rows = stmt.query(params![run_id, key, first, last])?;
        while let Some(row) = rows.next()? {
            series.push(
                row.get(0)?,
                row.get(1)?,
                stored_metric_value(row.get(2)?, row.get(3)?),
            );
        }
        Ok(series.by_step())
    }

    fn get_metric_history(&self, run_id: &str, key: &str) -> Result<Vec<Metric>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT key, value, timestamp, step, is_nan FROM metrics \
             WHERE run_uuid = ?1 AND key = ?2 ORDER BY timestamp, step, value",
        )?;
        let rows = stmt
            .query_map(params![run_id, key], |r| {
                Ok(Metric {
                    key: r.get(0)?,
                    value: stored_metric_value(r.get(1)?, r.get(4)?),
                    timestamp: r.get(2)?,
                    step: r.get(3)?,
                })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }
}

fn set_run_name(tx: &Transaction<'_>, run_id: &str, name: &str) -> Result<()> {
    tx.execute(
        "UPDATE runs SET name = ?1 WHERE run_uuid = ?2",
        params![name, run_id],
    )?;
    tx.execute(
        "INSERT INTO tags (key, value, run_uuid) VALUES (?1, ?2, ?3) \
         ON CONFLICT (key, run_uuid) DO UPDATE SET value = excluded.value",
        params![RUN_NAME_TAG, name, run_id],
    )?;
    Ok(())
}

pub fn run_not_active(run_id: &str, stage: &str) -> Error {
    Error::invalid(format!(
        "The run {run_id} must be in the 'active' state. Current state is {stage}."
    ))
}

fn check_experiment_active(experiment: &Experiment) -> Result<()> {
    if experiment.lifecycle_stage != LIFECYCLE_ACTIVE {
        return Err(Error::invalid(format!(
            "The experiment {} must be in the 'active' state. Current state is {}.",
            experiment.experiment_id, experiment.lifecycle_stage
        )));
    }
    Ok(())
}

/// A value as SQLAlchemy shows it in an error: its repr, cut in the middle past 300 chars.
fn sqlalchemy_repr(repr: &str) -> String {
    let chars: Vec<char> = repr.chars().collect();
    if chars.len() <= 300 {
        return repr.to_string();
    }
    let head: String = chars[..150].iter().collect();
    let tail: String = chars[chars.len() - 150..].iter().collect();
    format!(
        "{head} ... ({} characters truncated) ... {tail}",
        chars.len() - 300
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("mlflow.db"), "/tmp/mlruns").unwrap();
        (dir, store)
    }

    fn new_run(store: &mut Store) -> String {
        store
            .create_run("0", "me", 1, "r", &[])
            .unwrap()
            .info
            .run_id
    }

    #[test]
    fn experiment_round_trip() {
        let (_dir, mut store) = store();
        let id = store
            .create_experiment("exp", None, &[("k".into(), Some("v".into()))])
            .unwrap();
        assert_eq!(id, "1");
        let exp = store.get_experiment_by_name("exp").unwrap().unwrap();
        assert_eq!(exp.artifact_location, "/tmp/mlruns/1");
        assert_eq!(exp.tags, vec![("k".to_string(), Some("v".to_string()))]);
        let err = store.create_experiment("exp", None, &[]).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)));
        assert!(matches!(
            store.get_experiment("42"),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn params_are_immutable_and_tags_upsert() {
        let (_dir, mut store) = store();
        let run = store.create_run("0", "me", 1, "r", &[]).unwrap();
        let id = run.info.run_id.clone();
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        store.log_params(&id, &p("a", "1"), true).unwrap();
        store.log_params(&id, &p("a", "1"), true).unwrap();
        let err = store.log_params(&id, &p("a", "2"), true).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("Changing param values is not allowed"));
        let t = |k: &str, v: Option<&str>| vec![(k.to_string(), v.map(str::to_string))];
        store.set_tags(&id, &t("t", Some("1"))).unwrap();
        store.set_tags(&id, &t("t", Some("2"))).unwrap();
        store.set_tags(&id, &t("none", None)).unwrap();
        store
            .set_tags(&id, &t(RUN_NAME_TAG, Some("renamed")))
            .unwrap();
        let run = store.get_run(&id).unwrap();
        assert_eq!(run.info.run_name, "renamed");
        assert!(run.tags.contains(&("t".to_string(), Some("2".to_string()))));
        assert!(run.tags.contains(&("none".to_string(), None)));
    }

    #[test]
    fn latest_metric_follows_mlflow_order() {
        let (_dir, mut store) = store();
        let run = store.create_run("0", "me", 1, "r", &[]).unwrap();
        let id = run.info.run_id.as_str();
        let row = |value, timestamp: i64, step: i64| MetricRow {
            run_id: id,
            key: "m",
            value,
            timestamp: timestamp.into(),
            step: step.into(),
        };
        store
            .insert_metrics(&[row(1.0, 10, 5), row(f64::NAN, 11, 5), row(7.0, 9, 4)])
            .unwrap();
        let latest = &store.get_run(id).unwrap().metrics[0];
        assert!(latest.value.is_nan());
        store.insert_metrics(&[row(1.0, 10, 5)]).unwrap();
        assert_eq!(store.get_metric_history(id, "m").unwrap().len(), 3);
        store.insert_metrics(&[row(f64::INFINITY, 11, 5)]).unwrap();
        let latest = &store.get_run(id).unwrap().metrics[0];
        assert_eq!(latest.value, f64::MAX);
        // A float step past the integer one wins, and reads back as the float it was.
        let real = MetricRow {
            step: Number::Real(5.5),
            ..row(0.5, 1, 0)
        };
        store.insert_metrics(&[real]).unwrap();
        let latest = &store.get_run(id).unwrap().metrics[0];
        assert_eq!((latest.value, latest.step), (0.5, Number::Real(5.5)));
    }

    #[test]
    fn a_run_lists_its_metrics_in_the_order_they_were_first_logged() {
        let (_dir, mut store) = store();
        let run = store.create_run("0", "me", 1, "r", &[]).unwrap();
        let id = run.info.run_id.as_str();
        let row = |key, step: i64| MetricRow {
            run_id: id,
            key,
            value: 1.0,
            timestamp: 1.into(),
            step: step.into(),
        };
        store
            .insert_metrics(&[row("zeta", 0), row("alpha", 0), row("zeta", 1)])
            .unwrap();
        store
            .insert_metrics(&[row("beta", 0), row("alpha", 1)])
            .unwrap();
        let keys: Vec<String> = store
            .get_run(id)
            .unwrap()
            .metrics
            .into_iter()
            .map(|m| m.key)
            .collect();
        assert_eq!(keys, ["zeta", "alpha", "beta"]);
    }

    #[test]
    fn deleted_runs_refuse_writes() {
        let (_dir, mut store) = store();
        let run = store.create_run("0", "me", 1, "r", &[]).unwrap();
        let id = run.info.run_id.clone();
        store.delete_run(&id).unwrap();
        let err = store
            .set_tags(&id, &[("a".to_string(), Some("b".to_string()))])
            .unwrap_err();
        assert!(err.to_string().contains("must be in the 'active' state"));
        store.restore_run(&id).unwrap();
        store
            .set_tags(&id, &[("a".to_string(), Some("b".to_string()))])
            .unwrap();
    }

    fn count(path: &Path, sql: &str) -> i64 {
        let conn = Connection::open(path).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }

    fn log_points(store: &mut Store, run_id: &str, n: i64) {
        let rows: Vec<_> = (0..n)
            .map(|step| MetricRow {
                run_id,
                key: "m",
                value: step as f64,
                timestamp: 1.into(),
                step: step.into(),
            })
            .collect();
        store.insert_metrics(&rows).unwrap();
    }

    #[test]
    fn get_run_with_io_reads_inputs_and_outputs() {
        let (_dir, mut store) = store();
        let run_id = new_run(&mut store);
        assert_eq!(store.get_run_with_io(&run_id).unwrap().io, RunIo::default());
        store
            .conn
            .execute_batch(&format!(
                "INSERT INTO datasets VALUES ('d1', 0, 'train', 'aa', 'code', '{{}}', '{{\"s\": 1}}', NULL);
                 INSERT INTO datasets VALUES ('d2', 0, 'bare', 'bb', 'http', 'u', NULL, NULL);
                 INSERT INTO inputs VALUES ('i1', 'DATASET', 'd1', 'RUN', '{run_id}', 0);
                 INSERT INTO inputs VALUES ('i2', 'DATASET', 'd2', 'RUN', '{run_id}', 0);
                 INSERT INTO input_tags VALUES ('i1', 'mlflow.data.context', 'train');
                 INSERT INTO input_tags VALUES ('i1', 'k', 'v');
                 INSERT INTO inputs VALUES ('i3', 'RUN_INPUT', '{run_id}', 'MODEL_INPUT', 'm-2', 0);
                 INSERT INTO inputs VALUES ('i4', 'RUN_INPUT', '{run_id}', 'MODEL_INPUT', 'm-1', 0);
                 INSERT INTO inputs VALUES ('i5', 'RUN_OUTPUT', '{run_id}', 'MODEL_OUTPUT', 'm-3', 7);
                 INSERT INTO inputs VALUES ('i6', 'DATASET', 'd1', 'RUN', 'other', 0);"
            ))
            .unwrap();
        let run = store.get_run_with_io(&run_id).unwrap();
        let mut datasets = run.io.dataset_inputs.clone();
        datasets.sort_by(|a, b| a.dataset.name.cmp(&b.dataset.name));
        assert_eq!(
            datasets,
            vec![
                DatasetInput {
                    dataset: Dataset {
                        name: "bare".into(),
                        digest: "bb".into(),
                        source_type: "http".into(),
                        source: "u".into(),
                        schema: None,
                        profile: None,
                    },
                    tags: vec![],
                },
                DatasetInput {
                    dataset: Dataset {
                        name: "train".into(),
                        digest: "aa".into(),
                        source_type: "code".into(),
                        source: "{}".into(),
                        schema: Some("{\"s\": 1}".into()),
                        profile: None,
                    },
                    tags: vec![
                        ("k".into(), "v".into()),
                        ("mlflow.data.context".into(), "train".into()),
                    ],
                },
            ]
        );
        // The primary key's order, which MLflow's query follows too.
        assert_eq!(run.io.model_inputs, vec!["m-1", "m-2"]);
        assert_eq!(run.io.model_outputs, vec![("m-3".to_string(), 7)]);
        // Plain `get_run` skips them.
        assert_eq!(store.get_run(&run_id).unwrap().io, RunIo::default());
    }

    fn synchronous(store: &Store) -> i64 {
        store
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn commits_that_skip_the_fsync_are_synced_later() {
        let (_dir, mut store) = store();
        let run_id = new_run(&mut store);
        assert_eq!(synchronous(&store), 2);
        store.set_durable(false).unwrap();
        assert_eq!(synchronous(&store), 1);
        log_points(&mut store, &run_id, 10);
        store.set_durable(true).unwrap();
        assert_eq!(synchronous(&store), 2);
        assert!(store.unsynced);
        store.sync().unwrap();
        assert!(!store.unsynced);

        // A commit at FULL syncs the WAL with the frames before it; one that wrote nothing
        // does not.
        store.set_durable(false).unwrap();
        log_points(&mut store, &run_id, 20);
        store.set_durable(true).unwrap();
        log_points(&mut store, &run_id, 20);
        assert!(store.unsynced);
        log_points(&mut store, &run_id, 21);
        assert!(!store.unsynced);
    }

    #[test]
    fn after_a_checkpoint_the_db_file_alone_holds_the_rows() {
        let (dir, mut store) = store();
        let db = dir.path().join("mlflow.db");
        let run_id = new_run(&mut store);
        log_points(&mut store, &run_id, 100);
        let before = dir.path().join("before.db");
        std::fs::copy(&db, &before).unwrap();
        // Without the checkpoint the file alone lacks the run (even the tables, here).
        let conn = Connection::open(&before).unwrap();
        let runs = conn.query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0));
        assert!(runs.unwrap_or(0) == 0);

        store.checkpoint().unwrap();
        assert_eq!(
            std::fs::metadata(dir.path().join("mlflow.db-wal"))
                .unwrap()
                .len(),
            0
        );
        let copy = dir.path().join("copy.db");
        std::fs::copy(&db, &copy).unwrap();
        assert_eq!(count(&copy, "SELECT count(*) FROM runs"), 1);
        assert_eq!(count(&copy, "SELECT count(*) FROM metrics"), 100);
    }

    #[test]
    fn a_reader_holding_a_snapshot_defers_the_checkpoint_without_failing_it() {
        let (dir, mut store) = store();
        let db = dir.path().join("mlflow.db");
        let run_id = new_run(&mut store);
        let reader = Connection::open(&db).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let seen: i64 = reader
            .query_row("SELECT count(*) FROM metrics", [], |r| r.get(0))
            .unwrap();
        assert_eq!(seen, 0);
        log_points(&mut store, &run_id, 10);

        let started = std::time::Instant::now();
        store.checkpoint().unwrap();
        assert!(started.elapsed() < Duration::from_secs(5));

        reader.execute_batch("COMMIT").unwrap();
        store.checkpoint().unwrap();
        let copy = dir.path().join("copy.db");
        std::fs::copy(&db, &copy).unwrap();
        assert_eq!(count(&copy, "SELECT count(*) FROM metrics"), 10);
    }

    #[test]
    fn missing_directories_are_created_and_a_file_in_the_way_is_named() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(&dir.path().join("a/b/mlflow.db"), "/tmp/mlruns").unwrap();
        assert!(dir.path().join("a/b/mlflow.db").is_file());
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let Err(err) = Store::open(&dir.path().join("file/c/mlflow.db"), "/tmp/mlruns") else {
            panic!("opened a store below a file");
        };
        let blocked = dir.path().join("file/c");
        assert_eq!(
            err,
            Error::Os {
                errno: libc::ENOTDIR,
                path: blocked.to_string_lossy().into_owned(),
            }
        );
    }
}

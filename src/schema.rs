//! The MLflow 3.17.2 schema: creating it in a new store and learning the shape of an old one.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::entities::now_millis;
use crate::error::Result;

/// The DDL of a fresh MLflow 3.17.2 store, statement for statement as MLflow leaves it in
/// `sqlite_master`, so MLflow opens our stores without a migration.
const MLFLOW_DDL: &str = include_str!("schema/mlflow-3.17.2.sql");
pub const ALEMBIC_HEAD: &str = "dc11669786a5";

/// Columns that MLflow added over the years; older stores lack some of them and are written
/// as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct Layout {
    pub experiment_times: bool,
    pub run_deleted_time: bool,
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool> {
    let mut stmt = conn.prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
    let mut rows = stmt.query([])?;
    while let Some(row) = rows.next()? {
        let name: String = row.get(1)?;
        if name == column {
            return Ok(true);
        }
    }
    Ok(false)
}

fn has_table(conn: &Connection, table: &str) -> Result<bool> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            [table],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// Creates the schema unless the file already holds an MLflow store. The exclusive
/// transaction makes concurrent first opens from several processes safe: one creates, the
/// others wait on the busy timeout and then find the tables.
pub fn ensure(conn: &mut Connection, default_artifact_root: &str) -> Result<Layout> {
    if !has_table(conn, "runs")? {
        create(conn, default_artifact_root)?;
    }
    Ok(Layout {
        experiment_times: has_column(conn, "experiments", "creation_time")?,
        run_deleted_time: has_column(conn, "runs", "deleted_time")?,
    })
}

fn create(conn: &mut Connection, default_artifact_root: &str) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Exclusive)?;
    if !has_table(&tx, "runs")? {
        tx.execute_batch(MLFLOW_DDL)?;
        tx.execute(
            "INSERT INTO alembic_version (version_num) VALUES (?1)",
            [ALEMBIC_HEAD],
        )?;
        tx.execute(
            "INSERT INTO workspaces (name, description) VALUES ('default', \
             'Default workspace for legacy resources')",
            [],
        )?;
        let now = now_millis();
        tx.execute(
            "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage, \
             creation_time, last_update_time, workspace) \
             VALUES (0, 'Default', ?1, 'active', ?2, ?2, 'default')",
            rusqlite::params![format!("{default_artifact_root}/0"), now],
        )?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_every_table_once() {
        let mut conn = Connection::open_in_memory().unwrap();
        let layout = ensure(&mut conn, "/tmp/mlruns").unwrap();
        assert!(layout.experiment_times && layout.run_deleted_time);
        let tables: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 65);
        ensure(&mut conn, "/tmp/mlruns").unwrap();
        let head: String = conn
            .query_row("SELECT version_num FROM alembic_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(head, ALEMBIC_HEAD);
    }
}

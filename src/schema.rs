//! The MLflow 3.17.2 schema: creating it in a new store and refusing stores of other versions.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use crate::entities::now_millis;
use crate::error::{Error, Result};

/// The DDL of a fresh MLflow 3.17.2 store, statement for statement as MLflow leaves it in
/// `sqlite_master`, so MLflow opens our stores without a migration.
const MLFLOW_DDL: &str = include_str!("schema/mlflow-3.17.2.sql");
pub const ALEMBIC_HEAD: &str = "dc11669786a5";

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

/// Creates the schema unless the file already holds an MLflow store, then checks that the
/// store is at MLflow 3.17.2's head revision. The exclusive transaction makes concurrent
/// first opens from several processes safe: one creates, the others wait on the busy
/// timeout and then find the tables.
///
/// Stores of any other revision are refused with MLflow's message: MLflow refuses them as
/// well once their tables are all there, and where it would migrate an older store itself
/// (a table missing), that takes MLflow's alembic scripts, which `mlflow db upgrade` runs.
pub fn ensure(conn: &mut Connection, default_artifact_root: &str) -> Result<()> {
    if !has_table(conn, "runs")? {
        create(conn, default_artifact_root)?;
    }
    verify(conn)
}

/// `ensure` for a store that cannot be written: MLflow would try to create the tables of an
/// empty file there and fail on the first write.
pub fn verify_read_only(conn: &Connection) -> Result<()> {
    if !has_table(conn, "runs")? {
        return Err(Error::ReadOnly);
    }
    verify(conn)
}

fn verify(conn: &Connection) -> Result<()> {
    let found: Option<String> = if has_table(conn, "alembic_version")? {
        conn.query_row("SELECT version_num FROM alembic_version", [], |r| r.get(0))
            .optional()?
    } else {
        None
    };
    if found.as_deref() == Some(ALEMBIC_HEAD) {
        return Ok(());
    }
    Err(Error::SchemaVersion {
        found,
        expected: ALEMBIC_HEAD,
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
        ensure(&mut conn, "/tmp/mlruns").unwrap();
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

    #[test]
    fn other_revisions_are_refused_with_mlflows_message() {
        let mut conn = Connection::open_in_memory().unwrap();
        ensure(&mut conn, "/tmp/mlruns").unwrap();
        conn.execute("UPDATE alembic_version SET version_num = 'abc123'", [])
            .unwrap();
        let err = ensure(&mut conn, "/tmp/mlruns").unwrap_err();
        assert!(err.to_string().starts_with(
            "Detected out-of-date database schema (found version abc123, but expected \
             dc11669786a5). Take a backup of your database, then run 'mlflow db upgrade"
        ));
        conn.execute("DELETE FROM alembic_version", []).unwrap();
        let err = ensure(&mut conn, "/tmp/mlruns").unwrap_err();
        assert!(err.to_string().contains("(found version None,"));
    }
}

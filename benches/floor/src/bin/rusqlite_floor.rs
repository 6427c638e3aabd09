//! The floor under fastflow's durable writes: N metric points of one run inserted straight
//! through rusqlite in a single transaction and committed at `synchronous = FULL`, into a
//! store that fastflow created, so that the schema, indexes and foreign keys are the ones
//! fastflow's writer inserts into.
//!
//!     rusqlite_floor STORE RUN_ID N
//!
//! Prints `{"seconds": S, "rows": N, "sqlite": VERSION}`: S from the transaction's start to
//! its commit, VERSION the SQLite library that ran it.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, run_id, n] = args.as_slice() else {
        eprintln!("usage: rusqlite_floor STORE RUN_ID N");
        return ExitCode::from(2);
    };
    let Ok(n) = n.parse::<i64>() else {
        eprintln!("N must be an integer, not {n:?}");
        return ExitCode::from(2);
    };
    match insert(path, run_id, n) {
        Ok(seconds) => {
            let sqlite = rusqlite::version();
            println!("{{\"seconds\": {seconds}, \"rows\": {n}, \"sqlite\": \"{sqlite}\"}}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rusqlite_floor: {err}");
            ExitCode::FAILURE
        }
    }
}

fn insert(path: &str, run_id: &str, n: i64) -> rusqlite::Result<f64> {
    let mut conn = Connection::open(path)?;
    // The pragmas fastflow's writer sets on its connection (src/store.rs), so that both
    // commit with the same durability and do the same work per page.
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = true; \
         PRAGMA synchronous = FULL; PRAGMA secure_delete = OFF;",
    )?;
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let start = Instant::now();
    let tx = conn.transaction()?;
    {
        // fastflow's statement. The rows come in the metrics primary key's order (one key, one
        // timestamp, rising steps), the order fastflow's writer sorts each batch into.
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for step in 0..n {
            insert.execute(params!["loss", step as f64, timestamp, run_id, step, false])?;
        }
        // The one latest_metrics row fastflow also leaves behind, so both stores end alike.
        if n > 0 {
            tx.execute(
                "INSERT OR REPLACE INTO latest_metrics \
                 (key, value, timestamp, step, is_nan, run_uuid) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params!["loss", (n - 1) as f64, timestamp, n - 1, false, run_id],
            )?;
        }
    }
    tx.commit()?;
    Ok(start.elapsed().as_secs_f64())
}

//! The floor under fastflow's durable writes: N metric points of one run inserted straight
//! through rusqlite in a single transaction and committed at `synchronous = FULL`, into a
//! store that fastflow created, so that the schema, indexes and foreign keys are the ones
//! fastflow's writer inserts into.
//!
//!     rusqlite_floor STORE RUN_ID N [ROWS_PER_INSERT] [--no-checkpoint]
//!
//! ROWS_PER_INSERT (64, fastflow's) rows go in each execution of the INSERT. The commit
//! runs SQLite's automatic checkpoint, which copies the WAL into the database file, unless
//! `--no-checkpoint` turns it off: the commit then waits for the WAL's fsync alone, as
//! fastflow's `flush()` does (fastflow checkpoints on a thread of its own).
//!
//! Prints `{"seconds": S, "rows": N, "sqlite": VERSION}`: S from the transaction's start to
//! its commit, VERSION the SQLite library that ran it.

use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

/// fastflow's statement (src/store.rs, `ROWS_PER_INSERT`).
const FASTFLOW_ROWS_PER_INSERT: usize = 64;

struct Plan {
    path: String,
    run_id: String,
    n: i64,
    rows_per_insert: usize,
    checkpoint: bool,
}

fn parse(args: &[String]) -> Result<Plan, String> {
    let checkpoint = !args.iter().any(|a| a == "--no-checkpoint");
    let positional: Vec<&String> = args.iter().filter(|a| !a.starts_with("--")).collect();
    let (path, run_id, n, rows) = match positional.as_slice() {
        [path, run_id, n] => (path, run_id, n, None),
        [path, run_id, n, rows] => (path, run_id, n, Some(rows)),
        _ => {
            return Err(
                "usage: rusqlite_floor STORE RUN_ID N [ROWS_PER_INSERT] [--no-checkpoint]".into(),
            )
        }
    };
    let n = n
        .parse::<i64>()
        .map_err(|_| format!("N must be an integer, not {n:?}"))?;
    let rows_per_insert = match rows {
        None => FASTFLOW_ROWS_PER_INSERT,
        Some(rows) => rows
            .parse::<usize>()
            .ok()
            .filter(|&r| r > 0)
            .ok_or_else(|| format!("ROWS_PER_INSERT must be a positive integer, not {rows:?}"))?,
    };
    Ok(Plan {
        path: path.to_string(),
        run_id: run_id.to_string(),
        n,
        rows_per_insert,
        checkpoint,
    })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let plan = match parse(&args) {
        Ok(plan) => plan,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    match insert(&plan) {
        Ok(seconds) => {
            let sqlite = rusqlite::version();
            let n = plan.n;
            println!("{{\"seconds\": {seconds}, \"rows\": {n}, \"sqlite\": \"{sqlite}\"}}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("rusqlite_floor: {err}");
            ExitCode::FAILURE
        }
    }
}

fn insert(plan: &Plan) -> rusqlite::Result<f64> {
    let mut conn = Connection::open(&plan.path)?;
    // The pragmas fastflow's writer sets on its connection (src/store.rs), so that both
    // commit with the same durability and do the same work per page.
    let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA case_sensitive_like = true; \
         PRAGMA synchronous = FULL; PRAGMA secure_delete = OFF;",
    )?;
    if !plan.checkpoint {
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")?;
    }
    let timestamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let (n, run_id) = (plan.n, plan.run_id.as_str());
    let start = Instant::now();
    let tx = conn.transaction()?;
    {
        // fastflow's statement, ROWS_PER_INSERT rows per execution and the rest one at a
        // time. The rows come in the metrics primary key's order (one key, one timestamp,
        // rising steps), the order fastflow's writer sorts each batch into.
        let head = "INSERT OR IGNORE INTO metrics (key, value, timestamp, run_uuid, step, is_nan) \
                    VALUES ";
        let per = plan.rows_per_insert;
        let mut bulk = tx.prepare(&format!("{head}{}", vec!["(?,?,?,?,?,?)"; per].join(",")))?;
        let mut single = tx.prepare(&format!("{head}(?,?,?,?,?,?)"))?;
        let whole = n - n % per as i64;
        for first in (0..whole).step_by(per) {
            for (i, step) in (first..first + per as i64).enumerate() {
                let at = i * 6;
                bulk.raw_bind_parameter(at + 1, "loss")?;
                bulk.raw_bind_parameter(at + 2, step as f64)?;
                bulk.raw_bind_parameter(at + 3, timestamp)?;
                bulk.raw_bind_parameter(at + 4, run_id)?;
                bulk.raw_bind_parameter(at + 5, step)?;
                bulk.raw_bind_parameter(at + 6, false)?;
            }
            bulk.raw_execute()?;
        }
        for step in whole..n {
            single.execute(params!["loss", step as f64, timestamp, run_id, step, false])?;
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

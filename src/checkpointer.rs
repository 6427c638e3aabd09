//! Checkpoints on a thread of their own.
//!
//! A checkpoint copies committed WAL frames into the database file and syncs it. Left to
//! SQLite (`wal_autocheckpoint`), it runs inside the commit that crosses the threshold, so a
//! writer that is behind spends a third of each commit copying pages (50 of 140 ms per
//! 131,072 points here) while points wait in its queue. A second connection copies them
//! instead, alongside the writer's next transaction: a PASSIVE checkpoint never blocks the
//! writer, and the commit the writer waits for (durability) is the WAL's fsync alone.
//!
//! The WAL starts over only when a write transaction begins after a checkpoint has copied
//! every frame. A writer that never pauses would let it grow without end, so past
//! `WAL_CAP` bytes it waits for the copy in flight before its next transaction.
//!
//! Only where fastflow's SQLite is the one Python uses: the safe mode for a process with
//! two copies allows one connection per file (see `sqlite_library`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use parking_lot::{Condvar, Mutex};
use rusqlite::{Connection, OpenFlags};

/// The WAL size past which a checkpoint is asked for: SQLite's own default threshold of
/// 1,000 pages of 4 KiB.
pub const CHECKPOINT_AFTER: u64 = 1000 * 4096;

/// The WAL size past which the writer waits for the checkpoint in flight, so that its next
/// transaction starts the WAL over. 1,000,000 points take about 230 MB of WAL.
pub const WAL_CAP: u64 = 128 << 20;

#[derive(Default)]
struct Progress {
    /// Requests taken and not finished yet, plus one waiting in the channel.
    outstanding: u64,
}

struct Shared {
    progress: Mutex<Progress>,
    idle: Condvar,
    /// Held while the thread is inside SQLite; a fork takes it (see `Checkpointer::gate`).
    gate: Arc<Mutex<()>>,
}

pub struct Checkpointer {
    wal: PathBuf,
    requests: Option<Sender<()>>,
    shared: Arc<Shared>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread for the store at `path` whose WAL is `wal`. Its connection opens at
    /// the first request.
    pub fn start(path: &Path, wal: &Path) -> std::io::Result<Checkpointer> {
        let (requests, taken) = bounded(1);
        let shared = Arc::new(Shared {
            progress: Mutex::new(Progress::default()),
            idle: Condvar::new(),
            gate: Arc::new(Mutex::new(())),
        });
        let path = path.to_path_buf();
        let for_thread = shared.clone();
        let thread = thread::Builder::new()
            .name("fastflow-checkpoint".into())
            .spawn(move || checkpoint_loop(&path, &taken, &for_thread))?;
        Ok(Checkpointer {
            wal: wal.to_path_buf(),
            requests: Some(requests),
            shared,
            thread: Some(thread),
        })
    }

    /// Held by the thread while it is inside SQLite: a fork waits for it.
    pub fn gate(&self) -> Arc<Mutex<()>> {
        self.shared.gate.clone()
    }

    /// Before a write transaction: asks for a checkpoint of what earlier ones committed once
    /// the WAL has grown past SQLite's threshold, and past `cap` waits for it, so that this
    /// transaction starts the WAL over.
    pub fn before_write(&self, cap: u64) {
        let size = std::fs::metadata(&self.wal).map_or(0, |m| m.len());
        if size < CHECKPOINT_AFTER {
            return;
        }
        self.request();
        if size >= cap {
            self.wait_idle();
        }
    }

    fn request(&self) {
        let Some(requests) = &self.requests else {
            return;
        };
        let mut progress = self.shared.progress.lock();
        match requests.try_send(()) {
            Ok(()) => progress.outstanding += 1,
            // One request waiting already covers this commit too.
            Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// Waits until every checkpoint asked for has run.
    pub fn wait_idle(&self) {
        let mut progress = self.shared.progress.lock();
        while progress.outstanding > 0 {
            // A thread that died (it cannot, short of a panic in SQLite) must not hang us.
            if self
                .shared
                .idle
                .wait_for(&mut progress, Duration::from_secs(1))
                .timed_out()
                && self.thread.as_ref().is_none_or(|t| t.is_finished())
            {
                return;
            }
        }
    }

    /// Ends the thread and closes its connection: before the writer's connection changes
    /// the journal mode, which needs it alone on the file.
    pub fn stop(&mut self) {
        self.requests = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn checkpoint_loop(path: &Path, taken: &Receiver<()>, shared: &Shared) {
    let mut conn: Option<Connection> = None;
    while taken.recv().is_ok() {
        {
            let _inside = shared.gate.lock();
            if conn.is_none() {
                conn = open(path);
            }
            if let Some(conn) = &conn {
                // Busy means another checkpoint is running (another process's, or the
                // writer's at the end of its runs): the next request finishes the job.
                let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            }
        }
        let mut progress = shared.progress.lock();
        progress.outstanding = progress.outstanding.saturating_sub(1);
        if progress.outstanding == 0 {
            shared.idle.notify_all();
        }
    }
    let _inside = shared.gate.lock();
    drop(conn);
}

fn open(path: &Path) -> Option<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).ok()?;
    // A checkpoint copies with the store's durability: the database file is synced after.
    conn.execute_batch("PRAGMA synchronous = FULL;").ok()?;
    Some(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store in WAL mode whose connection leaves checkpoints to others.
    fn wal_store(dir: &Path) -> (PathBuf, PathBuf, Connection) {
        let db = dir.join("store.db");
        let conn = Connection::open(&db).unwrap();
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .unwrap();
        conn.execute_batch(
            "PRAGMA wal_autocheckpoint = 0; CREATE TABLE t (x INTEGER PRIMARY KEY, pad BLOB);",
        )
        .unwrap();
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        (db, PathBuf::from(wal), conn)
    }

    /// One transaction of `rows` rows of 1 KB.
    fn write(conn: &Connection, rows: i64) {
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        let mut insert = conn
            .prepare_cached("INSERT INTO t (pad) VALUES (?1)")
            .unwrap();
        for _ in 0..rows {
            insert.execute([vec![7u8; 1024]]).unwrap();
        }
        conn.execute_batch("COMMIT").unwrap();
    }

    const MB: i64 = 1024;

    fn rows_in_file_alone(db: &Path) -> i64 {
        // The copy has no WAL beside it: what it holds was checkpointed.
        let copy = db.with_extension("copy");
        std::fs::copy(db, &copy).unwrap();
        // Before the first checkpoint the file lacks even the table.
        Connection::open(&copy)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap_or(0)
    }

    #[test]
    fn what_was_committed_reaches_the_file_without_the_writer() {
        let dir = tempfile::tempdir().unwrap();
        let (db, wal, conn) = wal_store(dir.path());
        let checkpointer = Checkpointer::start(&db, &wal).unwrap();
        write(&conn, 6 * MB);
        assert_eq!(rows_in_file_alone(&db), 0);
        checkpointer.before_write(WAL_CAP);
        checkpointer.wait_idle();
        assert_eq!(rows_in_file_alone(&db), 6 * MB);
    }

    #[test]
    fn a_small_wal_is_left_to_grow() {
        let dir = tempfile::tempdir().unwrap();
        let (db, wal, conn) = wal_store(dir.path());
        let checkpointer = Checkpointer::start(&db, &wal).unwrap();
        write(&conn, MB);
        checkpointer.before_write(WAL_CAP);
        checkpointer.wait_idle();
        assert_eq!(rows_in_file_alone(&db), 0);
    }

    #[test]
    fn past_the_cap_the_wal_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let (db, wal, conn) = wal_store(dir.path());
        let checkpointer = Checkpointer::start(&db, &wal).unwrap();
        let cap = CHECKPOINT_AFTER;
        for _ in 0..12 {
            checkpointer.before_write(cap);
            write(&conn, 2 * MB);
        }
        // Without the waits the WAL would hold all 24 MB; with them it restarts whenever
        // it passes the cap, so it never holds much more than the cap and a transaction.
        let size = std::fs::metadata(&wal).unwrap().len();
        assert!(size < cap + (3 << 20), "WAL of {size} bytes");
        checkpointer.wait_idle();
        let total: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(total, 12 * 2 * MB);
    }

    #[test]
    fn stopping_closes_the_connection_so_the_writer_can_leave_wal_mode() {
        let dir = tempfile::tempdir().unwrap();
        let (db, wal, conn) = wal_store(dir.path());
        let mut checkpointer = Checkpointer::start(&db, &wal).unwrap();
        write(&conn, 6 * MB);
        checkpointer.before_write(WAL_CAP);
        checkpointer.stop();
        let mode: String = conn
            .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "delete");
        assert!(!wal.exists());
    }
}

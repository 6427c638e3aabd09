//! The background writer: one thread per store and process owns the SQLite connection and
//! takes everything through one bounded channel, so the caller only pays for a channel send.
//!
//! Metric records are batched and written in one transaction per flush. Every other store
//! operation travels the same channel as a closure, so it runs after the records sent before
//! it (a run ends after its last points are written, a read sees what was logged before it).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, Select, SendTimeoutError, Sender, TryRecvError,
    TrySendError,
};
use parking_lot::{ArcMutexGuard, Mutex, RawMutex};
use rustc_hash::{FxHashMap, FxHashSet};

use crate::backend::Backend;
use crate::entities::{Number, LIFECYCLE_ACTIVE};
use crate::error::{Error, Result};
use crate::interner::Interner;
use crate::lanes::{Lane, Lanes, Padded, Producer, LANE_POINTS};
use crate::runs::RunRegistry;
use crate::spool::{self, Journal, RunEvent, RUN_OPENED};
use crate::store::{run_not_active, MetricRow, Store};

/// One metric point as the hot path sends it: no strings, no Python objects.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRecord {
    pub run: u32,
    pub key: u32,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

pub type Job = Box<dyn FnOnce(&mut WriterState) + Send>;

pub enum Msg {
    Metric(MetricRecord),
    /// A thread's lane, sent on at once (see `lanes`).
    Block(Vec<MetricRecord>),
    /// A store operation; only an engine with a store behind it runs these.
    Job(Job),
    /// Answered once everything sent before it is in the store, wherever the engine sends
    /// it: on disk when `durable`, else at least readable by other connections.
    Barrier {
        reply: Sender<Result<()>>,
        durable: bool,
    },
    /// This process opened or ended a run: journaled, so that a replay after a crash can
    /// end the runs the dead process left running.
    Run(RunEvent),
}

impl Msg {
    /// Metric points the message carries: the journal numbers points, not messages.
    fn points(&self) -> usize {
        match self {
            Msg::Metric(_) => 1,
            Msg::Block(block) => block.len(),
            _ => 0,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// Longest time a logged point waits before it is written and visible to readers.
    pub flush_interval: Duration,
    /// Records the channel holds before callers block.
    pub queue_capacity: usize,
    /// Records written in one transaction at most.
    pub max_batch: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            flush_interval: Duration::from_millis(100),
            queue_capacity: 200_000,
            // A commit at synchronous=FULL waits for the disk (milliseconds on a virtual
            // disk), and past a thousand WAL pages it is followed by a checkpoint that waits
            // twice more, so a writer that is behind commits what it holds in large batches
            // (65,536 -> 131,072 points: 1M points durable 3.41 s -> 3.31 s, the rusqlite
            // floor 3.16 s); what a kill can cost is bounded by the spool, not by this. A
            // batch still takes under half a second, which bounds how long a read in the
            // process waits.
            max_batch: FORWARD_CHUNKS * CHUNK,
        }
    }
}

impl Config {
    /// Defaults overridden by `FASTFLOW_FLUSH_INTERVAL_MS` and `FASTFLOW_QUEUE_CAPACITY`.
    pub fn from_env() -> Self {
        let mut config = Config::default();
        let number = |name: &str| std::env::var(name).ok()?.trim().parse::<u64>().ok();
        if let Some(ms) = number("FASTFLOW_FLUSH_INTERVAL_MS") {
            config.flush_interval = Duration::from_millis(ms.max(1));
        }
        if let Some(capacity) = number("FASTFLOW_QUEUE_CAPACITY") {
            config.queue_capacity = (capacity as usize).max(1);
        }
        config
    }
}

/// What the writer tells callers: the first write failure not yet reported.
#[derive(Default)]
pub struct Shared {
    /// Read by every hot-path call; `held` beside it changes with every commit.
    has_error: Padded<AtomicBool>,
    error: Mutex<Option<Error>>,
    /// Set by the spooler while the writer is behind and its backlog is full: the hot path
    /// then waits before queueing, since what waits in the queue is not journaled yet.
    saturated: AtomicBool,
    /// The writer holds points it has taken from the queue but not written (a failed write,
    /// runs that refuse them), so that counting committed points says nothing about them.
    held: AtomicBool,
    /// Points delivered from dead processes' journals so far (`fastflow sync` shows it).
    pub replayed_points: AtomicU64,
}

impl Shared {
    pub fn report(&self, error: Error) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(error);
        }
        self.has_error.0.store(true, Ordering::Release);
    }

    #[inline]
    pub fn has_error(&self) -> bool {
        self.has_error.0.load(Ordering::Relaxed)
    }

    /// The pending failure, once. One relaxed load when there is none: it sits on the hot path.
    #[inline]
    pub fn take_error(&self) -> Option<Error> {
        if !self.has_error.0.load(Ordering::Relaxed) {
            return None;
        }
        self.has_error.0.store(false, Ordering::Relaxed);
        self.error.lock().take()
    }
}

pub struct WriterState {
    pub store: Box<dyn Backend>,
    pub runs: Arc<RunRegistry>,
    interner: Arc<Interner>,
    shared: Arc<Shared>,
    pending: Vec<MetricRecord>,
    /// Points for runs the store lacks or has deleted: kept, retried on every flush, reported.
    stranded: FxHashMap<u32, (Error, Vec<MetricRecord>)>,
    keys: Vec<Arc<str>>,
    run_ids: Vec<Arc<str>>,
    /// Flushes waiting for a tracking server to come back: answered once their points are
    /// delivered, so that `flush()` means delivered even across an outage.
    parked: Vec<Sender<Result<()>>>,
    /// Journal position of the last message taken from the queue.
    seen: u64,
    spool: Option<Arc<Spool>>,
    /// Runs this process opened and has not ended; when the last one ends, the WAL is
    /// folded into the database file.
    open_runs: FxHashSet<u32>,
    checkpoint_due: bool,
    /// What the replay at start delivered, until `fastflow.sync()` reports it.
    replayed_at_start: Replayed,
}

impl WriterState {
    fn take_points(&mut self, msg: Msg) {
        match msg {
            Msg::Metric(record) => self.pending.push(record),
            Msg::Block(block) if self.pending.is_empty() => self.pending = block,
            Msg::Block(block) => self.pending.extend(block),
            _ => {}
        }
    }

    fn barrier(&mut self, reply: Sender<Result<()>>, durable: bool) {
        let outcome = if durable {
            self.flush()
        } else {
            self.flush_visible()
        };
        match outcome {
            Err(Error::Unavailable(_)) => self.parked.push(reply),
            outcome => {
                let _ = reply.send(outcome);
            }
        }
    }

    fn settle_parked(&mut self, outcome: &Result<()>) {
        for reply in self.parked.drain(..) {
            let _ = reply.send(outcome.clone());
        }
    }

    fn key(&mut self, id: u32) -> Arc<str> {
        while self.keys.len() <= id as usize {
            let next = self.keys.len() as u32;
            self.keys.push(self.interner.key(next));
        }
        self.keys[id as usize].clone()
    }

    fn run_id(&mut self, index: u32) -> Result<Arc<str>> {
        while self.run_ids.len() <= index as usize {
            let next = self.run_ids.len() as u32;
            self.run_ids.push(self.runs.id(next)?);
        }
        Ok(self.run_ids[index as usize].clone())
    }

    /// Moves points of runs that cannot take them out of the batch, so one bad run never
    /// holds back the others. Checked on every batch (one lookup per run), because another
    /// process may delete a run at any time.
    fn strand_unwritable(&mut self) -> Result<()> {
        // A batch holds a few runs in long stretches: one entry per stretch, not per point.
        let mut unchecked: Vec<u32> = Vec::new();
        for record in &self.pending {
            if unchecked.last() != Some(&record.run) {
                unchecked.push(record.run);
            }
        }
        unchecked.sort_unstable();
        unchecked.dedup();
        let mut refused: FxHashMap<u32, Error> = FxHashMap::default();
        for run in unchecked {
            let run_id = self.run_id(run)?;
            match self.store.run_lifecycle(&run_id)? {
                Some(stage) if stage == LIFECYCLE_ACTIVE => {}
                Some(stage) => {
                    refused.insert(run, run_not_active(&run_id, &stage));
                }
                None => {
                    refused.insert(
                        run,
                        Error::not_found(format!("Run with id={run_id} not found")),
                    );
                }
            }
        }
        if refused.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        for record in pending {
            match refused.get(&record.run) {
                Some(error) => self
                    .stranded
                    .entry(record.run)
                    .or_insert_with(|| (error.clone(), Vec::new()))
                    .1
                    .push(record),
                None => self.pending.push(record),
            }
        }
        // Later points for these runs are refused at the call site instead of piling up here.
        for &run in refused.keys() {
            if let Ok(run_id) = self.run_id(run) {
                self.runs.mark(&run_id, false);
            }
        }
        if let Some(error) = refused.into_values().next() {
            self.shared.report(error);
        }
        Ok(())
    }

    /// Writes the pending points before a store operation, whose reads must see them: a
    /// commit, not an fsync (read-after-log stays cheap; a later `flush` or timed commit
    /// puts them on disk, and the spool holds them until then).
    fn write_pending_visible(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return self.write_pending();
        }
        self.store.set_durable(false)?;
        let written = self.write_pending();
        let restored = self.store.set_durable(true);
        written.and(restored)
    }

    /// Writes every pending point in one transaction. On failure the points stay pending.
    pub fn write_pending(&mut self) -> Result<()> {
        let outcome = self.write_batch();
        self.note_held();
        outcome
    }

    fn note_held(&self) {
        let held = !self.pending.is_empty() || !self.stranded.is_empty();
        self.shared.held.store(held, Ordering::Release);
    }

    fn write_batch(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            self.committed();
            return Ok(());
        }
        self.strand_unwritable()?;
        // Grouped by run (a tracking server takes one run per call); the sort is stable, so
        // each run's points keep the order they were logged in, which MLflow's latest-value
        // rule and its order of a run's metrics depend on.
        if !self.pending.is_sorted_by_key(|r| r.run) {
            self.pending.sort_by_key(|r| r.run);
        }
        // Names are looked up once per batch; the rows borrow them (no count per point).
        let (mut last_key, mut last_run) = (None, None);
        for i in 0..self.pending.len() {
            let record = self.pending[i];
            if last_key != Some(record.key) {
                self.key(record.key);
                last_key = Some(record.key);
            }
            if last_run != Some(record.run) {
                self.run_id(record.run)?;
                last_run = Some(record.run);
            }
        }
        let (keys, run_ids) = (&self.keys, &self.run_ids);
        let rows: Vec<MetricRow<'_>> = self
            .pending
            .iter()
            .map(|r| metric_row(&run_ids[r.run as usize], &keys[r.key as usize], r))
            .collect();
        self.store.insert_metrics(&rows)?;
        self.pending.clear();
        self.committed();
        Ok(())
    }

    /// Writes points whose step or timestamp is not a 64-bit integer, after every point
    /// queued before them, in one transaction. The run must take them now: unlike queued
    /// points, these are never held for later.
    pub fn write_exact(&mut self, points: &[ExactPoint]) -> Result<()> {
        self.write_pending()?;
        let mut ids = Vec::with_capacity(points.len());
        for point in points {
            ids.push((self.run_id(point.run)?, self.key(point.key)));
        }
        let mut checked: Vec<&str> = Vec::new();
        for (run_id, _) in &ids {
            if checked.contains(&&**run_id) {
                continue;
            }
            match self.store.run_lifecycle(run_id)? {
                Some(stage) if stage == LIFECYCLE_ACTIVE => checked.push(run_id),
                Some(stage) => return Err(run_not_active(run_id, &stage)),
                None => return Err(Error::not_found(format!("Run with id={run_id} not found"))),
            }
        }
        let rows: Vec<MetricRow<'_>> = points
            .iter()
            .zip(&ids)
            .map(|(point, (run_id, key))| MetricRow {
                run_id,
                key,
                value: point.value,
                timestamp: point.timestamp,
                step: point.step,
            })
            .collect();
        self.store.insert_metrics(&rows)
    }

    /// Everything taken from the queue so far is in the store (or held as stranded).
    fn committed(&self) {
        // Before the count moves: whoever sees the new count sees the points it skips.
        self.note_held();
        if let Some(spool) = &self.spool {
            spool.committed.fetch_max(self.seen, Ordering::Release);
        }
    }

    fn run_event(&mut self, event: RunEvent) {
        if event.status == RUN_OPENED {
            self.open_runs.insert(event.run);
        } else if self.open_runs.remove(&event.run) && self.open_runs.is_empty() {
            self.checkpoint_due = true;
        }
    }

    /// Folds the WAL into the database once the last run of this process has ended (the
    /// job that ends it runs right after its event).
    fn checkpoint_if_due(&mut self) {
        if self.checkpoint_due && self.pending.is_empty() {
            self.checkpoint_due = false;
            let _ = self.store.checkpoint();
        }
    }

    /// Replays the journals of dead processes for this store: their uncommitted points, and
    /// the end of every run they left running (KILLED, at the journal's last write).
    pub fn replay_orphans(&mut self) -> Result<Replayed> {
        // What opening the store replayed counts once, for the first caller who asks.
        let mut replayed = std::mem::take(&mut self.replayed_at_start);
        let Some(dir) = self.spool.as_ref().map(|s| s.dir.clone()) else {
            return Ok(replayed);
        };
        for (path, _lock) in spool::orphans(&dir) {
            let Ok(found) = spool::read(&path) else {
                continue;
            };
            self.replay(&found, &mut replayed)?;
            replayed.files += 1;
            let _ = std::fs::remove_file(&path);
        }
        let _ = std::fs::remove_dir(&dir);
        Ok(replayed)
    }

    fn replay(&mut self, found: &spool::Recovered, replayed: &mut Replayed) -> Result<()> {
        let mut writable: FxHashMap<&str, bool> = FxHashMap::default();
        for (run_id, _, _) in &found.points {
            if !writable.contains_key(&**run_id) {
                let stage = self.store.run_lifecycle(run_id)?;
                writable.insert(run_id, stage.as_deref() == Some(LIFECYCLE_ACTIVE));
            }
        }
        let rows: Vec<MetricRow<'_>> = found
            .points
            .iter()
            .filter(|(run_id, _, _)| writable[&**run_id])
            .map(|(run_id, key, r)| metric_row(run_id, key, r))
            .collect();
        replayed.dropped += (found.points.len() - rows.len()) as u64;
        // A tracking server takes at most 1,000 metrics a request.
        for chunk in rows.chunks(1000) {
            self.store.insert_metrics(chunk)?;
            replayed.points += chunk.len() as u64;
            self.shared
                .replayed_points
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
        }
        let mut last: Vec<(&str, &RunEvent)> = Vec::new();
        for (run_id, event) in &found.runs {
            match last.iter_mut().find(|(id, _)| *id == &**run_id) {
                Some(slot) => slot.1 = event,
                None => last.push((run_id, event)),
            }
        }
        for (run_id, event) in last {
            let (status, end_time) = if event.status == RUN_OPENED {
                ("KILLED", found.last_write_ms)
            } else {
                (event.status, event.end_time)
            };
            match self.store.get_run(run_id) {
                Ok(run) if run.info.status == "RUNNING" => {
                    self.store
                        .update_run_info(run_id, Some(status), Some(end_time), None)?;
                    replayed.runs_ended += 1;
                }
                Ok(_) | Err(Error::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Gives stranded points another chance (their run may have been restored) and says
    /// whether any are still refused.
    fn retry_stranded(&mut self) -> Result<()> {
        if self.stranded.is_empty() {
            return Ok(());
        }
        for (_, (_, records)) in self.stranded.drain() {
            self.pending.extend(records);
        }
        self.write_pending()?;
        match self.stranded.values().next() {
            Some((error, records)) => Err(Error::InvalidParameter(format!(
                "{error} ({} logged metric points are held until the run can take them)",
                records.len()
            ))),
            None => Ok(()),
        }
    }

    /// Everything logged so far is durable in the store, or the reason it is not.
    pub fn flush(&mut self) -> Result<()> {
        let written = self.write_all();
        // Commits of `flush_visible` may still be in the page cache only.
        written.and_then(|()| self.store.sync())
    }

    /// Everything logged so far is committed and readable by other connections, or the
    /// reason it is not; the commit need not be on disk yet (a later `flush` puts it there).
    pub fn flush_visible(&mut self) -> Result<()> {
        if self.pending.is_empty() && self.stranded.is_empty() {
            // Nothing to commit: skip the two pragmas.
            return self.write_all();
        }
        self.store.set_durable(false)?;
        let written = self.write_all();
        let restored = self.store.set_durable(true);
        written.and(restored)
    }

    fn write_all(&mut self) -> Result<()> {
        let written = self.write_pending();
        let stranded = self.retry_stranded();
        // The caller hears about the failure now; the hot path need not repeat it.
        self.shared.take_error();
        written.and(stranded)
    }
}

/// What a replay of dead processes' journals delivered.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Replayed {
    pub files: u64,
    pub points: u64,
    pub runs_ended: u64,
    /// Points of runs deleted since: refused, as MLflow would refuse them.
    pub dropped: u64,
}

/// An engine's journal, shared by the spooler thread that appends, the writer that says
/// what is committed, and the exit path that finishes it.
pub struct Spool {
    dir: PathBuf,
    shared: Arc<Shared>,
    interner: Arc<Interner>,
    runs: Arc<RunRegistry>,
    journal: Arc<Mutex<Journal>>,
    /// The caller side of the queue, for the exit path to journal what is still in it.
    queue: Receiver<Msg>,
    committed: AtomicU64,
    /// Set at exit: the spooler stops and the exit path owns the journal.
    closing: AtomicBool,
    /// Cuts the spooler's nap between polls short when a caller queues something it waits
    /// for (a flush, a store operation); metric sends never touch it.
    wake: Sender<()>,
    woken: Receiver<()>,
}

/// What an engine could not deliver by the end of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undelivered {
    pub records: u64,
    /// Of those, the ones in the journal, which a later `fastflow.sync()` delivers.
    pub kept: u64,
    pub dir: Option<PathBuf>,
    pub journal_error: Option<String>,
}

/// A point with its step and timestamp as given (see `WriterState::write_exact`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExactPoint {
    pub run: u32,
    pub key: u32,
    pub value: f64,
    pub timestamp: Number,
    pub step: Number,
}

/// A queued point as the store takes it, under its run id and key name.
fn metric_row<'a>(run_id: &'a str, key: &'a str, record: &MetricRecord) -> MetricRow<'a> {
    MetricRow {
        run_id,
        key,
        value: record.value,
        timestamp: Number::Int(record.timestamp),
        step: Number::Int(record.step),
    }
}

/// A store with its writer thread. Lives as long as the process.
pub struct Engine {
    pub runs: Arc<RunRegistry>,
    pub shared: Arc<Shared>,
    /// Where logging threads leave points on their way into `sender`.
    lanes: Lanes,
    sender: Sender<Msg>,
    spool: Option<Arc<Spool>>,
    /// Held by the writer while it is inside SQLite, and by `pause` around a fork.
    gate: Option<Arc<Mutex<()>>>,
    /// The same for the store's checkpoint thread, if it has one.
    checkpoint_gate: Option<Arc<Mutex<()>>>,
    /// Why the engine runs without the spool it was asked for, until someone says so.
    spool_error: Mutex<Option<String>>,
    /// Whether a writer thread with a store takes this engine's jobs; an outbox's queue
    /// carries points alone.
    takes_jobs: bool,
}

/// An engine held still across a fork (see `Engine::pause`); dropping it lets it go on.
pub struct Paused {
    _gate: Option<ArcMutexGuard<RawMutex, ()>>,
    _checkpoint_gate: Option<ArcMutexGuard<RawMutex, ()>>,
    journal: Option<ArcMutexGuard<RawMutex, Journal>>,
}

impl Paused {
    /// In a forked child: closes the inherited journal files, so that the parent's lock on
    /// them ends with the parent. The child never uses this engine again.
    pub fn release_in_child(mut self) {
        if let Some(journal) = self.journal.as_mut() {
            journal.close_files();
        }
        // The child's copies of these locks belong to threads it does not have.
        std::mem::forget(self);
    }
}

/// How an engine is started beside its backend.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Journal directory; `None` runs without a spool.
    pub spool_dir: Option<PathBuf>,
    pub store_name: String,
    /// The backend calls into SQLite, which must not be inside a call when the process forks.
    pub fork_gate: bool,
}

/// Messages the spooler moves at once, and the largest transaction: a record the spooler
/// cannot take yet waits for the writer's next commit, so commits are kept short.
const CHUNK: usize = 2048;

/// The queue in front of the spooler, in points: it empties it whenever the writer has taken
/// a chunk, so its records wait at most about one commit before they are journaled, and a
/// burst of logging this long never makes the caller wait. Points arrive in lanes' blocks,
/// so the queue holds blocks; a logging thread's lane and the chunk in the spooler's hands
/// come on top, and the three together stay within this many points.
const SPOOLED_QUEUE: usize = 65_536;

/// Blocks the spooler's queue holds (see `SPOOLED_QUEUE`).
const SPOOLED_QUEUE_BLOCKS: usize = (SPOOLED_QUEUE - CHUNK) / LANE_POINTS - 2;

/// Journaled chunks on their way to the writer: a writer that is behind takes up to a whole
/// batch (`max_batch`) at once instead of waiting for the spooler chunk by chunk (2 -> 64:
/// 1M points durable about 5% sooner). Up to 131,072 points on top of the queue capacity.
const FORWARD_CHUNKS: usize = 64;

/// A run of messages from the spooler, with the journal position after them.
pub struct Chunk {
    msgs: Vec<Msg>,
    end_seq: u64,
}

/// The writer's view of its queue: messages straight from callers, or chunks that the
/// spooler has journaled.
enum Source {
    Direct(Receiver<Msg>),
    Spooled(Receiver<Chunk>),
}

struct Inbox {
    source: Source,
    buf: VecDeque<Msg>,
    /// Journal position after the last point taken: points are numbered in queue order.
    seen: u64,
}

impl Inbox {
    fn pop(&mut self) -> Option<Msg> {
        let msg = self.buf.pop_front()?;
        self.seen += msg.points() as u64;
        Some(msg)
    }

    fn take(&mut self, chunk: Chunk) -> Option<Msg> {
        let points = chunk.msgs.iter().map(Msg::points).sum::<usize>() as u64;
        self.seen = chunk.end_seq - points;
        self.buf.extend(chunk.msgs);
        self.pop()
    }

    fn recv_timeout(&mut self, timeout: Duration) -> std::result::Result<Msg, RecvTimeoutError> {
        if let Some(msg) = self.pop() {
            return Ok(msg);
        }
        let deadline = Instant::now() + timeout;
        loop {
            let chunk = match &self.source {
                Source::Direct(rx) => return rx.recv_timeout(timeout),
                Source::Spooled(rx) => rx.recv_deadline(deadline)?,
            };
            if let Some(msg) = self.take(chunk) {
                return Ok(msg);
            }
        }
    }

    fn try_recv(&mut self) -> std::result::Result<Msg, TryRecvError> {
        if let Some(msg) = self.pop() {
            return Ok(msg);
        }
        loop {
            let chunk = match &self.source {
                Source::Direct(rx) => return rx.try_recv(),
                Source::Spooled(rx) => rx.try_recv()?,
            };
            if let Some(msg) = self.take(chunk) {
                return Ok(msg);
            }
        }
    }
}

/// How often the spooler records the commit point while nothing arrives.
const SPOOL_TICK: Duration = Duration::from_millis(50);
/// How often it looks for more while points are arriving: well inside the loss bound a
/// kill may cost, and the queue in front of it lasts far longer at any logging rate.
const SPOOL_POLL: Duration = Duration::from_millis(1);

/// Journals what callers queue at once, then passes it on to the writer. What the writer
/// has not taken yet waits here, already journaled (up to the queue capacity); only the
/// small queue in front of this thread holds points not yet journaled. It waits for input
/// without taking it, so that everything it takes is journaled under the journal's lock and
/// the exit path, holding that lock, sees a consistent journal.
fn spooler_loop(spool: Arc<Spool>, forward: Sender<Chunk>, capacity: usize) {
    let mut backlog: VecDeque<Chunk> = VecDeque::new();
    let mut backlog_len = 0usize;
    let mut busy = false;
    loop {
        while let Some(chunk) = backlog.pop_front() {
            let len = chunk
                .msgs
                .iter()
                .map(Msg::points)
                .sum::<usize>()
                .max(chunk.msgs.len());
            match forward.try_send(chunk) {
                Ok(()) => backlog_len -= len,
                Err(TrySendError::Full(chunk)) => {
                    backlog.push_front(chunk);
                    break;
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        let room = backlog_len < capacity;
        spool.shared.saturated.store(!room, Ordering::Relaxed);
        if busy && room {
            // While points keep coming, poll the callers' queue instead of parking on it: a
            // parked spooler would make every send on the hot path pay for waking it up. The
            // writer's side is different: the moment it takes chunks, it gets more, or its
            // batch would wait for the next poll.
            let mut select = Select::new();
            select.recv(&spool.woken);
            if !backlog.is_empty() {
                select.send(&forward);
            }
            if select.ready_timeout(SPOOL_POLL).is_ok() {
                let _ = spool.woken.try_recv();
            }
        } else {
            let mut select = Select::new();
            if room {
                select.recv(&spool.queue);
            }
            if !backlog.is_empty() {
                select.send(&forward);
            }
            let _ = select.ready_timeout(SPOOL_TICK);
        }
        let mut journal = spool.journal.lock();
        if spool.closing.load(Ordering::Acquire) {
            return;
        }
        journal.mark(spool.committed.load(Ordering::Acquire));
        if !room {
            continue;
        }
        // Everything queued is journaled at once, so that nothing waits in the queue for
        // the writer's next commit; the backlog may pass its capacity by one queue's worth.
        busy = false;
        loop {
            let mut msgs = Vec::new();
            let mut points = 0;
            let mut gone = false;
            while points < CHUNK && msgs.len() < CHUNK {
                match spool.queue.try_recv() {
                    Ok(msg) => {
                        points += msg.points();
                        msgs.push(msg);
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        gone = true;
                        break;
                    }
                }
            }
            if msgs.is_empty() {
                if gone && backlog.is_empty() {
                    return;
                }
                break;
            }
            busy = true;
            let full = points >= CHUNK || msgs.len() == CHUNK;
            let end_seq = journal.append(&msgs, &spool.interner, &spool.runs);
            backlog_len += points.max(msgs.len());
            backlog.push_back(Chunk { msgs, end_seq });
            spool
                .shared
                .saturated
                .store(backlog_len >= capacity, Ordering::Relaxed);
            if !full {
                break;
            }
        }
    }
}

const POLL: Duration = Duration::from_millis(50);
const HELD_BACK_WAIT: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

fn backoff_floor() -> Duration {
    Duration::from_millis(50)
}

impl Engine {
    /// Opens (creating if needed) the store on the caller's thread, so that a bad path fails
    /// here, then hands the connection to a new writer thread.
    pub fn start(
        path: &Path,
        artifact_root: &str,
        interner: Arc<Interner>,
        config: Config,
    ) -> Result<Engine> {
        let store = Store::open(path, artifact_root)?.with_background_checkpoints(path);
        let options = Options {
            fork_gate: true,
            ..Options::default()
        };
        Engine::start_with(Box::new(store), interner, config, options)
    }

    /// Hands an opened backend (a store, a tracking server) to a new writer thread, behind
    /// a spooler thread that journals everything first when `options` name a spool. The
    /// writer first replays what dead processes left in the spool.
    pub fn start_with(
        store: Box<dyn Backend>,
        interner: Arc<Interner>,
        config: Config,
        options: Options,
    ) -> Result<Engine> {
        let mut spool_error = None;
        let journal = options.spool_dir.as_ref().and_then(|dir| {
            Journal::create(dir, &options.store_name)
                .map_err(|error| {
                    spool_error = Some(format!(
                        "fastflow cannot keep a spool in {} ({error}); points still queued \
                         when this process is killed will be lost",
                        dir.display()
                    ))
                })
                .ok()
        });
        let (mut engine, receiver) = if journal.is_some() {
            Engine::with_blocks(SPOOLED_QUEUE_BLOCKS)
        } else {
            Engine::with_queue(config.queue_capacity)
        };
        engine.takes_jobs = true;
        *engine.spool_error.lock() = spool_error;
        let gate = options.fork_gate.then(|| Arc::new(Mutex::new(())));
        engine.gate = gate.clone();
        engine.checkpoint_gate = store.checkpoint_gate().filter(|_| options.fork_gate);
        let source = match (journal, options.spool_dir) {
            (Some(journal), Some(dir)) => {
                let (wake, woken) = bounded(1);
                let spool = Arc::new(Spool {
                    wake,
                    woken,
                    dir,
                    shared: engine.shared.clone(),
                    interner: interner.clone(),
                    runs: engine.runs.clone(),
                    journal: Arc::new(Mutex::new(journal)),
                    queue: receiver,
                    committed: AtomicU64::new(0),
                    closing: AtomicBool::new(false),
                });
                let (forward, chunks) = bounded(FORWARD_CHUNKS);
                let spooler = spool.clone();
                let capacity = config.queue_capacity;
                thread::Builder::new()
                    .name("fastflow-spooler".into())
                    .spawn(move || spooler_loop(spooler, forward, capacity))?;
                engine.spool = Some(spool);
                Source::Spooled(chunks)
            }
            _ => Source::Direct(receiver),
        };
        let mut state = WriterState {
            store,
            runs: engine.runs.clone(),
            interner,
            shared: engine.shared.clone(),
            pending: Vec::new(),
            stranded: FxHashMap::default(),
            keys: Vec::new(),
            run_ids: Vec::new(),
            parked: Vec::new(),
            seen: 0,
            spool: engine.spool.clone(),
            open_runs: FxHashSet::default(),
            checkpoint_due: false,
            replayed_at_start: Replayed::default(),
        };
        let inbox = Inbox {
            source,
            buf: VecDeque::new(),
            seen: 0,
        };
        thread::Builder::new()
            .name("fastflow-writer".into())
            .spawn(move || {
                {
                    let _inside = gate.as_ref().map(|g| g.lock());
                    // A store that cannot take the replay now keeps the journals for later.
                    if let Ok(replayed) = state.replay_orphans() {
                        state.replayed_at_start = replayed;
                    }
                }
                writer_loop(state, inbox, config, gate)
            })?;
        Ok(engine)
    }

    /// Waits until the writer is outside SQLite and the spooler outside its journal, and
    /// keeps them out while the guard lives: taken just before the process forks.
    pub fn pause(&self) -> Paused {
        Paused {
            _gate: self.gate.as_ref().map(|g| g.lock_arc()),
            _checkpoint_gate: self.checkpoint_gate.as_ref().map(|g| g.lock_arc()),
            journal: self.spool.as_ref().map(|s| s.journal.lock_arc()),
        }
    }

    /// Why the spool could not be kept, once.
    pub fn take_spool_error(&self) -> Option<String> {
        self.spool_error.lock().take()
    }

    /// Whether this engine journals what it queues.
    /// Whether store operations (`submit`) reach a store through this engine.
    pub fn takes_jobs(&self) -> bool {
        self.takes_jobs
    }

    pub fn spooled(&self) -> bool {
        self.spool.is_some()
    }

    /// At the end of the process: removes the journal when everything was delivered;
    /// otherwise journals what is still queued and says how much the store lacks.
    pub fn finish(&self, delivered: bool) -> Option<Undelivered> {
        let spool = self.spool.as_ref()?;
        spool.closing.store(true, Ordering::Release);
        let mut journal = spool.journal.lock();
        let committed = spool.committed.load(Ordering::Acquire);
        if delivered && committed >= journal.seq && spool.queue.is_empty() {
            journal.remove();
            return None;
        }
        let mut rest = Vec::new();
        while let Ok(msg) = spool.queue.try_recv() {
            if matches!(msg, Msg::Metric(_) | Msg::Block(_) | Msg::Run(_)) {
                rest.push(msg);
            }
        }
        for lane in self.lanes.snapshot() {
            let block = std::mem::take(&mut *lane.lock_all());
            rest.push(Msg::Block(block));
        }
        let committed = spool.committed.load(Ordering::Acquire);
        journal.append(&rest, &spool.interner, &spool.runs);
        journal.mark(committed);
        let _ = journal.sync();
        let records = journal.seq.saturating_sub(committed);
        if records == 0 {
            journal.remove();
            return None;
        }
        let missing = journal.missing_after(committed);
        Some(Undelivered {
            records,
            kept: records - missing.min(records),
            dir: Some(journal.dir().to_path_buf()),
            journal_error: journal.last_error.clone(),
        })
    }

    /// An engine whose queue the caller drains itself (see `outbox`), holding about
    /// `capacity` points.
    pub fn with_queue(capacity: usize) -> (Engine, Receiver<Msg>) {
        Engine::with_blocks(capacity.div_ceil(LANE_POINTS))
    }

    fn with_blocks(blocks: usize) -> (Engine, Receiver<Msg>) {
        // Two at least: a flush's barrier must find room beside a block.
        let (sender, receiver) = bounded(blocks.max(2));
        let engine = Engine {
            runs: Arc::new(RunRegistry::default()),
            shared: Arc::new(Shared::default()),
            lanes: Lanes::default(),
            sender,
            spool: None,
            gate: None,
            checkpoint_gate: None,
            spool_error: Mutex::new(None),
            takes_jobs: false,
        };
        (engine, receiver)
    }

    /// One point straight into the queue, past the lanes, never waiting: for callers that
    /// drive an engine by hand (the writer's and the outbox's tests). The hot path goes
    /// through `producer` and `send_points` instead. The point comes back when the queue is
    /// full or the spooler holds callers back.
    pub fn try_send_metric(&self, record: MetricRecord) -> std::result::Result<(), Msg> {
        if self.held_back() {
            return Err(Msg::Metric(record));
        }
        match self.sender.try_send(Msg::Metric(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msg)) | Err(TrySendError::Disconnected(msg)) => Err(msg),
        }
    }

    /// The calling thread's lane into this engine; the first one of the process starts the
    /// collector that moves idle lanes on.
    pub fn producer(&self) -> Producer {
        let (producer, new) = self.lanes.producer();
        if new {
            crate::process::current().start_collector();
        }
        producer
    }

    /// Queues points through the calling thread's lane, sending the lane on (and waiting
    /// while the queue is full) whenever it fills.
    pub fn send_points(
        &self,
        records: impl IntoIterator<Item = MetricRecord>,
        keep_waiting: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let producer = self.producer();
        for record in records {
            while !producer.push(record) {
                self.send_lane(producer.lane(), keep_waiting)?;
            }
        }
        Ok(())
    }

    /// Sends everything `lane` holds as one block, waiting for room in the queue. What
    /// cannot be sent (the writer is gone, the caller gave up) stays in the lane. The lane
    /// is not held while waiting: `keep_waiting` may run a signal handler that ends the run
    /// and so sends this very lane.
    pub fn send_lane(
        &self,
        lane: &Lane,
        keep_waiting: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let mut asked = Instant::now();
        loop {
            {
                let mut taken = lane.lock_all();
                if taken.is_empty() {
                    return Ok(());
                }
                if !self.held_back() {
                    let block = std::mem::take(&mut *taken);
                    match self.sender.try_send(Msg::Block(block)) {
                        Ok(()) => return Ok(()),
                        Err(TrySendError::Full(Msg::Block(block))) => *taken = block,
                        Err(TrySendError::Disconnected(Msg::Block(block))) => {
                            *taken = block;
                            return Err(Error::WriterStopped);
                        }
                        Err(_) => unreachable!("a block comes back as it was sent"),
                    }
                }
            }
            thread::sleep(HELD_BACK_WAIT);
            if asked.elapsed() >= POLL {
                asked = Instant::now();
                if let Some(error) = self.shared.take_error() {
                    return Err(error);
                }
                keep_waiting()?;
            }
        }
    }

    /// Moves the lanes' points on without waiting: a lane another thread is sending, or
    /// that finds the queue full, is left for the next round. Whether anything moved.
    pub fn collect_lanes(&self) -> bool {
        let mut moved = false;
        for lane in self.lanes.snapshot() {
            let Some(mut taken) = lane.try_lock_all() else {
                continue;
            };
            if taken.is_empty() || self.held_back() {
                continue;
            }
            let block = std::mem::take(&mut *taken);
            match self.sender.try_send(Msg::Block(block)) {
                Ok(()) => moved = true,
                Err(TrySendError::Full(Msg::Block(block)))
                | Err(TrySendError::Disconnected(Msg::Block(block))) => *taken = block,
                Err(_) => {}
            }
        }
        moved
    }

    /// Whether a point must wait before it joins the queue: the writer is behind, so the
    /// spooler could not journal it until the writer's next commit; the caller waits here
    /// instead, with its point not yet logged.
    #[inline]
    fn held_back(&self) -> bool {
        self.shared.saturated.load(Ordering::Relaxed)
    }

    /// Sends, waiting while the queue is full. `keep_waiting` is asked between polls (the
    /// Python layer checks for Ctrl-C there); a write failure reported meanwhile ends the
    /// wait, since the queue may stay full until the store recovers.
    pub fn send(&self, msg: Msg, keep_waiting: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        if !matches!(msg, Msg::Metric(_) | Msg::Block(_)) {
            // Whatever this message asks for (a flush, a read, the end of a run) comes after
            // every point logged so far, on every thread.
            for lane in self.lanes.snapshot() {
                self.send_lane(&lane, keep_waiting)?;
            }
        }
        self.send_message(msg, keep_waiting)
    }

    fn send_message(
        &self,
        mut msg: Msg,
        keep_waiting: &mut dyn FnMut() -> Result<()>,
    ) -> Result<()> {
        let points = matches!(msg, Msg::Metric(_) | Msg::Block(_));
        let mut asked = Instant::now();
        loop {
            if points && self.held_back() {
                thread::sleep(HELD_BACK_WAIT);
                if asked.elapsed() >= POLL {
                    asked = Instant::now();
                    if let Some(error) = self.shared.take_error() {
                        return Err(error);
                    }
                    keep_waiting()?;
                }
                continue;
            }
            match self.sender.send_timeout(msg, POLL) {
                Ok(()) => {
                    if let Some(spool) = self.spool.as_ref().filter(|_| !points) {
                        let _ = spool.wake.try_send(());
                    }
                    return Ok(());
                }
                Err(SendTimeoutError::Disconnected(_)) => return Err(Error::WriterStopped),
                Err(SendTimeoutError::Timeout(back)) => {
                    msg = back;
                    if let Some(error) = self.shared.take_error() {
                        return Err(error);
                    }
                    keep_waiting()?;
                }
            }
        }
    }

    /// Queues `job` behind everything sent before it and returns where its answer arrives.
    pub fn submit<T, F>(
        &self,
        job: F,
        keep_waiting: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Receiver<Result<T>>>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriterState) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = bounded(1);
        let job: Job = Box::new(move |state| {
            let _ = reply.send(job(state));
        });
        self.send(Msg::Job(job), keep_waiting)?;
        Ok(answer)
    }

    pub fn wait<T>(
        answer: &Receiver<Result<T>>,
        keep_waiting: &mut dyn FnMut() -> Result<()>,
    ) -> Result<T> {
        loop {
            match answer.recv_timeout(POLL) {
                Ok(result) => return result,
                Err(RecvTimeoutError::Disconnected) => return Err(Error::WriterStopped),
                Err(RecvTimeoutError::Timeout) => keep_waiting()?,
            }
        }
    }

    /// Waits until everything sent before this call is durable, or says why it is not.
    pub fn flush(&self, keep_waiting: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        self.barrier(true, keep_waiting)
    }

    /// Waits until every point sent before this call is committed and readable by other
    /// connections to the store, without waiting for the disk (for a tracking server:
    /// delivered, as `flush`). Costs a few loads when the writer has committed everything.
    pub fn make_visible(&self, keep_waiting: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        if self.all_committed() {
            return Ok(());
        }
        self.barrier(false, keep_waiting)
    }

    fn barrier(&self, durable: bool, keep_waiting: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let (reply, answer) = bounded(1);
        self.send(Msg::Barrier { reply, durable }, keep_waiting)?;
        Self::wait(&answer, keep_waiting)
    }

    /// Whether every point queued so far is committed, known without asking the writer.
    /// Only a spooled engine can tell: the spooler numbers points as it takes them from
    /// the queue, under the journal's lock, and the writer says up to which number it has
    /// committed. A direct queue hands points to the writer with nothing counted between
    /// the take and the commit.
    fn all_committed(&self) -> bool {
        let Some(spool) = &self.spool else {
            return false;
        };
        if self.shared.has_error() || !self.lanes.all_empty() {
            return false;
        }
        let journal = spool.journal.lock();
        // The spooler takes from the queue only while it holds the lock, so an empty queue
        // means every point this caller queued already has its number.
        spool.queue.is_empty()
            && spool.committed.load(Ordering::Acquire) >= journal.seq
            && !self.shared.held.load(Ordering::Acquire)
    }

    /// Runs `job` on the writer and waits for it, for callers with nothing to poll.
    pub fn call<T, F>(&self, job: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut WriterState) -> Result<T> + Send + 'static,
    {
        let mut never = || Ok(());
        let answer = self.submit(job, &mut never)?;
        Self::wait(&answer, &mut never)
    }
}

fn writer_loop(
    mut state: WriterState,
    mut inbox: Inbox,
    config: Config,
    gate: Option<Arc<Mutex<()>>>,
) {
    // When the pending batch must be written, and how long to wait after a failed attempt.
    let mut due: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    let mut failing = false;
    let mut attempt = |state: &mut WriterState,
                       due: &mut Option<Instant>,
                       failing: &mut bool,
                       before_operation: bool| match if before_operation {
        state.write_pending_visible()
    } else {
        state.write_pending()
    } {
        Ok(()) => {
            *due = None;
            *failing = false;
            backoff = Duration::from_millis(50);
            state.settle_parked(&Ok(()));
        }
        Err(error) => {
            // An unreachable server is waited out, not raised in the training loop: the
            // queue holds the points and fills up to apply back-pressure.
            if !matches!(error, Error::Unavailable(_)) {
                state.settle_parked(&Err(error.clone()));
                state.shared.report(error);
            }
            *due = Some(Instant::now() + backoff);
            *failing = true;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    };
    loop {
        // While the store refuses writes, stop taking records once a batch is full, so the
        // channel fills and callers feel back-pressure instead of memory growing.
        if failing && state.pending.len() >= config.max_batch {
            if let Some(at) = due {
                thread::sleep(at.saturating_duration_since(Instant::now()));
            }
            let _inside = gate.as_ref().map(|g| g.lock());
            attempt(&mut state, &mut due, &mut failing, false);
            continue;
        }
        let timeout = due
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        let received = inbox.recv_timeout(timeout);
        // Everything below may call into SQLite; a fork waits until it is done.
        let _inside = gate.as_ref().map(|g| g.lock());
        state.seen = inbox.seen;
        match received {
            Ok(msg @ (Msg::Metric(_) | Msg::Block(_))) => {
                state.take_points(msg);
                due.get_or_insert_with(|| Instant::now() + config.flush_interval);
                // Drain what is already queued without waking up again for each record.
                while state.pending.len() < config.max_batch {
                    let next = inbox.try_recv();
                    state.seen = inbox.seen;
                    match next {
                        Ok(msg @ (Msg::Metric(_) | Msg::Block(_))) => state.take_points(msg),
                        Ok(Msg::Job(job)) => {
                            if !failing {
                                attempt(&mut state, &mut due, &mut failing, true);
                            }
                            job(&mut state);
                            state.checkpoint_if_due();
                        }
                        Ok(Msg::Barrier { reply, durable }) => {
                            state.barrier(reply, durable);
                            if !state.parked.is_empty() {
                                due.get_or_insert_with(|| Instant::now() + backoff_floor());
                                failing = true;
                            }
                        }
                        Ok(Msg::Run(event)) => state.run_event(event),
                        Err(_) => break,
                    }
                }
                if state.pending.len() >= config.max_batch && !failing {
                    attempt(&mut state, &mut due, &mut failing, false);
                }
            }
            Ok(Msg::Job(job)) => {
                if !failing {
                    attempt(&mut state, &mut due, &mut failing, true);
                }
                job(&mut state);
                state.checkpoint_if_due();
                if state.pending.is_empty() {
                    due = None;
                    failing = false;
                }
            }
            Ok(Msg::Barrier { reply, durable }) => {
                state.barrier(reply, durable);
                if !state.parked.is_empty() {
                    due.get_or_insert_with(|| Instant::now() + backoff_floor());
                    failing = true;
                } else if state.pending.is_empty() {
                    due = None;
                    failing = false;
                }
            }
            Ok(Msg::Run(event)) => state.run_event(event),
            Err(RecvTimeoutError::Timeout) => attempt(&mut state, &mut due, &mut failing, false),
            Err(RecvTimeoutError::Disconnected) => {
                let _ = state.write_pending();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn engine(dir: &Path) -> (Engine, Arc<Interner>) {
        let interner = Arc::new(Interner::default());
        let engine = Engine::start(
            &dir.join("mlflow.db"),
            "/tmp/mlruns",
            interner.clone(),
            Config::default(),
        )
        .unwrap();
        (engine, interner)
    }

    fn new_run(engine: &Engine) -> (String, u32) {
        let run = engine
            .call(|s| s.store.create_run("0", "me", 0, "r", &[]))
            .unwrap();
        let slot = engine.runs.register(&run.info.run_id, true);
        (run.info.run_id, slot.index)
    }

    #[test]
    fn records_reach_the_store_after_flush() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, interner) = engine(dir.path());
        let (run_id, run) = new_run(&engine);
        let key = interner.intern_metric_key("loss").unwrap();
        for step in 0..10_000 {
            let record = MetricRecord {
                run,
                key,
                value: step as f64,
                timestamp: 1,
                step,
            };
            if let Err(msg) = engine.try_send_metric(record) {
                engine.send(msg, &mut || Ok(())).unwrap();
            }
        }
        engine.call(|s| s.flush()).unwrap();
        let history = engine
            .call(move |s| s.store.get_metric_history(&run_id, "loss"))
            .unwrap();
        assert_eq!(history.len(), 10_000);
        assert_eq!(history.last().unwrap().value, 9999.0);
    }

    /// An engine behind a spool, as the Python layer starts one, whose writer commits only
    /// when asked.
    fn spooled_engine(dir: &Path) -> (Engine, Arc<Interner>) {
        let interner = Arc::new(Interner::default());
        let store = Store::open(&dir.join("mlflow.db"), "/tmp/mlruns").unwrap();
        let config = Config {
            flush_interval: Duration::from_secs(3600),
            ..Config::default()
        };
        let options = Options {
            spool_dir: Some(dir.join("spool")),
            store_name: "test".into(),
            fork_gate: true,
        };
        let engine =
            Engine::start_with(Box::new(store), interner.clone(), config, options).unwrap();
        assert!(engine.spooled());
        (engine, interner)
    }

    fn log_points(engine: &Engine, interner: &Interner, run: u32, key: &str, steps: i64) {
        let key = interner.intern_metric_key(key).unwrap();
        for step in 0..steps {
            let record = MetricRecord {
                run,
                key,
                value: step as f64,
                timestamp: 1,
                step,
            };
            if let Err(msg) = engine.try_send_metric(record) {
                engine.send(msg, &mut || Ok(())).unwrap();
            }
        }
    }

    fn points_seen_by_another_connection(dir: &Path, run_id: &str) -> i64 {
        let reader = rusqlite::Connection::open(dir.join("mlflow.db")).unwrap();
        reader
            .query_row(
                "SELECT count(*) FROM metrics WHERE run_uuid = ?1",
                [run_id],
                |r| r.get(0),
            )
            .unwrap()
    }

    #[test]
    fn make_visible_commits_for_other_connections() {
        for spooled in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let (engine, interner) = if spooled {
                spooled_engine(dir.path())
            } else {
                engine(dir.path())
            };
            let (run_id, run) = new_run(&engine);
            log_points(&engine, &interner, run, "loss", 1_000);
            engine.make_visible(&mut || Ok(())).unwrap();
            assert_eq!(
                points_seen_by_another_connection(dir.path(), &run_id),
                1_000
            );
            // Later commits are durable again, and a flush with nothing new still succeeds.
            log_points(&engine, &interner, run, "acc", 10);
            engine.flush(&mut || Ok(())).unwrap();
            engine.flush(&mut || Ok(())).unwrap();
            assert_eq!(
                points_seen_by_another_connection(dir.path(), &run_id),
                1_010
            );
        }
    }

    #[test]
    fn a_spooled_engine_knows_when_everything_is_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, interner) = spooled_engine(dir.path());
        let (run_id, run) = new_run(&engine);
        assert!(engine.all_committed());
        log_points(&engine, &interner, run, "loss", 5);
        // The writer waits an hour before it commits on its own.
        assert!(!engine.all_committed());
        engine.make_visible(&mut || Ok(())).unwrap();
        assert!(engine.all_committed());
        assert_eq!(points_seen_by_another_connection(dir.path(), &run_id), 5);

        // Points the writer holds for a deleted run keep the short answer away: each
        // `make_visible` reports them, as `flush` does.
        let id = run_id.clone();
        engine.call(move |s| s.store.delete_run(&id)).unwrap();
        log_points(&engine, &interner, run, "late", 1);
        for _ in 0..2 {
            let err = engine.make_visible(&mut || Ok(())).unwrap_err();
            assert!(
                err.to_string().contains("must be in the 'active' state"),
                "{err}"
            );
            assert!(!engine.all_committed());
        }
        let id = run_id.clone();
        engine.call(move |s| s.store.restore_run(&id)).unwrap();
        engine.make_visible(&mut || Ok(())).unwrap();
        assert!(engine.all_committed());
        assert_eq!(points_seen_by_another_connection(dir.path(), &run_id), 6);
    }

    #[test]
    fn points_of_deleted_runs_are_held_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (engine, interner) = engine(dir.path());
        let (run_id, run) = new_run(&engine);
        let id = run_id.clone();
        engine.call(move |s| s.store.delete_run(&id)).unwrap();
        let key = interner.intern_metric_key("m").unwrap();
        let record = MetricRecord {
            run,
            key,
            value: 1.0,
            timestamp: 1,
            step: 0,
        };
        assert!(engine.try_send_metric(record).is_ok());
        let err = engine.call(|s| s.flush()).unwrap_err();
        assert!(
            err.to_string().contains("must be in the 'active' state"),
            "{err}"
        );
        let id = run_id.clone();
        engine.call(move |s| s.store.restore_run(&id)).unwrap();
        engine.call(|s| s.flush()).unwrap();
        let history = engine
            .call(move |s| s.store.get_metric_history(&run_id, "m"))
            .unwrap();
        assert_eq!(history.len(), 1);
    }
}

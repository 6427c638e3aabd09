//! The background writer: one thread per store and process owns the SQLite connection and
//! takes everything through one bounded channel, so the caller only pays for a channel send.
//!
//! Metric records are batched and written in one transaction per flush. Every other store
//! operation travels the same channel as a closure, so it runs after the records sent before
//! it (a run ends after its last points are written, a read sees what was logged before it).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{
    bounded, Receiver, RecvTimeoutError, SendTimeoutError, Sender, TrySendError,
};
use parking_lot::Mutex;
use rustc_hash::FxHashMap;

use crate::backend::Backend;
use crate::entities::LIFECYCLE_ACTIVE;
use crate::error::{Error, Result};
use crate::interner::Interner;
use crate::runs::RunRegistry;
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
    /// A store operation; only an engine with a store behind it runs these.
    Job(Job),
    /// Answered once everything sent before it is durable, wherever the engine sends it.
    Barrier(Sender<Result<()>>),
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
            max_batch: 100_000,
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
    has_error: AtomicBool,
    error: Mutex<Option<Error>>,
}

impl Shared {
    pub fn report(&self, error: Error) {
        let mut slot = self.error.lock();
        if slot.is_none() {
            *slot = Some(error);
        }
        self.has_error.store(true, Ordering::Release);
    }

    #[inline]
    pub fn has_error(&self) -> bool {
        self.has_error.load(Ordering::Relaxed)
    }

    /// The pending failure, once. One relaxed load when there is none: it sits on the hot path.
    #[inline]
    pub fn take_error(&self) -> Option<Error> {
        if !self.has_error.load(Ordering::Relaxed) {
            return None;
        }
        self.has_error.store(false, Ordering::Relaxed);
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
}

impl WriterState {
    fn barrier(&mut self, reply: Sender<Result<()>>) {
        match self.flush() {
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
        let mut unchecked: Vec<u32> = self.pending.iter().map(|r| r.run).collect();
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
        if let Some(error) = refused.into_values().next() {
            self.shared.report(error);
        }
        Ok(())
    }

    /// Writes every pending point in one transaction. On failure the points stay pending.
    pub fn write_pending(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.strand_unwritable()?;
        // Sorted input fills the metrics primary-key index in order; the sort is stable so
        // equal points keep the order MLflow's latest-value rule depends on.
        self.pending
            .sort_by_key(|r| (r.run, r.key, r.timestamp, r.step));
        let mut keys = Vec::with_capacity(self.pending.len());
        let mut runs = Vec::with_capacity(self.pending.len());
        for i in 0..self.pending.len() {
            let record = self.pending[i];
            keys.push(self.key(record.key));
            runs.push(self.run_id(record.run)?);
        }
        let rows: Vec<MetricRow<'_>> = self
            .pending
            .iter()
            .zip(keys.iter().zip(runs.iter()))
            .map(|(r, (key, run_id))| MetricRow {
                run_id,
                key,
                value: r.value,
                timestamp: r.timestamp,
                step: r.step,
            })
            .collect();
        self.store.insert_metrics(&rows)?;
        self.pending.clear();
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

    /// Everything logged so far is in the store, or the reason it is not.
    pub fn flush(&mut self) -> Result<()> {
        let written = self.write_pending();
        let stranded = self.retry_stranded();
        // The caller hears about the failure now; the hot path need not repeat it.
        self.shared.take_error();
        written.and(stranded)
    }
}

/// A store with its writer thread. Lives as long as the process.
pub struct Engine {
    pub runs: Arc<RunRegistry>,
    pub shared: Arc<Shared>,
    sender: Sender<Msg>,
}

const POLL: Duration = Duration::from_millis(50);
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
        let store = Store::open(path, artifact_root)?;
        Engine::start_with(Box::new(store), interner, config)
    }

    /// Hands an opened backend (a store, a tracking server) to a new writer thread.
    pub fn start_with(
        store: Box<dyn Backend>,
        interner: Arc<Interner>,
        config: Config,
    ) -> Result<Engine> {
        let (engine, receiver) = Engine::with_queue(config.queue_capacity);
        let state = WriterState {
            store,
            runs: engine.runs.clone(),
            interner,
            shared: engine.shared.clone(),
            pending: Vec::new(),
            stranded: FxHashMap::default(),
            keys: Vec::new(),
            run_ids: Vec::new(),
            parked: Vec::new(),
        };
        thread::Builder::new()
            .name("fastflow-writer".into())
            .spawn(move || writer_loop(state, receiver, config))?;
        Ok(engine)
    }

    /// An engine whose queue the caller drains itself (see `outbox`).
    pub fn with_queue(capacity: usize) -> (Engine, Receiver<Msg>) {
        let (sender, receiver) = bounded(capacity);
        let engine = Engine {
            runs: Arc::new(RunRegistry::default()),
            shared: Arc::new(Shared::default()),
            sender,
        };
        (engine, receiver)
    }

    /// The hot path: a send that only blocks when the queue is full.
    #[inline]
    pub fn try_send_metric(&self, record: MetricRecord) -> std::result::Result<(), Msg> {
        match self.sender.try_send(Msg::Metric(record)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(msg)) | Err(TrySendError::Disconnected(msg)) => Err(msg),
        }
    }

    /// Sends, waiting while the queue is full. `keep_waiting` is asked between polls (the
    /// Python layer checks for Ctrl-C there); a write failure reported meanwhile ends the
    /// wait, since the queue may stay full until the store recovers.
    pub fn send(&self, mut msg: Msg, keep_waiting: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        loop {
            match self.sender.send_timeout(msg, POLL) {
                Ok(()) => return Ok(()),
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
        let (reply, answer) = bounded(1);
        self.send(Msg::Barrier(reply), keep_waiting)?;
        Self::wait(&answer, keep_waiting)
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

fn writer_loop(mut state: WriterState, receiver: Receiver<Msg>, config: Config) {
    // When the pending batch must be written, and how long to wait after a failed attempt.
    let mut due: Option<Instant> = None;
    let mut backoff = Duration::from_millis(50);
    let mut failing = false;
    let mut attempt =
        |state: &mut WriterState, due: &mut Option<Instant>, failing: &mut bool| match state
            .write_pending()
        {
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
            attempt(&mut state, &mut due, &mut failing);
            continue;
        }
        let timeout = due
            .map(|at| at.saturating_duration_since(Instant::now()))
            .unwrap_or(Duration::from_secs(3600));
        match receiver.recv_timeout(timeout) {
            Ok(Msg::Metric(record)) => {
                state.pending.push(record);
                due.get_or_insert_with(|| Instant::now() + config.flush_interval);
                // Drain what is already queued without waking up again for each record.
                while state.pending.len() < config.max_batch {
                    match receiver.try_recv() {
                        Ok(Msg::Metric(record)) => state.pending.push(record),
                        Ok(Msg::Job(job)) => {
                            if !failing {
                                attempt(&mut state, &mut due, &mut failing);
                            }
                            job(&mut state);
                        }
                        Ok(Msg::Barrier(reply)) => {
                            state.barrier(reply);
                            if !state.parked.is_empty() {
                                due.get_or_insert_with(|| Instant::now() + backoff_floor());
                                failing = true;
                            }
                        }
                        Err(_) => break,
                    }
                }
                if state.pending.len() >= config.max_batch && !failing {
                    attempt(&mut state, &mut due, &mut failing);
                }
            }
            Ok(Msg::Job(job)) => {
                if !failing {
                    attempt(&mut state, &mut due, &mut failing);
                }
                job(&mut state);
                if state.pending.is_empty() {
                    due = None;
                    failing = false;
                }
            }
            Ok(Msg::Barrier(reply)) => {
                state.barrier(reply);
                if !state.parked.is_empty() {
                    due.get_or_insert_with(|| Instant::now() + backoff_floor());
                    failing = true;
                } else if state.pending.is_empty() {
                    due = None;
                    failing = false;
                }
            }
            Err(RecvTimeoutError::Timeout) => attempt(&mut state, &mut due, &mut failing),
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

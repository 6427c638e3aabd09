//! Per-process state: the key interner and one engine (store + writer thread) per database.
//!
//! A forked child inherits this memory but not the writer threads, and any lock in it may
//! have been held by a thread that no longer exists. So after a fork the child starts a new
//! generation and never touches the old one again: the old state is leaked, not dropped.

use std::sync::atomic::{AtomicI64, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::cell::RefCell;

use parking_lot::{Mutex, MutexGuard};
use rustc_hash::FxHashMap;

use crate::backend::Backend;
use crate::error::Result;
use crate::interner::Interner;
use crate::writer::{Config, Engine, Options, Paused};

pub struct Process {
    pub generation: u64,
    pub interner: Arc<Interner>,
    /// Keyed by the store's path, or a tracking server's URI.
    engines: Mutex<FxHashMap<String, Arc<Engine>>>,
    /// Engines that ship to another process instead of a store (see `outbox`).
    outboxes: Mutex<Vec<Arc<Engine>>>,
    collector: Once,
}

static CURRENT: AtomicPtr<Process> = AtomicPtr::new(std::ptr::null_mut());
static GENERATION: AtomicU64 = AtomicU64::new(0);

fn fresh(generation: u64) -> &'static Process {
    Box::leak(Box::new(Process {
        generation,
        interner: Arc::new(Interner::default()),
        engines: Mutex::new(FxHashMap::default()),
        outboxes: Mutex::new(Vec::new()),
        collector: Once::new(),
    }))
}

/// This process's state, created on first use.
#[inline]
pub fn current() -> &'static Process {
    let ptr = CURRENT.load(Ordering::Acquire);
    if !ptr.is_null() {
        // SAFETY: every pointer stored in CURRENT comes from `Box::leak` and is never freed.
        return unsafe { &*ptr };
    }
    let candidate = fresh(GENERATION.load(Ordering::Acquire)) as *const Process as *mut Process;
    match CURRENT.compare_exchange(
        std::ptr::null_mut(),
        candidate,
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => unsafe { &*candidate },
        // Another thread won the race; the spare is a few empty maps, left leaked.
        Err(winner) => unsafe { &*winner },
    }
}

/// The generation that thread-local caches compare against; it changes in a forked child.
#[inline]
pub fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}

/// What the forking thread holds from just before `fork()` until just after it.
struct HeldForFork {
    engines: MutexGuard<'static, FxHashMap<String, Arc<Engine>>>,
    paused: Vec<Paused>,
}

thread_local! {
    static HELD_FOR_FORK: RefCell<Option<HeldForFork>> = const { RefCell::new(None) };
}

/// Just before `fork()`: no engine is being opened and no writer is inside SQLite while
/// the process is copied, so the child finds no SQLite lock held by a thread it lacks.
pub fn before_fork() {
    let process = current();
    let engines = process.engines.lock();
    let paused = engines.values().map(|engine| engine.pause()).collect();
    let held = HeldForFork { engines, paused };
    HELD_FOR_FORK.with(|cell| *cell.borrow_mut() = Some(held));
}

pub fn after_fork_in_parent() {
    HELD_FOR_FORK.with(|cell| drop(cell.borrow_mut().take()));
}

/// In a forked child: lets go of the parent's journals and starts a new generation, whose
/// state is all new; the parent's is leaked, locks and all.
pub fn after_fork_in_child() {
    if let Some(held) = HELD_FOR_FORK.with(|cell| cell.borrow_mut().take()) {
        for paused in held.paused {
            paused.release_in_child();
        }
        std::mem::forget(held.engines);
    }
    start_new_generation();
}

/// Milliseconds since the epoch after which blocking waits give up (0: no deadline): set
/// when the process ends, so that exit never hangs on an unreachable store.
static EXIT_DEADLINE: AtomicI64 = AtomicI64::new(0);

fn epoch_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn set_exit_deadline(within: Duration) {
    let at = epoch_millis() + within.as_millis() as i64;
    EXIT_DEADLINE.store(at.max(1), Ordering::Release);
}

#[inline]
pub fn exit_deadline_passed() -> bool {
    let at = EXIT_DEADLINE.load(Ordering::Relaxed);
    at != 0 && epoch_millis() >= at
}

/// Called in a forked child before it runs any other code of ours.
pub fn start_new_generation() {
    let generation = GENERATION.fetch_add(1, Ordering::AcqRel) + 1;
    CURRENT.store(
        fresh(generation) as *const Process as *mut Process,
        Ordering::Release,
    );
}

/// How often the collector looks at the lanes while points arrive, and while none do: the
/// longest a point logged by a thread that then stops logging waits before it moves on.
const COLLECT_BUSY: Duration = Duration::from_millis(1);
const COLLECT_IDLE: Duration = Duration::from_millis(5);
/// Empty rounds after which the collector slows down to `COLLECT_IDLE`.
const COLLECT_IDLE_AFTER: u32 = 100;

impl Process {
    /// Starts, once per process, the thread that moves points left in lanes (by threads
    /// that stopped logging or exited) on to their engines.
    pub fn start_collector(&'static self) {
        self.collector.call_once(|| {
            let spawned = thread::Builder::new()
                .name("fastflow-collector".into())
                .spawn(move || self.collect());
            // Without it, lanes still move on when they fill, on every flush and at exit.
            drop(spawned);
        });
    }

    fn collect(&self) {
        let mut empty_rounds = 0;
        loop {
            thread::sleep(if empty_rounds < COLLECT_IDLE_AFTER {
                COLLECT_BUSY
            } else {
                COLLECT_IDLE
            });
            if generation() != self.generation {
                return;
            }
            let mut moved = false;
            for engine in self.engines() {
                moved |= engine.collect_lanes();
            }
            empty_rounds = if moved { 0 } else { empty_rounds + 1 };
        }
    }

    /// The engine for the store `key` names, opening it with `open` on first use.
    pub fn engine(
        &self,
        key: &str,
        options: Options,
        open: impl FnOnce() -> Result<Box<dyn Backend>>,
    ) -> Result<Arc<Engine>> {
        let mut engines = self.engines.lock();
        if let Some(engine) = engines.get(key) {
            return Ok(engine.clone());
        }
        let engine = Arc::new(Engine::start_with(
            open()?,
            self.interner.clone(),
            Config::from_env(),
            options,
        )?);
        engines.insert(key.to_string(), engine.clone());
        Ok(engine)
    }

    /// Adds an outbox engine, so that flushing the process flushes it too.
    pub fn adopt_outbox(&self, engine: Arc<Engine>) {
        self.outboxes.lock().push(engine);
    }

    /// The engines of stores and servers, with the path or URI each was opened with.
    pub fn named_engines(&self) -> Vec<(String, Arc<Engine>)> {
        let engines = self.engines.lock();
        engines
            .iter()
            .map(|(key, engine)| (key.clone(), engine.clone()))
            .collect()
    }

    pub fn outbox_engines(&self) -> Vec<Arc<Engine>> {
        self.outboxes.lock().clone()
    }

    pub fn engines(&self) -> Vec<Arc<Engine>> {
        let mut all: Vec<Arc<Engine>> = self.engines.lock().values().cloned().collect();
        all.extend(self.outboxes.lock().iter().cloned());
        all
    }
}

//! Per-thread lanes: where a logging thread leaves its points before they cross to the writer.
//!
//! Sending every point through the writer's channel makes the logging thread and the
//! consumer fight over the channel's cache lines; on two cores that doubles the cost of a
//! call. A lane is a ring only its own thread writes to, with no locked instruction on the
//! way in. Its points move to the writer as one block: when the ring is full (by its own
//! thread), before any other message is sent to the engine (so a flush, an end of run or a
//! read sees everything logged before it), and within milliseconds by the process's
//! collector thread, which also picks up the lanes of threads that have exited.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};

use crate::writer::MetricRecord;

/// Points a lane holds: the most a kill can cost beyond what the engine's queue holds, and
/// the size of the blocks the writer receives.
pub const LANE_POINTS: usize = 1024;
const MASK: usize = LANE_POINTS - 1;

/// Keeps a value on cache lines of its own: the producer's and the consumers' counters,
/// and flags the hot path reads beside fields other threads write.
#[repr(align(128))]
#[derive(Default)]
pub struct Padded<T>(pub T);

pub struct Lane {
    slots: Box<[UnsafeCell<MetricRecord>]>,
    /// Points ever pushed; written by the owning thread only.
    tail: Padded<AtomicUsize>,
    /// Points ever taken; written only under `taken`.
    head: Padded<AtomicUsize>,
    /// The owner's last look at `head`, so that a push reads the consumers' line only
    /// when the ring looks full.
    seen_head: Padded<Cell<usize>>,
    /// Held while taking points and sending them on, so that blocks leave in order. Holds
    /// points taken that could not be sent yet; they go before the ring's.
    taken: Mutex<Vec<MetricRecord>>,
}

// SAFETY: `slots` between `head` and `tail` are written only by the owning thread before it
// publishes them with a release store of `tail`; consumers read them after an acquire load
// of `tail`, under `taken`, and free them with a release store of `head`, which the owner
// loads with acquire before reusing a slot. `seen_head` is touched by the owner alone (see
// `Producer`).
unsafe impl Sync for Lane {}
unsafe impl Send for Lane {}

const ZERO: MetricRecord = MetricRecord {
    run: 0,
    key: 0,
    value: 0.0,
    timestamp: 0,
    step: 0,
};

impl Lane {
    fn new() -> Lane {
        Lane {
            slots: (0..LANE_POINTS).map(|_| UnsafeCell::new(ZERO)).collect(),
            tail: Padded(AtomicUsize::new(0)),
            head: Padded(AtomicUsize::new(0)),
            seen_head: Padded(Cell::new(0)),
            taken: Mutex::new(Vec::new()),
        }
    }

    /// Whether the lane holds nothing for the writer.
    pub fn is_empty(&self) -> bool {
        self.tail.0.load(Ordering::Acquire) == self.head.0.load(Ordering::Acquire)
            && self.taken.try_lock().is_some_and(|taken| taken.is_empty())
    }

    /// Takes everything the lane holds, oldest first, into the guard's vector; the caller
    /// sends it on while still holding the guard, or leaves what it could not send there.
    fn take(&self, taken: &mut MutexGuard<'_, Vec<MetricRecord>>) {
        let head = self.head.0.load(Ordering::Relaxed);
        let tail = self.tail.0.load(Ordering::Acquire);
        taken.reserve(tail - head);
        for at in head..tail {
            // SAFETY: slots in head..tail are published and not reused until `head` moves.
            taken.push(unsafe { *self.slots[at & MASK].get() });
        }
        self.head.0.store(tail, Ordering::Release);
    }

    /// Takes the lane's points for sending, waiting for another sender of this lane.
    pub fn lock_all(&self) -> MutexGuard<'_, Vec<MetricRecord>> {
        let mut taken = self.taken.lock();
        self.take(&mut taken);
        taken
    }

    /// As `lock_all`, unless another thread is sending this lane's points right now.
    pub fn try_lock_all(&self) -> Option<MutexGuard<'_, Vec<MetricRecord>>> {
        let mut taken = self.taken.try_lock()?;
        self.take(&mut taken);
        Some(taken)
    }
}

/// The owning thread's handle on its lane: the only way to push, and not `Send`, so no other
/// thread can.
pub struct Producer {
    lane: Arc<Lane>,
    _owner_only: std::marker::PhantomData<*const ()>,
}

impl Producer {
    /// Adds a point; `false` when the ring is full (the caller sends the lane on, then pushes).
    #[inline]
    pub fn push(&self, record: MetricRecord) -> bool {
        let lane = &*self.lane;
        let tail = lane.tail.0.load(Ordering::Relaxed);
        if tail - lane.seen_head.0.get() >= LANE_POINTS {
            lane.seen_head.0.set(lane.head.0.load(Ordering::Acquire));
            if tail - lane.seen_head.0.get() >= LANE_POINTS {
                return false;
            }
        }
        // SAFETY: only this thread writes slots, and the slot at `tail` was freed (above).
        unsafe { *lane.slots[tail & MASK].get() = record };
        lane.tail.0.store(tail + 1, Ordering::Release);
        true
    }

    pub fn lane(&self) -> &Lane {
        &self.lane
    }
}

/// An engine's lanes, one per thread that logged to it.
pub struct Lanes {
    id: u64,
    all: Mutex<Vec<Arc<Lane>>>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

impl Default for Lanes {
    fn default() -> Self {
        Lanes {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            all: Mutex::new(Vec::new()),
        }
    }
}

thread_local! {
    /// This thread's lanes, by the id of the engine's `Lanes`.
    static MINE: RefCell<Vec<(u64, Arc<Lane>)>> = const { RefCell::new(Vec::new()) };
}

impl Lanes {
    /// The calling thread's lane into these lanes' engine, made on first use; `true` with
    /// it when it is new.
    pub fn producer(&self) -> (Producer, bool) {
        let found = MINE.with(|mine| {
            mine.borrow()
                .iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, lane)| lane.clone())
        });
        let (lane, new) = match found {
            Some(lane) => (lane, false),
            None => {
                let lane = Arc::new(Lane::new());
                self.all.lock().push(lane.clone());
                MINE.with(|mine| mine.borrow_mut().push((self.id, lane.clone())));
                (lane, true)
            }
        };
        let producer = Producer {
            lane,
            _owner_only: std::marker::PhantomData,
        };
        (producer, new)
    }

    /// Every lane, dropping those whose thread has exited and that hold nothing more.
    pub fn snapshot(&self) -> Vec<Arc<Lane>> {
        let mut all = self.all.lock();
        all.retain(|lane| Arc::strong_count(lane) > 1 || !lane.is_empty());
        all.clone()
    }

    pub fn all_empty(&self) -> bool {
        self.all.lock().iter().all(|lane| lane.is_empty())
    }
}

/// In a forked child: the lanes this thread had belong to the parent's engines.
pub fn forget_in_child() {
    MINE.with(|mine| std::mem::forget(mine.take()));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(step: i64) -> MetricRecord {
        MetricRecord { step, ..ZERO }
    }

    #[test]
    fn points_leave_in_the_order_they_came_across_wraps() {
        let lanes = Lanes::default();
        let (producer, new) = lanes.producer();
        assert!(new);
        let mut out = Vec::new();
        let mut step = 0;
        for round in 0..5 {
            while producer.push(record(step)) {
                step += 1;
            }
            assert_eq!(step as usize, (round + 1) * LANE_POINTS);
            out.append(&mut producer.lane().lock_all());
        }
        let steps: Vec<i64> = out.iter().map(|r| r.step).collect();
        assert_eq!(steps, (0..step).collect::<Vec<_>>());
        assert!(lanes.all_empty());
    }

    #[test]
    fn a_consumer_on_another_thread_sees_every_point_once() {
        let lanes = Arc::new(Lanes::default());
        let (producer, _) = lanes.producer();
        let lane = producer.lane;
        let (producer, new) = lanes.producer();
        assert!(!new, "one lane per thread and engine");
        let consumer = {
            let lanes = lanes.clone();
            std::thread::spawn(move || {
                let mut got = Vec::new();
                while got.len() < 200_000 {
                    for lane in lanes.snapshot() {
                        got.append(&mut lane.lock_all());
                    }
                }
                got
            })
        };
        for step in 0..200_000 {
            while !producer.push(record(step)) {
                std::thread::yield_now();
            }
        }
        let got = consumer.join().unwrap();
        let steps: Vec<i64> = got.iter().map(|r| r.step).collect();
        assert_eq!(steps, (0..200_000).collect::<Vec<_>>());
        drop(lane);
    }

    #[test]
    fn a_lane_outlives_its_thread_until_emptied() {
        let lanes = Arc::new(Lanes::default());
        {
            let lanes = lanes.clone();
            std::thread::spawn(move || {
                let (producer, _) = lanes.producer();
                assert!(producer.push(record(7)));
            })
            .join()
            .unwrap();
        }
        let left = lanes.snapshot();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].lock_all().drain(..).map(|r| r.step).sum::<i64>(), 7);
        drop(left);
        assert!(lanes.snapshot().is_empty());
    }
}

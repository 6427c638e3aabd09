//! The runs this process logs to, each with a small index that metric records carry instead
//! of the 32-character run id, and a lifecycle flag the hot path can check without the store.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::store::run_not_active;

const ACTIVE: u8 = 0;
const DELETED: u8 = 1;

pub struct RunSlot {
    pub id: Arc<str>,
    pub index: u32,
    stage: AtomicU8,
}

impl RunSlot {
    /// MLflow refuses data for a deleted run at the call site; so do we, for the runs whose
    /// deletion this process has seen.
    #[inline]
    pub fn check_active(&self) -> Result<()> {
        if self.stage.load(Ordering::Relaxed) == ACTIVE {
            Ok(())
        } else {
            Err(run_not_active(&self.id, "deleted"))
        }
    }

    pub fn set_active(&self, active: bool) {
        self.stage
            .store(if active { ACTIVE } else { DELETED }, Ordering::Relaxed);
    }
}

#[derive(Default)]
pub struct RunRegistry {
    inner: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    by_id: FxHashMap<Arc<str>, Arc<RunSlot>>,
    slots: Vec<Arc<RunSlot>>,
}

impl RunRegistry {
    pub fn get(&self, run_id: &str) -> Option<Arc<RunSlot>> {
        self.inner.read().by_id.get(run_id).cloned()
    }

    /// Registers a run known to exist, or updates the stage of one already registered.
    pub fn register(&self, run_id: &str, active: bool) -> Arc<RunSlot> {
        let mut table = self.inner.write();
        if let Some(slot) = table.by_id.get(run_id) {
            slot.set_active(active);
            return slot.clone();
        }
        let slot = Arc::new(RunSlot {
            id: Arc::from(run_id),
            index: table.slots.len() as u32,
            stage: AtomicU8::new(if active { ACTIVE } else { DELETED }),
        });
        table.slots.push(slot.clone());
        table.by_id.insert(slot.id.clone(), slot.clone());
        slot
    }

    pub fn id(&self, index: u32) -> Result<Arc<str>> {
        self.inner
            .read()
            .slots
            .get(index as usize)
            .map(|slot| slot.id.clone())
            .ok_or(Error::WriterStopped)
    }

    pub fn mark(&self, run_id: &str, active: bool) {
        if let Some(slot) = self.get(run_id) {
            slot.set_active(active);
        }
    }
}

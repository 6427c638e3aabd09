//! Metric keys as small integers: the hot path sends a `u32` instead of a string, and a key
//! is validated once, the first time the process sees it.

use std::sync::Arc;

use parking_lot::RwLock;
use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::validation::{validate_key, KeyKind};

#[derive(Default)]
pub struct Interner {
    inner: RwLock<Table>,
}

#[derive(Default)]
struct Table {
    ids: FxHashMap<Arc<str>, u32>,
    keys: Vec<Arc<str>>,
}

impl Interner {
    /// The id of a valid metric key, or MLflow's error for an invalid one.
    pub fn intern_metric_key(&self, key: &str) -> Result<u32> {
        if let Some(&id) = self.inner.read().ids.get(key) {
            return Ok(id);
        }
        validate_key(KeyKind::Metric, key, "name")?;
        let mut table = self.inner.write();
        if let Some(&id) = table.ids.get(key) {
            return Ok(id);
        }
        let id = table.keys.len() as u32;
        let key: Arc<str> = Arc::from(key);
        table.keys.push(key.clone());
        table.ids.insert(key, id);
        Ok(id)
    }

    pub fn key(&self, id: u32) -> Arc<str> {
        self.inner.read().keys[id as usize].clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_id() {
        let interner = Interner::default();
        let a = interner.intern_metric_key("loss").unwrap();
        let b = interner.intern_metric_key("acc").unwrap();
        assert_ne!(a, b);
        assert_eq!(interner.intern_metric_key("loss").unwrap(), a);
        assert_eq!(&*interner.key(b), "acc");
        assert!(interner.intern_metric_key("bad!key").is_err());
    }
}

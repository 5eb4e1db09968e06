//! The functions currently deployed, by name, for hot swapping: loading a new
//! module under a name replaces the entry, so new invocations use the new
//! module while invocations in flight finish on the old one (they hold their
//! own `Arc`). Nothing is restarted.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::function::Function;

/// Deployed functions by name. Lookups take a read lock only long enough to
/// clone an `Arc`; the lock is never held across an invocation.
#[derive(Debug, Default)]
pub struct FunctionRegistry {
    functions: RwLock<HashMap<String, Arc<Function>>>,
}

impl FunctionRegistry {
    pub fn new() -> FunctionRegistry {
        FunctionRegistry::default()
    }

    /// Deploys `function` under its name and returns the one it replaces.
    pub fn insert(&self, function: Function) -> Option<Arc<Function>> {
        let name = function.name().to_string();
        self.write().insert(name, Arc::new(function))
    }

    /// The function deployed as `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Function>> {
        self.read().get(name).cloned()
    }

    /// Removes the function deployed as `name`; invocations in flight finish.
    pub fn remove(&self, name: &str) -> Option<Arc<Function>> {
        self.write().remove(name)
    }

    /// Names of the deployed functions, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Arc<Function>>> {
        // The map is consistent even if a writer panicked: inserts and removes
        // are single operations.
        self.functions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<Function>>> {
        self.functions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

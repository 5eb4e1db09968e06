//! The functions currently deployed, by name, and where each stands: its
//! component compiling in the background, ready to invoke, or failed to load.
//!
//! Loading a new module under a name replaces the entry, so new invocations
//! use the new module while invocations in flight finish on the old one (they
//! hold their own `Arc`). While a replacement compiles, the module it replaces
//! keeps serving; nothing is restarted.
//!
//! A load started in the background holds a [`LoadTicket`]: only the latest
//! ticket of a name may settle it, so a slow compile that was overtaken by a
//! newer module (or by a delete) never installs stale code.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::function::Function;

/// Deployed functions by name.
pub type FunctionRegistry = Registry<Function>;

/// Where a deployed function stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FunctionState {
    /// Its component is compiling (or being read from the compiled cache);
    /// invocations wait.
    Loading,
    /// It can be invoked.
    Ready,
    /// Its component did not load, for the reason given; it stays so until a
    /// new module is put.
    Failed(String),
}

impl FunctionState {
    /// `loading`, `ready` or `failed`: the state's name in the API.
    pub fn name(&self) -> &'static str {
        match self {
            FunctionState::Loading => "loading",
            FunctionState::Ready => "ready",
            FunctionState::Failed(_) => "failed",
        }
    }
}

/// The right to settle one background load of a function (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadTicket(u64);

/// One name's entry.
#[derive(Debug)]
struct Slot<T> {
    /// What invocations use; kept while a replacement loads.
    ready: Option<Arc<T>>,
    /// The background load in progress, if any.
    loading: Option<LoadTicket>,
    /// Why the latest load failed, while no later one has succeeded.
    failure: Option<String>,
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            ready: None,
            loading: None,
            failure: None,
        }
    }
}

impl<T> Slot<T> {
    fn state(&self) -> FunctionState {
        match (&self.ready, self.loading, &self.failure) {
            (Some(_), _, _) => FunctionState::Ready,
            (None, Some(_), _) => FunctionState::Loading,
            (None, None, Some(reason)) => FunctionState::Failed(reason.clone()),
            // A slot is made by a load or an insert, which leave one of the above.
            (None, None, None) => FunctionState::Loading,
        }
    }
}

/// Deployed values (functions) by name. Lookups take a read lock only long
/// enough to clone an `Arc`; the lock is never held across an invocation or a
/// compile.
#[derive(Debug)]
pub struct Registry<T> {
    slots: RwLock<HashMap<String, Slot<T>>>,
    next_ticket: AtomicU64,
    /// Bumped on every change, so waiters look again.
    changed: watch::Sender<u64>,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            slots: RwLock::default(),
            next_ticket: AtomicU64::new(0),
            changed: watch::Sender::new(0),
        }
    }
}

impl<T> Registry<T> {
    pub fn new() -> Registry<T> {
        Registry::default()
    }

    /// Deploys `function` as `name`, ready at once, and returns the one it
    /// replaces. Any background load of the name still running is overtaken.
    pub fn insert(&self, name: &str, function: T) -> Option<Arc<T>> {
        let old = {
            let mut slots = self.write();
            let slot = slots.entry(name.to_string()).or_default();
            slot.loading = None;
            slot.failure = None;
            slot.ready.replace(Arc::new(function))
        };
        self.notify();
        old
    }

    /// Marks `name` as loading a new module in the background and returns the
    /// ticket that settles it with [`finish_load`](Self::finish_load). A module
    /// already ready keeps serving meanwhile.
    pub fn begin_load(&self, name: &str) -> LoadTicket {
        let ticket = LoadTicket(self.next_ticket.fetch_add(1, Ordering::Relaxed));
        {
            let mut slots = self.write();
            let slot = slots.entry(name.to_string()).or_default();
            slot.loading = Some(ticket);
            slot.failure = None;
        }
        self.notify();
        ticket
    }

    /// Settles a background load: the function becomes ready, or failed with
    /// the reason. Returns `false`, changing nothing, when the load was
    /// overtaken by a newer module or the function was removed.
    pub fn finish_load(&self, name: &str, ticket: LoadTicket, loaded: Result<T, String>) -> bool {
        {
            let mut slots = self.write();
            let Some(slot) = slots.get_mut(name).filter(|s| s.loading == Some(ticket)) else {
                return false;
            };
            slot.loading = None;
            match loaded {
                Ok(function) => {
                    slot.ready = Some(Arc::new(function));
                    slot.failure = None;
                }
                Err(reason) => slot.failure = Some(reason),
            }
        }
        self.notify();
        true
    }

    /// The function deployed as `name`, when it is ready.
    pub fn get(&self, name: &str) -> Option<Arc<T>> {
        self.read().get(name).and_then(|s| s.ready.clone())
    }

    /// Where `name` stands; `None` when nothing is deployed under it.
    pub fn state(&self, name: &str) -> Option<FunctionState> {
        self.read().get(name).map(Slot::state)
    }

    /// Waits until `name` is ready and returns it; `None` at once when nothing
    /// is deployed under it (or once it is removed). A failed function is
    /// waited for too: a new module may be put.
    pub async fn wait_ready(&self, name: &str) -> Option<Arc<T>> {
        let mut changes = self.changed.subscribe();
        loop {
            // Subscribing (or `changed` returning) marks the current version
            // seen, so a change after this look wakes the wait below.
            match self.read().get(name) {
                None => return None,
                Some(Slot {
                    ready: Some(function),
                    ..
                }) => return Some(function.clone()),
                Some(_) => {}
            }
            // The sender lives as long as `self`, which this borrow outlives.
            changes
                .changed()
                .await
                .expect("the registry owns the sender");
        }
    }

    /// Removes the function deployed as `name`; invocations in flight finish,
    /// and a background load of it is dropped when it completes.
    pub fn remove(&self, name: &str) -> Option<Arc<T>> {
        let old = self.write().remove(name).and_then(|s| s.ready);
        self.notify();
        old
    }

    /// Names of the deployed functions, sorted.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.read().keys().cloned().collect();
        names.sort();
        names
    }

    /// The functions not ready, sorted by name, with their state.
    pub fn not_ready(&self) -> Vec<(String, FunctionState)> {
        let mut pending: Vec<(String, FunctionState)> = self
            .read()
            .iter()
            .map(|(name, slot)| (name.clone(), slot.state()))
            .filter(|(_, state)| *state != FunctionState::Ready)
            .collect();
        pending.sort_by(|a, b| a.0.cmp(&b.0));
        pending
    }

    fn notify(&self) {
        self.changed.send_modify(|version| *version += 1);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, Slot<T>>> {
        // The map is consistent even if a writer panicked: every change is a
        // few field assignments that cannot panic halfway.
        self.slots
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Slot<T>>> {
        self.slots
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_background_load_goes_from_loading_to_ready_or_failed() {
        let registry = Registry::<&str>::new();
        assert_eq!(registry.state("f"), None);
        let ticket = registry.begin_load("f");
        assert_eq!(registry.state("f"), Some(FunctionState::Loading));
        assert!(registry.get("f").is_none());
        assert!(registry.finish_load("f", ticket, Ok("v1")));
        assert_eq!(registry.state("f"), Some(FunctionState::Ready));
        assert_eq!(registry.get("f").as_deref(), Some(&"v1"));

        let ticket = registry.begin_load("g");
        assert!(registry.finish_load("g", ticket, Err("no export".into())));
        assert_eq!(
            registry.state("g"),
            Some(FunctionState::Failed("no export".into()))
        );
        assert_eq!(
            registry.not_ready(),
            vec![("g".to_string(), FunctionState::Failed("no export".into()))]
        );
    }

    #[test]
    fn the_ready_module_serves_while_its_replacement_loads() {
        let registry = Registry::<&str>::new();
        registry.insert("f", "v1");
        let ticket = registry.begin_load("f");
        assert_eq!(registry.get("f").as_deref(), Some(&"v1"));
        assert_eq!(registry.state("f"), Some(FunctionState::Ready));
        // A replacement that fails to load leaves the old module serving.
        assert!(registry.finish_load("f", ticket, Err("broken".into())));
        assert_eq!(registry.get("f").as_deref(), Some(&"v1"));
    }

    #[test]
    fn an_overtaken_or_removed_load_changes_nothing() {
        let registry = Registry::<&str>::new();
        let slow = registry.begin_load("f");
        let fast = registry.begin_load("f");
        assert!(registry.finish_load("f", fast, Ok("new")));
        assert!(!registry.finish_load("f", slow, Ok("stale")));
        assert_eq!(registry.get("f").as_deref(), Some(&"new"));

        let ticket = registry.begin_load("f");
        registry.insert("f", "put directly");
        assert!(!registry.finish_load("f", ticket, Ok("stale")));
        assert_eq!(registry.get("f").as_deref(), Some(&"put directly"));

        let ticket = registry.begin_load("gone");
        registry.remove("gone");
        assert!(!registry.finish_load("gone", ticket, Ok("stale")));
        assert_eq!(registry.state("gone"), None);
    }

    #[tokio::test]
    async fn waiting_for_a_function_ends_when_it_is_ready_or_removed() {
        let registry = Arc::new(Registry::<&str>::new());
        assert!(registry.wait_ready("absent").await.is_none());

        let ticket = registry.begin_load("f");
        let waiter = tokio::spawn({
            let registry = registry.clone();
            async move { registry.wait_ready("f").await }
        });
        // A failure does not end the wait: a working module may follow.
        let failed = registry.begin_load("f");
        assert!(!registry.finish_load("f", ticket, Ok("overtaken")));
        registry.finish_load("f", failed, Err("broken".into()));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        registry.insert("f", "fixed");
        assert_eq!(waiter.await.unwrap().as_deref(), Some(&"fixed"));

        registry.begin_load("g");
        let waiter = tokio::spawn({
            let registry = registry.clone();
            async move { registry.wait_ready("g").await }
        });
        tokio::task::yield_now().await;
        registry.remove("g");
        assert!(waiter.await.unwrap().is_none());
    }
}

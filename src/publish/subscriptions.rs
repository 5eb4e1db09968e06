//! A topic's subscriptions as publishers see them, changed in place one subscription at a
//! time: adding, changing or removing one costs work in proportion to that subscription,
//! not to how many the topic has.
//!
//! A publish reads them under a shared lock for as long as it matches and builds its
//! deliveries (never across a wait), so it sees every subscription either wholly before
//! or wholly after a change. Each subscription keeps one id while it lives; ids of removed
//! subscriptions are reused.

use super::matcher::TopicMatcher;
use crate::model::{SubscriptionSpec, parse_policy};
use crate::telemetry::{SubscriptionMeter, TopicMeter};
use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use switchyard_filter::{Policy, Scope};

/// A subscription whose filter policy has been checked and compiled, ready to apply.
pub struct Checked {
    spec: SubscriptionSpec,
    policy: Option<(Policy, Scope)>,
}

impl Checked {
    /// Checks the subscription's filter policy; the error names what is wrong with it.
    pub fn new(spec: SubscriptionSpec) -> Result<Checked, String> {
        let policy = match &spec.filter_policy {
            Some(p) => Some((
                parse_policy(p, spec.filter_policy_scope)?,
                spec.filter_policy_scope.into(),
            )),
            None => None,
        };
        Ok(Checked { spec, policy })
    }
}

/// The subscriptions of one topic.
pub struct Subscriptions {
    set: RwLock<Set>,
    /// The topic's meters, where each subscription's meter is found and forgotten.
    meter: Arc<TopicMeter>,
}

/// The subscriptions with their matcher, as one publish sees them.
pub(super) struct Set {
    matcher: TopicMatcher,
    /// By id; `None` for an id free for reuse.
    entries: Vec<Option<Entry>>,
    free: Vec<u32>,
    by_name: BTreeMap<String, u32>,
}

/// One subscription.
pub(super) struct Entry {
    pub name: String,
    /// Its spec without the filter policy, which the matcher holds compiled.
    pub spec: SubscriptionSpec,
    /// The filter policy as compact JSON text: a fraction of the memory of its parsed
    /// tree, which matters at a million subscriptions, and read only to show it.
    policy: Option<Box<str>>,
    pub meter: Arc<SubscriptionMeter>,
}

impl Entry {
    fn new(name: String, mut spec: SubscriptionSpec, meter: Arc<SubscriptionMeter>) -> Self {
        let policy = spec
            .filter_policy
            .take()
            .map(|p| p.to_string().into_boxed_str());
        Entry {
            name,
            spec,
            policy,
            meter,
        }
    }

    /// The spec as it was put.
    fn spec(&self) -> SubscriptionSpec {
        SubscriptionSpec {
            filter_policy: self
                .policy
                .as_deref()
                .map(|p| serde_json::from_str(p).expect("a policy's own JSON text parses")),
            ..self.spec.clone()
        }
    }
}

impl Subscriptions {
    /// Compiles every subscription at once; the error names the first one that cannot be.
    pub fn build(
        specs: BTreeMap<String, SubscriptionSpec>,
        meter: Arc<TopicMeter>,
    ) -> Result<Self, String> {
        let mut checked = Vec::with_capacity(specs.len());
        for (name, spec) in specs {
            let c = Checked::new(spec).map_err(|e| format!("subscription {name:?}: {e}"))?;
            checked.push((name, c));
        }
        let matcher = TopicMatcher::build(
            checked
                .iter()
                .enumerate()
                .map(|(id, (_, c))| (id as u32, c.policy.as_ref())),
        );
        let mut set = Set {
            matcher,
            entries: Vec::with_capacity(checked.len()),
            free: Vec::new(),
            by_name: BTreeMap::new(),
        };
        for (id, (name, c)) in checked.into_iter().enumerate() {
            set.by_name.insert(name.clone(), id as u32);
            let m = meter.subscriptions.get(&name);
            set.entries.push(Some(Entry::new(name, c.spec, m)));
        }
        Ok(Subscriptions {
            set: RwLock::new(set),
            meter,
        })
    }

    /// Adds the subscription `name`, or replaces what it was.
    pub fn put(&self, name: &str, checked: Checked) {
        let meter = self.meter.subscriptions.get(name);
        let mut set = self.write();
        let id = match set.by_name.get(name) {
            Some(&id) => id,
            None => {
                let id = match set.free.pop() {
                    Some(id) => id,
                    None => {
                        // Most topics have a subscription or two: room for four entries
                        // (a vector's first growth) would be most of a topic's memory.
                        if set.entries.len() < 4 {
                            set.entries.reserve_exact(1);
                        }
                        set.entries.push(None);
                        set.entries.len() as u32 - 1
                    }
                };
                set.by_name.insert(name.to_string(), id);
                id
            }
        };
        set.matcher.insert(id, checked.policy.as_ref());
        set.entries[id as usize] = Some(Entry::new(name.to_string(), checked.spec, meter));
    }

    /// Removes the subscription `name`; `false` when there was none.
    pub fn remove(&self, name: &str) -> bool {
        let mut set = self.write();
        let Some(id) = set.by_name.remove(name) else {
            return false;
        };
        set.entries[id as usize] = None;
        set.free.push(id);
        set.matcher.remove(id);
        if set.matcher.needs_rebuild() {
            let Set {
                matcher, entries, ..
            } = &mut *set;
            // Compiled once already when put, so compiling again cannot fail.
            let live: Vec<(u32, Checked)> = entries
                .iter()
                .enumerate()
                .filter_map(|(id, e)| Some((id as u32, e.as_ref()?.spec())))
                .map(|(id, spec)| (id, Checked::new(spec).expect("a policy compiled before")))
                .collect();
            *matcher = TopicMatcher::build(live.iter().map(|(id, c)| (*id, c.policy.as_ref())));
        }
        drop(set);
        self.meter.subscriptions.forget(name);
        true
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.read().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().by_name.contains_key(name)
    }

    /// The subscription `name` as it is now.
    pub fn get(&self, name: &str) -> Option<SubscriptionSpec> {
        let set = self.read();
        let id = *set.by_name.get(name)?;
        set.entry(id).map(Entry::spec)
    }

    /// Their names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.read().by_name.keys().cloned().collect()
    }

    /// Every subscription as it is now, by name.
    pub fn all(&self) -> Vec<(String, SubscriptionSpec)> {
        let set = self.read();
        set.by_name
            .iter()
            .filter_map(|(name, &id)| Some((name.clone(), set.entry(id)?.spec())))
            .collect()
    }

    /// The set as it is now, for matching and fanning out one publish; hold it only
    /// while doing that.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, Set> {
        self.set
            .read()
            .expect("a subscription set's lock is never poisoned")
    }

    fn write(&self) -> RwLockWriteGuard<'_, Set> {
        self.set
            .write()
            .expect("a subscription set's lock is never poisoned")
    }
}

impl Set {
    /// Appends the ids of the subscriptions the message matches, in id order.
    ///
    /// `body` must have passed `serde_json`'s check of a `RawValue` (see
    /// [`TopicMatcher::matches`]).
    pub fn matches(
        &self,
        body: &[u8],
        attrs: &crate::model::attributes::Attributes,
        out: &mut Vec<u32>,
    ) {
        self.matcher.matches(body, attrs, out);
    }

    /// The subscription with id `id`.
    pub fn entry(&self, id: u32) -> Option<&Entry> {
        self.entries.get(id as usize)?.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FilterScope;
    use serde_json::json;

    fn spec(queue: &str, policy: Option<serde_json::Value>) -> SubscriptionSpec {
        SubscriptionSpec {
            filter_policy: policy,
            filter_policy_scope: FilterScope::MessageAttributes,
            ..SubscriptionSpec::to_queue(queue)
        }
    }

    fn matched(subs: &Subscriptions, event: &str) -> Vec<String> {
        let attrs =
            crate::model::attributes::from_api(Some(&json!({"event": event}))).expect("attrs");
        let set = subs.read();
        let mut ids = Vec::new();
        set.matches(b"{}", &attrs, &mut ids);
        let mut names: Vec<String> = ids
            .into_iter()
            .map(|id| set.entry(id).expect("live").name.clone())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn changes_apply_one_by_one_and_ids_are_reused() {
        let subs = Subscriptions::build(
            BTreeMap::from([
                ("all".into(), spec("q", None)),
                (
                    "placed".into(),
                    spec("q", Some(json!({"event": ["placed"]}))),
                ),
            ]),
            Arc::default(),
        )
        .unwrap();
        assert_eq!(matched(&subs, "placed"), ["all", "placed"]);
        assert_eq!(matched(&subs, "paid"), ["all"]);

        subs.put(
            "placed",
            Checked::new(spec("q", Some(json!({"event": ["paid"]})))).unwrap(),
        );
        assert_eq!(matched(&subs, "placed"), ["all"]);
        assert_eq!(matched(&subs, "paid"), ["all", "placed"]);

        assert!(subs.remove("all"));
        assert!(!subs.remove("all"));
        subs.put("late", Checked::new(spec("q", None)).unwrap());
        assert_eq!(matched(&subs, "paid"), ["late", "placed"]);
        assert_eq!(subs.names(), ["late", "placed"]);
        assert_eq!(subs.read().entries.len(), 2, "the removed id was reused");

        let policy = json!({"event": ["paid"], "total": [{"numeric": [">", 1.1e-300]}]});
        subs.put("n", Checked::new(spec("q", Some(policy.clone()))).unwrap());
        assert_eq!(subs.get("n").unwrap(), spec("q", Some(policy)), "as put");
    }

    #[test]
    fn a_bad_policy_is_refused_before_it_is_applied() {
        let e = Checked::new(spec("q", Some(json!({"price": [{"numeric": ["<", "x"]}]}))))
            .err()
            .expect("refused");
        assert!(e.contains("price"), "{e}");
    }

    #[test]
    fn many_removals_rebuild_the_matcher_without_changing_what_matches() {
        let subs = Subscriptions::build(BTreeMap::new(), Arc::default()).unwrap();
        for i in 0..9000 {
            let event = if i % 2 == 0 { "even" } else { "odd" };
            subs.put(
                &format!("s{i:04}"),
                Checked::new(spec("q", Some(json!({"event": [event]})))).unwrap(),
            );
        }
        for i in (0..9000).filter(|i| i % 3 != 0) {
            assert!(subs.remove(&format!("s{i:04}")));
        }
        let want: Vec<String> = (0..9000)
            .filter(|i| i % 3 == 0 && i % 2 == 0)
            .map(|i| format!("s{i:04}"))
            .collect();
        assert_eq!(matched(&subs, "even"), want);
        assert!(
            subs.read().matcher.removed() < 4096,
            "the matcher was built again once removals outnumbered the live subscriptions"
        );
    }
}

//! Filter policies as the router uses them: every subscription of a topic compiled into
//! one matcher, so matching cost grows with the message, not with the subscriptions, and a
//! subscription added or removed changes the matcher in place.

use crate::model::attributes::Attributes;
use switchyard_filter::{Matcher, MatcherBuilder, Policy, Scope};

/// Conjunctions removed and still taking space, past which the matcher is built again
/// whatever the number of live ones.
const REBUILD_AFTER: usize = 4096;

/// All subscriptions of one topic, compiled for matching, under the ids their caller gives
/// them.
pub struct TopicMatcher {
    /// The policies; none until the first one, since most topics have none and an empty
    /// matcher's tables cost a topic more than everything else it holds.
    matcher: Option<Box<Matcher>>,
    /// Subscriptions without a policy, sorted: they get every message.
    unfiltered: Vec<u32>,
}

impl TopicMatcher {
    /// Compiles every policy at once (`None`: a subscription without one), choosing how to
    /// index each with all of them in view.
    pub fn build<'a>(subs: impl Iterator<Item = (u32, Option<&'a (Policy, Scope)>)>) -> Self {
        let mut builder = MatcherBuilder::new();
        let mut policies = false;
        let mut unfiltered = Vec::new();
        for (id, policy) in subs {
            match policy {
                None => unfiltered.push(id),
                Some((p, scope)) => {
                    policies = true;
                    builder
                        .add(id, p, *scope)
                        .expect("a policy parsed for its scope compiles in it")
                }
            }
        }
        unfiltered.sort_unstable();
        Self {
            matcher: policies.then(|| Box::new(builder.build())),
            unfiltered,
        }
    }

    /// Adds the subscription `id` (`None`: without a policy), replacing what it was.
    pub fn insert(&mut self, id: u32, policy: Option<&(Policy, Scope)>) {
        self.remove(id);
        match policy {
            None => {
                let at = self.unfiltered.partition_point(|&u| u < id);
                self.unfiltered.insert(at, id);
            }
            Some((p, scope)) => self
                .matcher
                .get_or_insert_with(|| Box::new(MatcherBuilder::new().build()))
                .insert(id, p, *scope)
                .expect("a policy parsed for its scope compiles in it"),
        }
    }

    /// Removes the subscription `id`, if it is there.
    pub fn remove(&mut self, id: u32) {
        if let Ok(at) = self.unfiltered.binary_search(&id) {
            self.unfiltered.remove(at);
        }
        if let Some(m) = &mut self.matcher {
            m.remove(id);
        }
    }

    /// Whether removals have left more dead space than live policies: building the
    /// matcher again then costs less than the space and the stale index lengths it frees.
    pub fn needs_rebuild(&self) -> bool {
        self.matcher.as_ref().is_some_and(|m| {
            let removed = m.removed_conjunctions();
            removed > REBUILD_AFTER && removed > m.live_conjunctions()
        })
    }

    #[cfg(test)]
    pub fn removed(&self) -> usize {
        self.matcher
            .as_ref()
            .map_or(0, |m| m.removed_conjunctions())
    }

    /// Appends the ids of every subscription the message matches, in id order.
    ///
    /// `body` must have passed `serde_json`'s check of a `RawValue`, as every published
    /// message has (the API parses the request with `serde_json`, functions' publishes
    /// become `RawValue`s): the matcher then spares matched messages a second validation
    /// and still decides exactly as on unchecked text.
    pub fn matches(&self, body: &[u8], attrs: &Attributes, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.unfiltered);
        if let Some(m) = &self.matcher
            && m.policy_count() > 0
        {
            m.matches_valid_json(body, attrs, out);
            out.sort_unstable();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, FilterScope, SubscriptionSpec, parse_policy};
    use serde_json::json;

    fn sub(policy: Option<serde_json::Value>, scope: FilterScope) -> SubscriptionSpec {
        SubscriptionSpec {
            endpoint: Endpoint::Queue("q".into()),
            filter_policy: policy,
            filter_policy_scope: scope,
            raw_message_delivery: false,
            notification: Default::default(),
            dead_letter_queue: None,
            delivery_policy: None,
        }
    }

    #[test]
    fn one_matcher_serves_both_scopes_and_unfiltered_subscriptions() {
        let subs = [
            sub(None, FilterScope::MessageAttributes),
            sub(
                Some(json!({"event": ["order_placed"]})),
                FilterScope::MessageAttributes,
            ),
            sub(
                Some(json!({"total": [{"numeric": [">", 100]}]})),
                FilterScope::MessageBody,
            ),
        ];
        let checked: Vec<_> = subs
            .iter()
            .map(|s| {
                let p = s.filter_policy.as_ref()?;
                Some((
                    parse_policy(p, s.filter_policy_scope).unwrap(),
                    s.filter_policy_scope.into(),
                ))
            })
            .collect();
        let m = TopicMatcher::build(
            checked
                .iter()
                .enumerate()
                .map(|(id, p)| (id as u32, p.as_ref())),
        );
        let attrs =
            crate::model::attributes::from_api(Some(&json!({"event": "order_placed"}))).unwrap();
        let mut out = Vec::new();
        m.matches(br#"{"total": 150}"#, &attrs, &mut out);
        assert_eq!(out, [0, 1, 2]);
        out.clear();
        m.matches(br#"{"total": 50}"#, &Attributes::new(), &mut out);
        assert_eq!(out, [0]);
    }
}

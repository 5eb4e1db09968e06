//! Filter policies as the router uses them: one compiled matcher per topic.
//!
//! This build has no filter-policy engine yet, so a subscription that carries a policy is
//! refused (never silently delivered everything) and every subscription without one
//! matches every message.

use crate::attributes::Attributes;
use crate::model::SubscriptionSpec;

/// Checks a filter policy; the error names what is wrong.
pub fn parse_policy(_policy: &serde_json::Value) -> Result<(), String> {
    Err("filter policies are not supported by this build yet".into())
}

/// All subscriptions of one topic, compiled for matching.
pub struct TopicMatcher {
    subscriptions: u32,
}

impl TopicMatcher {
    pub fn build<'a>(subs: impl Iterator<Item = &'a SubscriptionSpec>) -> Result<Self, String> {
        let mut n = 0;
        for s in subs {
            if let Some(p) = &s.filter_policy {
                parse_policy(p)?;
            }
            n += 1;
        }
        Ok(Self { subscriptions: n })
    }

    /// Appends the ids (subscription order) of every subscription the message matches.
    pub fn matches(&self, _body: &[u8], _attrs: &Attributes, out: &mut Vec<u32>) {
        out.extend(0..self.subscriptions);
    }
}

//! Filter policies as the router uses them: every subscription of a topic compiled into
//! one matcher, so matching cost grows with the message, not with the subscriptions.

use crate::model::attributes::Attributes;
use crate::model::{SubscriptionSpec, parse_policy};
use switchyard_filter::{Matcher, MatcherBuilder};

/// All subscriptions of one topic, compiled for matching. Ids are positions in the
/// iteration order given to [`TopicMatcher::build`].
pub struct TopicMatcher {
    matcher: Matcher,
    /// Subscriptions without a policy: they get every message.
    unfiltered: Vec<u32>,
}

impl TopicMatcher {
    pub fn build<'a>(subs: impl Iterator<Item = &'a SubscriptionSpec>) -> Result<Self, String> {
        let mut builder = MatcherBuilder::new();
        let mut unfiltered = Vec::new();
        for (id, s) in subs.enumerate() {
            let id = id as u32;
            match &s.filter_policy {
                None => unfiltered.push(id),
                Some(p) => {
                    let policy = parse_policy(p, s.filter_policy_scope)?;
                    builder
                        .add(id, &policy, s.filter_policy_scope.into())
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(Self {
            matcher: builder.build(),
            unfiltered,
        })
    }

    /// Appends the ids of every subscription the message matches, in id order.
    ///
    /// `body` must have passed `serde_json`'s check of a `RawValue`, as every published
    /// message has (the API parses the request with `serde_json`, functions' publishes
    /// become `RawValue`s): the matcher then spares matched messages a second validation
    /// and still decides exactly as on unchecked text.
    pub fn matches(&self, body: &[u8], attrs: &Attributes, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.unfiltered);
        if self.matcher.policy_count() > 0 {
            self.matcher.matches_valid_json(body, attrs, out);
            out.sort_unstable();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Endpoint;
    use crate::model::FilterScope;
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
        let m = TopicMatcher::build(subs.iter()).unwrap();
        let attrs =
            crate::model::attributes::from_api(Some(&json!({"event": "order_placed"}))).unwrap();
        let mut out = Vec::new();
        m.matches(br#"{"total": 150}"#, &attrs, &mut out);
        assert_eq!(out, [0, 1, 2]);
        out.clear();
        m.matches(br#"{"total": 50}"#, &Attributes::new(), &mut out);
        assert_eq!(out, [0]);
    }

    #[test]
    fn invalid_policy_names_the_key() {
        let e = parse_policy(
            &json!({"price": [{"numeric": ["<", "x"]}]}),
            FilterScope::MessageBody,
        )
        .unwrap_err();
        assert!(e.contains("price"), "{e}");
    }
}

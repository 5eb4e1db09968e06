//! Fuzz target: arbitrary bytes as a filter policy (parsing must never panic); when the policy
//! is valid, arbitrary bytes as a message body, matched by the compiled matcher (indexed and
//! direct) and by the reference evaluator, which must agree; the router's entry point for
//! bodies already checked as JSON must agree too on every body serde_json accepts. The body doubles as API-form
//! attributes when it parses as such, to exercise attribute scope.
//!
//! Input layout: `policy \0 body`. Run: `cargo +nightly fuzz run policy` from the repo top.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;
use switchyard_filter::{reference, Attributes, MatcherBuilder, Policy, Scope};

/// Whether the JSON has an object with a repeated key. `serde_json::Value` keeps only the
/// last of repeated keys while the streaming matcher sees every occurrence, so such bodies
/// are outside what the reference can judge.
fn has_duplicate_keys(body: &[u8]) -> bool {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = ();
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON")
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> { Ok(()) }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> { Ok(()) }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> { Ok(()) }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> { Ok(()) }
        fn visit_str<E>(self, _: &str) -> Result<(), E> { Ok(()) }
        fn visit_unit<E>(self) -> Result<(), E> { Ok(()) }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
            while s.next_element_seed(Seed)?.is_some() {}
            Ok(())
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            let mut seen = HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                if !seen.insert(k) {
                    return Err(de::Error::custom("duplicate key"));
                }
                m.next_value_seed(Seed)?;
            }
            Ok(())
        }
    }
    struct Seed;
    impl<'de> de::DeserializeSeed<'de> for Seed {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(V)
        }
    }
    let mut d = serde_json::Deserializer::from_slice(body);
    de::DeserializeSeed::deserialize(Seed, &mut d).is_err() && serde_json::from_slice::<serde_json::Value>(body).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let (policy, body) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let Ok(text) = std::str::from_utf8(policy) else { return };
    let Ok(p) = Policy::parse_str(text) else { return };
    if has_duplicate_keys(body) {
        return;
    }
    let attrs = serde_json::from_slice(body)
        .ok()
        .and_then(|v| Attributes::from_api_json(&v).ok())
        .unwrap_or_default();
    for scope in [Scope::MessageBody, Scope::MessageAttributes] {
        if p.check_scope(scope).is_err() {
            continue;
        }
        let want = reference::matches(&p, scope, body, &attrs);
        for indexed in [true, false] {
            let mut b = MatcherBuilder::new();
            b.add(9, &p, scope).unwrap();
            let m = if indexed { b.build() } else { b.build_unindexed() };
            let mut out = Vec::new();
            m.matches(body, &attrs, &mut out);
            assert_eq!(!out.is_empty(), want, "scope {scope} indexed {indexed}");
            // The router's entry point, on what it gets: bodies serde_json took as a
            // RawValue. Elsewhere it must only terminate without panicking.
            let mut trusted = Vec::new();
            m.matches_valid_json(body, &attrs, &mut trusted);
            if serde_json::from_slice::<&serde_json::value::RawValue>(body).is_ok() {
                assert_eq!(trusted, out, "matches_valid_json, scope {scope} indexed {indexed}");
            }
        }
    }
});

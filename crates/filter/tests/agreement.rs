//! Property test: the compiled matcher agrees with the reference evaluator (the executable
//! spec) on random policies and random messages, many policies compiled at once, both scopes,
//! `$or`, nested bodies, arrays, and numbers written in different notations; and a
//! matcher changed policy by policy agrees with it as a matcher built at once does.

use proptest::prelude::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use switchyard_filter::{Attributes, MatchScratch, MatcherBuilder, Policy, Scope, reference};

const KEYS: &[&str] = &["a", "b", "c", "a.b"];
const STRS: &[&str] = &[
    "x",
    "y",
    "xy",
    "Xy",
    "yx",
    "",
    "10.0.0.7",
    "2001:db8::1",
    "ab*c",
    "É",
];
/// Numbers as message text: several notations of the same values, and near misses.
const NUM_TEXTS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "301.5",
    "3.015e2",
    "3015E-1",
    "100.1234567",
    "100.123456789",
    "100.1234561",
    "1e9",
    "-1000000000",
    "7",
    "7.0000004",
    "1e300",
];
const NUMS: &[f64] = &[0.0, 1.0, -1.0, 301.5, 100.123456789, 1e9, -1e9, 7.0];

fn string_rule() -> impl Strategy<Value = Value> {
    let s = || prop::sample::select(STRS);
    prop_oneof![
        s().prop_map(|s| json!(s)),
        s().prop_map(|s| json!({"prefix": s})),
        s().prop_map(|s| json!({"suffix": s})),
        s().prop_map(|s| json!({"equals-ignore-case": s})),
        prop::sample::select(&["*", "x*", "*y", "x*y", "*y*", "a\\*c", "1*.*7"][..])
            .prop_map(|w| json!({"wildcard": w})),
        prop::sample::select(&["10.0.0.0/24", "10.0.0.0/8", "2001:db8::/32", "0.0.0.0/0"][..])
            .prop_map(|c| json!({"cidr": c})),
    ]
}

fn rule() -> impl Strategy<Value = Value> {
    let n = || prop::sample::select(NUMS);
    prop_oneof![
        3 => string_rule(),
        2 => n().prop_map(|x| json!(x)),
        1 => any::<bool>().prop_map(|b| json!(b)),
        1 => Just(Value::Null),
        2 => (prop::sample::select(&["=", "<", "<=", ">", ">="][..]), n()).prop_map(|(op, x)| json!({"numeric": [op, x]})),
        1 => (n(), n()).prop_filter("bottom below top", |(a, b)| a < b).prop_map(|(a, b)| json!({"numeric": [">=", a, "<", b]})),
        2 => any::<bool>().prop_map(|b| json!({"exists": b})),
        1 => prop::sample::select(STRS).prop_map(|s| json!({"anything-but": s})),
        1 => prop::collection::vec(prop_oneof![prop::sample::select(STRS).prop_map(|s| json!(s)), n().prop_map(|x| json!(x))], 1..3)
            .prop_map(|v| json!({"anything-but": v})),
        1 => (prop::sample::select(&["prefix", "suffix", "equals-ignore-case", "wildcard"][..]), prop::sample::select(&["x", "y", "X"][..]))
            .prop_map(|(op, s)| json!({"anything-but": {op: s}})),
    ]
}

/// A policy object; `nest` allows nested keys (body scope).
fn policy(nest: bool) -> impl Strategy<Value = Value> {
    let leaf = prop::collection::vec(rule(), 1..4)
        .prop_map(Value::Array)
        .boxed();
    let level = move |inner: BoxedStrategy<Value>| {
        prop::collection::btree_map(prop::sample::select(KEYS), inner, 1..3usize)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
    };
    let flat = level(leaf.clone()).boxed();
    let value = if nest {
        prop_oneof![3 => leaf, 1 => flat.clone()].boxed()
    } else {
        leaf.boxed()
    };
    let base = level(value);
    (
        base,
        prop::option::weighted(0.3, prop::collection::vec(flat, 2..3)),
    )
        .prop_map(|(mut p, or)| {
            if let Some(branches) = or {
                p["$or"] = Value::Array(branches);
            }
            p
        })
}

/// Message body text: an object of scalars, arrays and nested objects; numbers in varied
/// notation; sometimes not an object or not JSON.
fn body() -> impl Strategy<Value = String> {
    let scalar = prop_oneof![
        prop::sample::select(STRS).prop_map(|s| serde_json::to_string(s).unwrap()),
        prop::sample::select(NUM_TEXTS).prop_map(str::to_owned),
        prop::sample::select(&["true", "false", "null"][..]).prop_map(str::to_owned),
    ];
    let tree = scalar.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::btree_map(prop::sample::select(KEYS), inner, 0..3).prop_map(|m| {
                format!(
                    "{{{}}}",
                    m.iter()
                        .map(|(k, v)| format!("{k:?}: {v}"))
                        .collect::<Vec<_>>()
                        .join(",")
                )
            }),
        ]
    });
    let object =
        prop::collection::btree_map(prop::sample::select(KEYS), tree, 1..5).prop_map(|m| {
            format!(
                "{{{}}}",
                m.iter()
                    .map(|(k, v)| format!("{k:?}:{v}"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        });
    prop_oneof![
        8 => object.clone(),
        1 => object.prop_map(|s| s[..s.len() - 1].to_owned()),
        1 => Just("[1, 2]".to_owned()),
        1 => Just("not json".to_owned()),
    ]
}

/// Text `serde_json` lets through as a `RawValue` but refuses as a `Value`, and text it
/// takes either way but that only the exact validator can vouch for.
const RAW_PIECES: &[&str] = &[
    "\"\\ud800\"",
    "\"x\\udc00\"",
    "\"\\ud83d\\ude00\"",
    "1e400",
    "-1E+309",
    "1e-400",
    "2.5e3",
    "[true, false, null, \"e\"]",
];

/// `body()`, sometimes with one of `RAW_PIECES`, a long number or deep nesting under a key
/// no policy uses (`z`, skipped) or one that policies use.
fn raw_body() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        4 => prop::sample::select(RAW_PIECES).prop_map(str::to_owned),
        1 => (60usize..400).prop_map(|n| "9".repeat(n)),
        1 => (100usize..140).prop_map(|n| format!("{}1{}", "[".repeat(n), "]".repeat(n))),
    ];
    prop_oneof![
        2 => body(),
        3 => (body(), piece, prop::sample::select(&["z", "a", "b"][..])).prop_map(|(b, p, k)| {
            match b.strip_prefix('{') {
                Some(rest) if rest.trim_start().starts_with('"') => format!("{{\"{k}\": [[{p}]], {rest}"),
                _ => b,
            }
        }),
    ]
}

fn attributes() -> impl Strategy<Value = Attributes> {
    let value = prop_oneof![
        prop::sample::select(STRS).prop_map(|s| ("String", s.to_owned())),
        prop::sample::select(NUM_TEXTS).prop_map(|n| ("Number", n.to_owned())),
        prop::collection::vec(
            prop_oneof![
                prop::sample::select(STRS).prop_map(|s| serde_json::to_string(s).unwrap()),
                prop::sample::select(NUM_TEXTS).prop_map(str::to_owned),
                Just("true".to_owned()),
                Just("null".to_owned()),
            ],
            0..3
        )
        .prop_map(|v| ("String.Array", format!("[{}]", v.join(",")))),
        Just(("Binary", "AAE=".to_owned())),
    ];
    prop::collection::btree_map(prop::sample::select(KEYS), value, 0..5).prop_map(|m| {
        let mut a = Attributes::new();
        for (k, (t, v)) in m {
            a.insert(k, t, v).unwrap();
        }
        a
    })
}

fn scoped_policy() -> impl Strategy<Value = (Scope, Value)> {
    prop_oneof![
        policy(false).prop_map(|p| (Scope::MessageAttributes, p)),
        policy(true).prop_map(|p| (Scope::MessageBody, p)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2500, ..ProptestConfig::default() })]

    #[test]
    fn matcher_agrees_with_reference(
        policies in prop::collection::vec(scoped_policy(), 1..10),
        messages in prop::collection::vec((body(), attributes()), 1..6),
    ) {
        let parsed: Vec<(Scope, Policy)> = policies
            .iter()
            .filter_map(|(s, v)| Policy::parse_scoped(v, *s).ok().map(|p| (*s, p)))
            .collect();
        let builder = || {
            let mut b = MatcherBuilder::new();
            for (i, (s, p)) in parsed.iter().enumerate() {
                b.add(i as u32, p, *s).unwrap();
            }
            b
        };
        let indexed = builder().build();
        let direct = builder().build_unindexed();
        let mut out = Vec::new();
        for ((body, attrs), m) in messages.iter().flat_map(|msg| [(msg, &indexed), (msg, &direct)]) {
            out.clear();
            m.matches(body.as_bytes(), attrs, &mut out);
            let got: Vec<u32> = out.clone();
            let got_set: BTreeSet<u32> = got.iter().copied().collect();
            prop_assert_eq!(got.len(), got_set.len(), "an id was reported twice");
            let want: BTreeSet<u32> = parsed
                .iter()
                .enumerate()
                .filter(|(_, (s, p))| reference::matches(p, *s, body.as_bytes(), attrs))
                .map(|(i, _)| i as u32)
                .collect();
            prop_assert_eq!(&got_set, &want, "body {} attrs {:?} policies {:?}", body, attrs.to_sns_json(), policies);
        }
    }

    /// The entry point for bodies `serde_json` has checked decides as `matches` on every
    /// such body (and on any other text just terminates).
    #[test]
    fn matches_valid_json_agrees_with_matches(
        policies in prop::collection::vec(scoped_policy(), 1..10),
        messages in prop::collection::vec((raw_body(), attributes()), 1..6),
    ) {
        let mut b = MatcherBuilder::new();
        for (i, (s, v)) in policies.iter().enumerate() {
            if let Ok(p) = Policy::parse_scoped(v, *s) {
                b.add(i as u32, &p, *s).unwrap();
            }
        }
        let m = b.build();
        // Scratch space that has seen no match checks skipped blocks only after one; after
        // a run of matches it checks them while skipping. Both ways must agree.
        let mut primer = MatcherBuilder::new();
        primer.add(0, &Policy::parse_str(r#"{"p": [{"exists": true}]}"#).unwrap(), Scope::MessageBody).unwrap();
        let primer = primer.build();
        let (mut want, mut got) = (Vec::new(), Vec::new());
        for (body, attrs) in &messages {
            want.clear();
            m.matches(body.as_bytes(), attrs, &mut want);
            let raw_ok = serde_json::from_str::<&serde_json::value::RawValue>(body).is_ok();
            for primed in [false, true] {
                let mut sc = MatchScratch::new();
                for _ in 0..if primed { 32 } else { 0 } {
                    primer.matches_valid_json_with(&mut sc, br#"{"p": 1}"#, &Attributes::new(), &mut got);
                }
                got.clear();
                m.matches_valid_json_with(&mut sc, body.as_bytes(), attrs, &mut got);
                if raw_ok {
                    prop_assert_eq!(&got, &want, "body {} primed {} policies {:?}", body, primed, policies);
                }
            }
        }
    }

    #[test]
    fn same_id_twice_is_an_or(a in policy(true), b in policy(true), body in body()) {
        let (Ok(pa), Ok(pb)) = (Policy::parse(&a), Policy::parse(&b)) else { return Ok(()) };
        let mut mb = MatcherBuilder::new();
        mb.add(5, &pa, Scope::MessageBody).unwrap();
        mb.add(5, &pb, Scope::MessageBody).unwrap();
        let mut out = Vec::new();
        mb.build().matches(body.as_bytes(), &Attributes::new(), &mut out);
        let want = reference::matches(&pa, Scope::MessageBody, body.as_bytes(), &Attributes::new())
            || reference::matches(&pb, Scope::MessageBody, body.as_bytes(), &Attributes::new());
        prop_assert_eq!(out, if want { vec![5] } else { vec![] });
    }

    /// A matcher built from some policies, then changed one policy at a time (inserted,
    /// replaced under the same id, removed), decides every message as the reference does
    /// on the policies live at that point.
    #[test]
    fn inserts_and_removals_agree_with_reference(
        initial in prop::collection::vec(scoped_policy(), 0..6),
        changes in prop::collection::vec((0u32..8, prop::option::of(scoped_policy())), 1..16),
        messages in prop::collection::vec((body(), attributes()), 1..4),
    ) {
        let parse = |(s, v): &(Scope, Value)| Policy::parse_scoped(v, *s).ok().map(|p| (*s, p));
        let mut live: std::collections::BTreeMap<u32, (Scope, Policy)> = Default::default();
        let mut b = MatcherBuilder::new();
        for (i, sp) in initial.iter().enumerate() {
            if let Some((s, p)) = parse(sp) {
                b.add(i as u32, &p, s).unwrap();
                live.insert(i as u32, (s, p));
            }
        }
        let mut m = b.build();
        let mut out = Vec::new();
        for (step, (id, change)) in changes.iter().enumerate() {
            match change.as_ref().and_then(parse) {
                Some((s, p)) => {
                    m.insert(*id, &p, s).unwrap();
                    live.insert(*id, (s, p));
                }
                None => {
                    prop_assert_eq!(m.remove(*id), live.remove(id).is_some());
                }
            }
            prop_assert_eq!(m.policy_count(), live.len());
            for (body, attrs) in &messages {
                out.clear();
                m.matches(body.as_bytes(), attrs, &mut out);
                let got: BTreeSet<u32> = out.iter().copied().collect();
                prop_assert_eq!(got.len(), out.len(), "an id was reported twice");
                let want: BTreeSet<u32> = live
                    .iter()
                    .filter(|(_, (s, p))| reference::matches(p, *s, body.as_bytes(), attrs))
                    .map(|(id, _)| *id)
                    .collect();
                prop_assert_eq!(&got, &want, "after change {} body {} attrs {:?}", step, body, attrs.to_sns_json());
            }
        }
    }
}

//! Bodies that are almost JSON: the matcher scans only what policies look at and checks the
//! rest only when something matched, so every kind of damage, in read and in skipped parts,
//! must still leave it agreeing with the reference (which parses the whole body first).

use std::collections::HashSet;
use switchyard_filter::{Attributes, MatcherBuilder, Policy, Scope, reference};

/// Whether the body is JSON with a repeated key in some object (keys compared as
/// `serde_json` reads them, escapes resolved): there the reference keeps the last value and
/// the matcher every one.
fn has_repeated_key(body: &[u8]) -> bool {
    if serde_json::from_slice::<serde_json::Value>(body).is_err() {
        return false;
    }
    // The body is valid JSON: a small walk suffices. One set of keys per open container
    // (`None` for arrays); a string is a key when a `:` follows it.
    let mut open: Vec<Option<HashSet<String>>> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        match body[i] {
            b'{' => open.push(Some(HashSet::new())),
            b'[' => open.push(None),
            b'}' | b']' => {
                open.pop();
            }
            b'"' => {
                let start = i;
                i += 1;
                while body[i] != b'"' {
                    i += if body[i] == b'\\' { 2 } else { 1 };
                }
                let mut j = i + 1;
                while j < body.len() && body[j].is_ascii_whitespace() {
                    j += 1;
                }
                if body.get(j) == Some(&b':') {
                    let key: String = serde_json::from_slice(&body[start..=i]).unwrap();
                    if let Some(Some(keys)) = open.last_mut()
                        && !keys.insert(key)
                    {
                        return true;
                    }
                }
            }
            _ => {}
        }
        i += 1;
    }
    false
}

/// xorshift64*: deterministic shapes and mutations.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// Distinct keys (repeated keys are a separate question, see `has_repeated_key`).
const KEYS: &[&str] = &["\"a\"", "\"b\"", "\"c\"", "\"a.b\"", "\"\\u0078\""];
const SCALARS: &[&str] = &[
    "1",
    "-0.5",
    "12e3",
    "1E400",
    "0",
    "true",
    "false",
    "null",
    "\"v\"",
    "\"V\"",
    "\"\\n\"",
    "\"\u{e9}\"",
    "\"\\ud83d\\ude00\"",
    "\"\\udc00\"",
    "\"10.0.0.1\"",
    "-122.377456057825626",
];

fn value(r: &mut Rng, depth: usize, out: &mut String) {
    match if depth > 4 { 0 } else { r.below(4) } {
        0 | 1 => out.push_str(r.pick(SCALARS)),
        2 => {
            out.push('[');
            for i in 0..r.below(4) {
                if i > 0 {
                    out.push_str(", ");
                }
                value(r, depth + 1, out);
            }
            out.push(']');
        }
        _ => object(r, depth + 1, out),
    }
}

fn object(r: &mut Rng, depth: usize, out: &mut String) {
    out.push('{');
    let first = r.below(KEYS.len());
    for i in 0..(r.below(4) + usize::from(depth == 0)).min(KEYS.len()) {
        if i > 0 {
            out.push(',');
        }
        out.push_str(KEYS[(first + i) % KEYS.len()]);
        out.push_str(": ");
        value(r, depth, out);
    }
    out.push('}');
}

const NOISE: &[u8] = b"{}[],:\"\\ 0-+.eE1tnf\t\n\x01\xc3\xa9\xff/u";

fn mutate(r: &mut Rng, d: &mut Vec<u8>) {
    if d.is_empty() {
        return;
    }
    let at = r.below(d.len());
    match r.below(4) {
        0 => {
            d.remove(at);
        }
        1 => d.insert(at, NOISE[r.below(NOISE.len())]),
        2 => d[at] = NOISE[r.below(NOISE.len())],
        _ => d.truncate(at),
    }
}

#[test]
fn damaged_bodies_match_as_the_reference_says() {
    let policies: Vec<Policy> = [
        r#"{"a": [{"exists": true}]}"#,
        r#"{"b": [{"anything-but": ["v"]}]}"#,
        r#"{"a": {"b": [{"exists": true}]}}"#,
        r#"{"c": [{"numeric": [">", 0]}], "x": [{"exists": false}]}"#,
        r#"{"x": [{"exists": false}]}"#,
        r#"{"b": ["v", 1, true, null]}"#,
    ]
    .iter()
    .map(|p| Policy::parse_str(p).unwrap())
    .collect();
    let matchers: Vec<_> = policies
        .iter()
        .map(|p| {
            let mut b = MatcherBuilder::new();
            b.add(1, p, Scope::MessageBody).unwrap();
            b.build()
        })
        .collect();
    let attrs = Attributes::new();
    let mut r = Rng(0x5EED);
    let mut out = Vec::new();
    let mut matched_valid = 0;
    for _ in 0..40_000 {
        let mut s = String::new();
        object(&mut r, 0, &mut s);
        let mut d = s.into_bytes();
        for round in 0..3 {
            if round > 0 {
                mutate(&mut r, &mut d);
            }
            if has_repeated_key(&d) {
                continue;
            }
            for (p, m) in policies.iter().zip(&matchers) {
                out.clear();
                m.matches(&d, &attrs, &mut out);
                let want = reference::matches(p, Scope::MessageBody, &d, &attrs);
                assert_eq!(
                    !out.is_empty(),
                    want,
                    "policy {p:?} body {:?}",
                    String::from_utf8_lossy(&d)
                );
                matched_valid += usize::from(want && round > 0);
                // Where `serde_json` would have let the text through as a `RawValue`, the
                // entry point that trusts that check decides the same; elsewhere it must
                // merely not panic.
                let mut trusted = Vec::new();
                m.matches_valid_json(&d, &attrs, &mut trusted);
                if serde_json::from_slice::<&serde_json::value::RawValue>(&d).is_ok() {
                    assert_eq!(
                        trusted,
                        out,
                        "policy {p:?} body {:?}",
                        String::from_utf8_lossy(&d)
                    );
                }
            }
        }
    }
    // Damaged bodies that are still JSON and match: the test must reach them too.
    assert!(matched_valid > 1000, "{matched_valid}");
}

//! The executable specification: a naive evaluator of one policy against one message,
//! written for obviousness, not speed. It flattens the whole message into `(path, value)`
//! pairs and walks the policy tree (`$or` included) directly. The compiled
//! [`Matcher`](crate::Matcher) must agree with it on every input; the property tests and the
//! fuzz target check exactly that.
//!
//! The rules it encodes:
//! - A message is a set of `(path, value)` pairs. Body paths join keys with `.` (so a key
//!   `"a.b"` and nesting `a` → `b` are the same path); array elements sit at their array's
//!   path (arrays anywhere, also nested arrays); empty arrays and objects contribute nothing.
//!   Attributes: a `String` is one string, a `Number` one number, a `String.Array` one value
//!   per element, a `Binary` a value that only `exists` sees.
//! - A policy is an AND over its keys and `$or` nodes; a key holds when at least one of its
//!   rules holds; a rule (other than `exists`) holds when some value at the key's path
//!   satisfies it. Strings, numbers, booleans and null never match each other.
//! - Numbers compare as numbers rounded to millionths (`number::key`).
//! - `exists: true` needs a value other than null at the path; `exists: false` needs none,
//!   and in attribute scope also needs the message to have at least one attribute.
//! - `anything-but` with values holds for a string, number or boolean not listed;
//!   `anything-but` with `prefix`/`suffix`/`wildcard`/`equals-ignore-case` holds for a string
//!   that does not match. Null never satisfies `anything-but`.
//! - A policy without conditions (`{}`) accepts every message. Otherwise, in body scope, a
//!   body that is not a JSON object (or not JSON) matches nothing.

use crate::Scope;
use crate::attributes::{Attributes, Element, Parsed};
use crate::number;
use crate::policy::{AnythingBut, Cond, KeyCond, Literal, Policy, Rule, fold_case};
use serde_json::Value;

/// One flattened value of a message.
#[derive(Debug, Clone, PartialEq)]
enum Leaf<'a> {
    Str(&'a str),
    /// Comparison key.
    Num(f64),
    Bool(bool),
    Null,
    Binary,
}

/// Does `policy` accept this message in `scope`? `body` is the raw payload as published.
pub fn matches(policy: &Policy, scope: Scope, body: &[u8], attrs: &Attributes) -> bool {
    match scope {
        Scope::MessageAttributes => matches_attributes(policy, attrs),
        Scope::MessageBody => match serde_json::from_slice::<Value>(body) {
            Ok(v) => matches_body(policy, &v),
            Err(_) => policy.is_empty(),
        },
    }
}

/// Does `policy` accept this (parsed) message body?
pub fn matches_body(policy: &Policy, body: &Value) -> bool {
    if policy.is_empty() {
        return true;
    }
    if !body.is_object() {
        return false;
    }
    let mut leaves = Vec::new();
    flatten(body, None, &mut leaves);
    eval_all(&policy.conds, &leaves, true)
}

/// Does `policy` accept a message with these attributes?
pub fn matches_attributes(policy: &Policy, attrs: &Attributes) -> bool {
    let mut leaves = Vec::new();
    for (name, v) in attrs.iter() {
        match &v.parsed {
            Parsed::Str => leaves.push((name.to_owned(), Leaf::Str(v.value()))),
            Parsed::Num(k) => leaves.push((name.to_owned(), Leaf::Num(*k))),
            Parsed::Binary => leaves.push((name.to_owned(), Leaf::Binary)),
            Parsed::Array(items) => {
                for e in items {
                    let leaf = match e {
                        Element::Str(s) => Leaf::Str(s),
                        Element::Num(k) => Leaf::Num(*k),
                        Element::Bool(b) => Leaf::Bool(*b),
                        Element::Null => Leaf::Null,
                    };
                    leaves.push((name.to_owned(), leaf));
                }
            }
        }
    }
    eval_all(&policy.conds, &leaves, !attrs.is_empty())
}

/// `path` is `None` at the top of the body (so an empty top-level key stays distinct).
fn flatten<'a>(v: &'a Value, path: Option<String>, out: &mut Vec<(String, Leaf<'a>)>) {
    let Some(here) = path else {
        if let Value::Object(m) = v {
            for (k, child) in m {
                flatten(child, Some(k.clone()), out);
            }
        }
        return;
    };
    let path = here;
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                flatten(child, Some(format!("{path}.{k}")), out);
            }
        }
        Value::Array(items) => {
            for child in items {
                flatten(child, Some(path.clone()), out);
            }
        }
        Value::String(s) => out.push((path, Leaf::Str(s))),
        Value::Number(n) => out.push((
            path,
            Leaf::Num(number::key(
                n.as_f64().expect("serde_json numbers are finite"),
            )),
        )),
        Value::Bool(b) => out.push((path, Leaf::Bool(*b))),
        Value::Null => out.push((path, Leaf::Null)),
    }
}

/// `absence_counts`: whether `exists: false` may hold at all (false for a message without
/// attributes in attribute scope).
fn eval_all(conds: &[Cond], leaves: &[(String, Leaf<'_>)], absence_counts: bool) -> bool {
    conds.iter().all(|c| match c {
        Cond::Key(k) => eval_key(k, leaves, absence_counts),
        Cond::Or(branches) => branches.iter().any(|b| eval_all(b, leaves, absence_counts)),
    })
}

fn eval_key(k: &KeyCond, leaves: &[(String, Leaf<'_>)], absence_counts: bool) -> bool {
    let values: Vec<&Leaf<'_>> = leaves
        .iter()
        .filter(|(p, _)| *p == k.path)
        .map(|(_, l)| l)
        .collect();
    let present = values.iter().any(|l| **l != Leaf::Null);
    k.rules.iter().any(|r| match r {
        Rule::Exists(true) => present,
        Rule::Exists(false) => !present && absence_counts,
        _ => values.iter().any(|l| satisfies(r, l)),
    })
}

fn satisfies(rule: &Rule, leaf: &Leaf<'_>) -> bool {
    match (rule, leaf) {
        (Rule::Exact(lit), _) => literal_eq(lit, leaf),
        (Rule::Prefix(p), Leaf::Str(s)) => s.starts_with(p.as_str()),
        (Rule::Suffix(p), Leaf::Str(s)) => s.ends_with(p.as_str()),
        (Rule::EqualsIgnoreCase(p), Leaf::Str(s)) => fold_case(s) == *p,
        (Rule::Wildcard(w), Leaf::Str(s)) => w.is_match(s.as_bytes()),
        (Rule::Cidr(c), Leaf::Str(s)) => c.contains(s.as_bytes()),
        (Rule::Numeric(r), Leaf::Num(k)) => r.contains(*k),
        (Rule::AnythingBut(ab), _) => match (ab, leaf) {
            (AnythingBut::Values(vs), Leaf::Str(_) | Leaf::Num(_) | Leaf::Bool(_)) => {
                !vs.iter().any(|v| literal_eq(v, leaf))
            }
            (AnythingBut::Prefix(p), Leaf::Str(s)) => !s.starts_with(p.as_str()),
            (AnythingBut::Suffix(p), Leaf::Str(s)) => !s.ends_with(p.as_str()),
            (AnythingBut::Wildcard(w), Leaf::Str(s)) => !w.is_match(s.as_bytes()),
            (AnythingBut::EqualsIgnoreCase(p), Leaf::Str(s)) => fold_case(s) != *p,
            _ => false,
        },
        _ => false,
    }
}

fn literal_eq(lit: &Literal, leaf: &Leaf<'_>) -> bool {
    match (lit, leaf) {
        (Literal::Str(a), Leaf::Str(b)) => a == b,
        (Literal::Num(a), Leaf::Num(b)) => a == b,
        (Literal::Bool(a), Leaf::Bool(b)) => a == b,
        (Literal::Null, Leaf::Null) => true,
        _ => false,
    }
}

//! Filter policies as data: parse the JSON form, enforce AWS's limits, and hand the matcher
//! a checked syntax tree. Nothing here matches messages; see `matcher` (fast, compiled) and
//! `reference` (slow, obviously correct).

use crate::Scope;
use crate::cidr::Cidr;
use crate::error::{PolicyError, PolicyErrorKind as K};
use crate::number;
use crate::wildcard::Wildcard;
use serde_json::{Map, Value};

/// AWS: "The maximum size of a filter policy is 256 KB."
pub const MAX_POLICY_BYTES: usize = 256 * 1024;
/// AWS: "A filter policy can have a maximum of five keys" (top-level keys; each `$or`
/// alternative is counted on its own).
pub const MAX_KEYS: usize = 5;
/// AWS: "The total combination of values must not exceed 150" (nested keys multiply by their
/// depth, `$or` branches are summed).
pub const MAX_COMBINATIONS: u64 = 150;

/// A checked SNS subscription filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Conditions, all of which must hold (AND); `$or` nodes hold alternatives.
    pub(crate) conds: Vec<Cond>,
    /// Whether any key is nested (only allowed in `MessageBody` scope).
    pub(crate) nested: bool,
}

/// One condition of a policy.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Cond {
    /// A key with its list of rules (OR).
    Key(KeyCond),
    /// `$or`: at least one branch (itself an AND of conditions) must hold.
    Or(Vec<Vec<Cond>>),
}

/// A key of the policy and the rules its values are tested with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct KeyCond {
    /// The full path, segments joined by `.` (a body key `"a.b"` and nesting `a` → `b` are
    /// the same path, as in SNS). In attribute scope this is the attribute name.
    pub path: String,
    /// The top-level key this condition sits under (for the key limit).
    pub top: String,
    /// Nesting level of the key (1 at the top), for the combination limit.
    pub depth: u32,
    /// At least one rule must hold for some value at `path`.
    pub rules: Vec<Rule>,
}

/// One entry of a key's rule list.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    /// An exact string, number, boolean or null.
    Exact(Literal),
    /// `{"prefix": …}` on strings.
    Prefix(String),
    /// `{"suffix": …}` on strings.
    Suffix(String),
    /// `{"equals-ignore-case": …}`; holds the value lower-cased.
    EqualsIgnoreCase(String),
    /// `{"wildcard": …}` on strings.
    Wildcard(Wildcard),
    /// `{"numeric": […]}` on numbers.
    Numeric(NumRange),
    /// `{"exists": true|false}`.
    Exists(bool),
    /// `{"cidr": …}` on strings holding IP addresses.
    Cidr(Cidr),
    /// `{"anything-but": …}`.
    AnythingBut(AnythingBut),
}

/// A literal value of a policy. Numbers hold their comparison key (see `number::key`).
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
}

/// The forms of `anything-but`.
#[derive(Debug, Clone, PartialEq)]
pub enum AnythingBut {
    /// Any value except these strings and numbers (a value of another type matches).
    Values(Vec<Literal>),
    /// Any string not starting with this.
    Prefix(String),
    /// Any string not ending with this.
    Suffix(String),
    /// Any string not matching this wildcard.
    Wildcard(Wildcard),
    /// Any string not equal to this ignoring case (held lower-cased).
    EqualsIgnoreCase(String),
}

/// A numeric interval over comparison keys; open ends are infinite.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NumRange {
    pub lo: f64,
    pub lo_inclusive: bool,
    pub hi: f64,
    pub hi_inclusive: bool,
}

impl NumRange {
    /// Whether the key `k` lies in the interval.
    #[inline]
    pub fn contains(&self, k: f64) -> bool {
        (if self.lo_inclusive {
            k >= self.lo
        } else {
            k > self.lo
        }) && (if self.hi_inclusive {
            k <= self.hi
        } else {
            k < self.hi
        })
    }
}

/// Lower-casing used by `equals-ignore-case`, on both policy and message side.
pub fn fold_case(s: &str) -> String {
    s.to_lowercase()
}

impl Policy {
    /// Parse and check a filter policy given as JSON text.
    pub fn parse_str(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::new(
                None,
                K::TooLarge {
                    size: text.len(),
                    max: MAX_POLICY_BYTES,
                },
            ));
        }
        let v: Value = serde_json::from_str(text)
            .map_err(|e| PolicyError::new(None, K::NotJson(e.to_string())))?;
        Self::parse_checked_size(&v)
    }

    /// Parse and check a filter policy given as a JSON value.
    pub fn parse(v: &Value) -> Result<Policy, PolicyError> {
        let size = serde_json::to_string(v)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if size > MAX_POLICY_BYTES {
            return Err(PolicyError::new(
                None,
                K::TooLarge {
                    size,
                    max: MAX_POLICY_BYTES,
                },
            ));
        }
        Self::parse_checked_size(v)
    }

    /// Parse and check a policy for use in `scope` (attribute scope refuses nested keys).
    pub fn parse_scoped(v: &Value, scope: Scope) -> Result<Policy, PolicyError> {
        let p = Self::parse(v)?;
        p.check_scope(scope)?;
        Ok(p)
    }

    /// Refuse this policy for `scope` if it cannot be used there.
    pub fn check_scope(&self, scope: Scope) -> Result<(), PolicyError> {
        if scope == Scope::MessageAttributes && self.nested {
            return Err(PolicyError::new(None, K::NestedInAttributes));
        }
        Ok(())
    }

    /// True for `{}`: a policy without conditions, which accepts every message.
    pub fn is_empty(&self) -> bool {
        self.alternatives().iter().any(Vec::is_empty)
    }

    fn parse_checked_size(v: &Value) -> Result<Policy, PolicyError> {
        let Value::Object(obj) = v else {
            return Err(PolicyError::new(None, K::NotAnObject));
        };
        let mut nested = false;
        let conds = parse_object(obj, None, None, 1, &mut nested)?;
        let policy = Policy { conds, nested };
        check_combinations(&policy.conds)?;
        for alt in policy.alternatives() {
            let mut tops: Vec<&str> = alt.iter().map(|k| k.top.as_str()).collect();
            tops.sort_unstable();
            tops.dedup();
            if tops.len() > MAX_KEYS {
                return Err(PolicyError::new(
                    Some(tops[MAX_KEYS]),
                    K::TooManyKeys { max: MAX_KEYS },
                ));
            }
        }
        Ok(policy)
    }

    /// The policy as a disjunction of conjunctions: `$or` expanded. Bounded by the
    /// combination limit (each alternative accounts for at least one combination).
    pub(crate) fn alternatives(&self) -> Vec<Vec<&KeyCond>> {
        expand(&self.conds)
    }
}

fn expand(conds: &[Cond]) -> Vec<Vec<&KeyCond>> {
    let mut alts: Vec<Vec<&KeyCond>> = vec![Vec::new()];
    for c in conds {
        match c {
            Cond::Key(k) => alts.iter_mut().for_each(|a| a.push(k)),
            Cond::Or(branches) => {
                let mut next = Vec::new();
                for b in branches {
                    for sub in expand(b) {
                        for a in &alts {
                            let mut n = a.clone();
                            n.extend(sub.iter().copied());
                            next.push(n);
                        }
                    }
                }
                alts = next;
            }
        }
    }
    alts
}

fn check_combinations(conds: &[Cond]) -> Result<(), PolicyError> {
    fn walk<'a>(conds: &'a [Cond], mut c: u64, worst: &mut Option<&'a str>) -> u64 {
        for cond in conds {
            match cond {
                Cond::Key(k) => {
                    c = c
                        .saturating_mul(k.rules.len() as u64)
                        .saturating_mul(u64::from(k.depth));
                    if c > MAX_COMBINATIONS && worst.is_none() {
                        *worst = Some(&k.path);
                    }
                }
                Cond::Or(branches) => {
                    c = branches
                        .iter()
                        .map(|b| walk(b, c, worst))
                        .fold(0u64, u64::saturating_add);
                }
            }
        }
        c
    }
    let mut worst = None;
    let total = walk(conds, 1, &mut worst);
    if total > MAX_COMBINATIONS {
        return Err(PolicyError::new(
            worst,
            K::TooComplex {
                combinations: total,
                max: MAX_COMBINATIONS,
            },
        ));
    }
    Ok(())
}

/// `$or` is an operator only when it holds an array of at least two objects; otherwise it is
/// an ordinary key.
fn is_or_operator(key: &str, v: &Value) -> bool {
    key == "$or" && matches!(v, Value::Array(a) if a.len() >= 2 && a.iter().all(Value::is_object))
}

fn parse_object(
    obj: &Map<String, Value>,
    prefix: Option<&str>,
    top: Option<&str>,
    depth: u32,
    nested: &mut bool,
) -> Result<Vec<Cond>, PolicyError> {
    let mut conds = Vec::with_capacity(obj.len());
    for (key, v) in obj {
        if is_or_operator(key, v) {
            let Value::Array(branches) = v else {
                unreachable!("checked by is_or_operator")
            };
            let mut alts = Vec::with_capacity(branches.len());
            for b in branches {
                let Value::Object(bo) = b else {
                    unreachable!("checked by is_or_operator")
                };
                alts.push(parse_object(bo, prefix, top, depth, nested)?);
            }
            conds.push(Cond::Or(alts));
            continue;
        }
        let path = match prefix {
            None => key.clone(),
            Some(p) => format!("{p}.{key}"),
        };
        let top_key = top.unwrap_or(key);
        match v {
            Value::Object(inner) => {
                *nested = true;
                conds.extend(parse_object(
                    inner,
                    Some(&path),
                    Some(top_key),
                    depth + 1,
                    nested,
                )?);
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(PolicyError::new(Some(&path), K::EmptyArray));
                }
                let rules = items
                    .iter()
                    .map(parse_rule)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|kind| PolicyError::new(Some(&path), kind))?;
                conds.push(Cond::Key(KeyCond {
                    path,
                    top: top_key.to_owned(),
                    depth,
                    rules,
                }));
            }
            _ => {
                return Err(PolicyError::new(
                    Some(&path),
                    K::NotObjectOrArray(key.clone()),
                ));
            }
        }
    }
    Ok(conds)
}

/// How a JSON value is shown inside an error text (`50`, `<=`, `]`).
fn show(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn literal(v: &Value) -> Option<Literal> {
    Some(match v {
        Value::String(s) => Literal::Str(s.clone()),
        Value::Number(n) => Literal::Num(number::key(n.as_f64()?)),
        Value::Bool(b) => Literal::Bool(*b),
        Value::Null => Literal::Null,
        _ => return None,
    })
}

/// A number in a policy, exact values included, must lie within ±1e9, as SNS requires.
fn in_range(v: &Value) -> Result<(), K> {
    match v.as_f64() {
        Some(x)
            if v.is_number()
                && !(-number::MAX_POLICY_MAGNITUDE..=number::MAX_POLICY_MAGNITUDE).contains(&x) =>
        {
            Err(K::NumberOutOfRange(show(v)))
        }
        _ => Ok(()),
    }
}

fn parse_rule(v: &Value) -> Result<Rule, K> {
    let Value::Object(m) = v else {
        in_range(v)?;
        return literal(v).map(Rule::Exact).ok_or(K::BadMatchValue);
    };
    if m.len() != 1 {
        return Err(K::OneKeyPerExpression);
    }
    let (op, arg) = m.iter().next().expect("one entry");
    let string_arg = |name: &'static str| match arg {
        Value::String(s) => Ok(s.clone()),
        _ => Err(K::MustBeString(name)),
    };
    Ok(match op.as_str() {
        "prefix" => Rule::Prefix(string_arg("prefix")?),
        "suffix" => Rule::Suffix(string_arg("suffix")?),
        "equals-ignore-case" => {
            Rule::EqualsIgnoreCase(fold_case(&string_arg("equals-ignore-case")?))
        }
        "wildcard" => Rule::Wildcard(Wildcard::parse(&string_arg("wildcard")?)?),
        "cidr" => Rule::Cidr(Cidr::parse(&string_arg("cidr")?)?),
        "exists" => match arg {
            Value::Bool(b) => Rule::Exists(*b),
            _ => return Err(K::ExistsNotBoolean),
        },
        "numeric" => Rule::Numeric(parse_numeric(arg)?),
        "anything-but" => Rule::AnythingBut(parse_anything_but(arg)?),
        other => return Err(K::UnrecognizedMatchType(other.to_owned())),
    })
}

fn parse_anything_but(arg: &Value) -> Result<AnythingBut, K> {
    match arg {
        Value::String(_) | Value::Number(_) => {
            in_range(arg)?;
            Ok(AnythingBut::Values(vec![
                literal(arg).expect("string or number"),
            ]))
        }
        Value::Array(items) => {
            if items.is_empty() {
                return Err(K::EmptyArray);
            }
            items
                .iter()
                .map(|i| match i {
                    Value::String(_) | Value::Number(_) => {
                        in_range(i)?;
                        Ok(literal(i).expect("string or number"))
                    }
                    _ => Err(K::AnythingButListMember),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(AnythingBut::Values)
        }
        Value::Object(m) => {
            if m.len() != 1 {
                return Err(K::OneKeyPerExpression);
            }
            let (op, v) = m.iter().next().expect("one entry");
            let s = |name: &'static str| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(K::MustBeString(name)),
            };
            Ok(match op.as_str() {
                "prefix" => AnythingBut::Prefix(s("prefix")?),
                "suffix" => AnythingBut::Suffix(s("suffix")?),
                "wildcard" => AnythingBut::Wildcard(Wildcard::parse(&s("wildcard")?)?),
                "equals-ignore-case" => {
                    AnythingBut::EqualsIgnoreCase(fold_case(&s("equals-ignore-case")?))
                }
                other => return Err(K::UnsupportedAnythingBut(other.to_owned())),
            })
        }
        _ => Err(K::BadMatchValue),
    }
}

fn numeric_operand(v: Option<&Value>, op: &str) -> Result<f64, K> {
    let name = if op == "=" { "equals" } else { op };
    let Some(x) = v.and_then(Value::as_f64) else {
        return Err(K::ValueMustBeNumeric(name.to_owned()));
    };
    if !(-number::MAX_POLICY_MAGNITUDE..=number::MAX_POLICY_MAGNITUDE).contains(&x) {
        return Err(K::NumberOutOfRange(show(v.expect("checked above"))));
    }
    Ok(number::key(x))
}

fn parse_numeric(arg: &Value) -> Result<NumRange, K> {
    let Value::Array(items) = arg else {
        return Err(K::NumericNotArray);
    };
    let Some(first) = items.first() else {
        return Err(K::InvalidNumericMember("]".to_owned()));
    };
    let Value::String(op) = first else {
        return Err(K::InvalidNumericMember(show(first)));
    };
    let x = match op.as_str() {
        "=" | "<" | "<=" | ">" | ">=" => numeric_operand(items.get(1), op)?,
        _ => return Err(K::UnrecognizedNumericOperator(op.clone())),
    };
    let mut r = NumRange {
        lo: f64::NEG_INFINITY,
        lo_inclusive: false,
        hi: f64::INFINITY,
        hi_inclusive: false,
    };
    match op.as_str() {
        "=" => {
            r = NumRange {
                lo: x,
                lo_inclusive: true,
                hi: x,
                hi_inclusive: true,
            }
        }
        "<" | "<=" => (r.hi, r.hi_inclusive) = (x, op == "<="),
        _ => (r.lo, r.lo_inclusive) = (x, op == ">="),
    }
    if items.len() == 2 {
        return Ok(r);
    }
    if op != ">" && op != ">=" {
        return Err(K::TooManyElements);
    }
    let Value::String(op2) = &items[2] else {
        return Err(K::BadRangeValue(show(&items[2])));
    };
    if op2 != "<" && op2 != "<=" {
        return Err(K::BadRangeOperator(op2.clone()));
    }
    let y = numeric_operand(items.get(3), op2)?;
    if y <= x {
        return Err(K::BottomNotBelowTop);
    }
    if items.len() > 4 {
        return Err(K::TooManyTerms);
    }
    (r.hi, r.hi_inclusive) = (y, op2 == "<=");
    Ok(r)
}

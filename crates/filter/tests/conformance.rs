//! Runs every case of the shared SNS filter-policy conformance file.
//!
//! `fixtures/filter-policy-cases.json` mirrors the project's shared conformance file
//! (`conformance/filter-policy-cases.json` of the shared contract); keep the two in sync.
//! Each case is checked three ways: the compiled matcher, the reference evaluator and the
//! one-off `Policy::matches`.

use serde_json::Value;
use switchyard_filter::{Attributes, MatcherBuilder, Policy, Scope, reference};

const CASES: &str = include_str!("fixtures/filter-policy-cases.json");

/// The prefix SNS puts before the reason when `Subscribe` refuses a policy.
const SUBSCRIBE_PREFIX: &str = "Invalid parameter: Attributes Reason: FilterPolicy: ";

fn body_bytes(case: &Value) -> Vec<u8> {
    match (case.get("body"), case.get("body_raw")) {
        (Some(b), _) => serde_json::to_vec(b).unwrap(),
        (None, Some(Value::String(raw))) => raw.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

#[test]
fn every_conformance_case_passes() {
    let cases: Vec<Value> = serde_json::from_str(CASES).unwrap();
    assert_eq!(cases.len(), 160, "the shared file has 160 cases");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let scope: Scope = case["scope"].as_str().unwrap().parse().unwrap();
        let parsed = Policy::parse(&case["policy"]).and_then(|p| p.check_scope(scope).map(|()| p));
        match &case["expect"] {
            Value::String(s) if s == "invalid" => match parsed {
                Ok(_) => failures.push(format!("{name}: accepted an invalid policy")),
                Err(e) => {
                    if let Some(Value::String(want)) = case.get("error_message") {
                        let want = want.strip_prefix(SUBSCRIBE_PREFIX).unwrap_or(want);
                        if e.kind.to_string() != want {
                            failures.push(format!(
                                "{name}: error {:?}, want {want:?}",
                                e.kind.to_string()
                            ));
                        }
                    }
                }
            },
            Value::String(s) if s == "valid" => {
                if let Err(e) = parsed {
                    failures.push(format!("{name}: refused a valid policy: {e}"));
                }
            }
            Value::Bool(want) => {
                let policy = match parsed {
                    Ok(p) => p,
                    Err(e) => {
                        failures.push(format!("{name}: refused: {e}"));
                        continue;
                    }
                };
                let attrs = match case.get("attributes") {
                    Some(a) => Attributes::from_sns_json(a).unwrap(),
                    None => Attributes::new(),
                };
                let body = body_bytes(case);
                let mut b = MatcherBuilder::new();
                b.add(42, &policy, scope).unwrap();
                let mut out = Vec::new();
                b.build().matches(&body, &attrs, &mut out);
                let got = !out.is_empty();
                let refd = reference::matches(&policy, scope, &body, &attrs);
                let oneoff = policy.matches(scope, &body, &attrs);
                if got != *want || refd != *want || oneoff != *want {
                    failures.push(format!(
                        "{name}: matcher {got}, reference {refd}, one-off {oneoff}, want {want}"
                    ));
                }
            }
            other => panic!("{name}: unknown expect {other}"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing cases:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

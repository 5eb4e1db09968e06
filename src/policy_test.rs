//! Trying filter policies without a server: `switchyard policy test` (one case or JSON
//! lines) and `POST /v1/policies/test` share this code, so both answer exactly as the
//! publish path would.

use serde_json::{Value, json};
use std::io::{BufRead, Write};
use switchyard_filter::{Attributes, Policy, Scope};

/// Parses a scope as the API (`MessageAttributes`, `MessageBody`) or the CLI
/// (`attributes`, `body`) writes it.
pub fn parse_scope(s: &str) -> Result<Scope, String> {
    match s {
        "MessageAttributes" | "attributes" => Ok(Scope::MessageAttributes),
        "MessageBody" | "body" => Ok(Scope::MessageBody),
        _ => Err(format!(
            "invalid scope {s:?}: use MessageAttributes (attributes) or MessageBody (body)"
        )),
    }
}

/// One case: does `policy` match this message?
pub fn evaluate(
    policy: &Value,
    scope: Scope,
    body: &[u8],
    attrs: &Attributes,
) -> Result<bool, String> {
    let policy = Policy::parse_scoped(policy, scope).map_err(|e| e.to_string())?;
    Ok(policy.matches(scope, body, attrs))
}

/// One line of `--jsonl` input to one line of output.
pub fn evaluate_line(line: &str) -> Value {
    match evaluate_case(line) {
        Ok(m) => json!({ "match": m }),
        Err(e) => json!({ "error": e }),
    }
}

fn evaluate_case(line: &str) -> Result<bool, String> {
    let case: Value = serde_json::from_str(line).map_err(|e| format!("invalid JSON line: {e}"))?;
    let policy = case.get("policy").ok_or("the line has no \"policy\"")?;
    let scope = match case.get("scope") {
        None | Some(Value::Null) => Scope::MessageAttributes,
        Some(Value::String(s)) => parse_scope(s)?,
        Some(other) => return Err(format!("invalid scope {other}")),
    };
    let attrs = match case.get("attributes") {
        None | Some(Value::Null) => Attributes::new(),
        Some(a) => Attributes::from_sns_json(a).map_err(|e| e.to_string())?,
    };
    let body = match (case.get("body_raw"), case.get("body")) {
        (Some(Value::String(raw)), _) => raw.as_bytes().to_vec(),
        (_, Some(b)) => serde_json::to_vec(b).expect("JSON values serialize"),
        _ => Vec::new(),
    };
    evaluate(policy, scope, &body, &attrs)
}

/// Answers every line of `input` on `output`, in order. Blank lines are skipped.
pub fn run_jsonl(input: impl BufRead, mut output: impl Write) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        writeln!(output, "{}", evaluate_line(&line))?;
    }
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_answers_each_line_in_order() {
        let input = concat!(
            r#"{"policy":{"a":["x"]},"scope":"MessageAttributes","attributes":{"a":{"Type":"String","Value":"x"}}}"#,
            "\n",
            r#"{"policy":{"a":["x"]},"scope":"MessageBody","body":{"a":"y"}}"#,
            "\n\n",
            r#"{"policy":{"a":[{"numeric":["<","z"]}]},"scope":"MessageBody","body":{}}"#,
            "\n",
            r#"{"policy":{"a":["x"]},"scope":"MessageBody","body_raw":"not json"}"#,
            "\n",
        );
        let mut out = Vec::new();
        run_jsonl(input.as_bytes(), &mut out).unwrap();
        let lines: Vec<Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0], json!({"match": true}));
        assert_eq!(lines[1], json!({"match": false}));
        assert!(lines[2]["error"].as_str().unwrap().contains("\"a\""));
        assert_eq!(lines[3], json!({"match": false}));
        assert_eq!(lines.len(), 4);
    }
}

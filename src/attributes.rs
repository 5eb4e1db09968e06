//! Message attributes: parsed from the API's shorthand or SNS form, checked, and rendered in
//! SNS form for storage and delivery.
//!
//! A value may be given as a JSON string (String), a number (Number), an array of strings
//! and numbers (String.Array) or the SNS form `{"Type": …, "Value": …}`. Limits follow SNS:
//! at most 10 attributes, names of up to 256 characters from `[A-Za-z0-9_.-]`.

use base64::Engine;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// SNS allows at most 10 message attributes.
pub const MAX_ATTRIBUTES: usize = 10;
/// SNS attribute names are at most 256 characters.
pub const MAX_NAME_LEN: usize = 256;

/// The data type of an attribute (SNS allows a custom suffix, e.g. `Number.float`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    String,
    Number,
    StringArray,
    Binary,
}

/// One attribute, in SNS terms: its declared type and its value as text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub data_type: String,
    pub kind: AttrType,
    pub value: String,
}

/// Checked attributes, ordered by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes(pub BTreeMap<String, Attribute>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message attribute {name:?}: {problem}")]
pub struct AttributeError {
    pub name: String,
    pub problem: String,
}

fn err(name: &str, problem: impl Into<String>) -> AttributeError {
    AttributeError {
        name: name.to_string(),
        problem: problem.into(),
    }
}

impl Attributes {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Parses the `attributes` member of a publish or send request.
    pub fn from_api(v: Option<&Value>) -> Result<Self, AttributeError> {
        let map = match v {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(err("", "attributes must be a JSON object")),
        };
        if map.len() > MAX_ATTRIBUTES {
            return Err(err(
                "",
                format!(
                    "at most {MAX_ATTRIBUTES} attributes are allowed, got {}",
                    map.len()
                ),
            ));
        }
        let mut out = BTreeMap::new();
        for (name, v) in map {
            check_name(name)?;
            out.insert(name.clone(), parse_value(name, v)?);
        }
        Ok(Self(out))
    }

    /// Renders the SNS form `{"Name":{"Type":…,"Value":…}}`.
    pub fn to_sns_json(&self) -> Value {
        let mut m = Map::with_capacity(self.0.len());
        for (k, a) in &self.0 {
            m.insert(
                k.clone(),
                serde_json::json!({"Type": a.data_type, "Value": a.value}),
            );
        }
        Value::Object(m)
    }

    /// Approximate size in bytes as SNS counts it (names, types and values).
    pub fn byte_len(&self) -> usize {
        self.0
            .iter()
            .map(|(k, a)| k.len() + a.data_type.len() + a.value.len())
            .sum()
    }
}

fn check_name(name: &str) -> Result<(), AttributeError> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(err(
            name,
            format!("name must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        || name.starts_with('.')
        || name.ends_with('.')
        || name.contains("..")
    {
        return Err(err(
            name,
            "name may contain only letters, digits, '_', '-' and '.' (not at the start or end, not twice in a row)",
        ));
    }
    Ok(())
}

fn parse_value(name: &str, v: &Value) -> Result<Attribute, AttributeError> {
    let (data_type, value) = match v {
        Value::String(s) => ("String".to_string(), s.clone()),
        Value::Number(n) => ("Number".to_string(), n.to_string()),
        Value::Array(items) => {
            if let Some(bad) = items.iter().find(|i| {
                !matches!(
                    i,
                    Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null
                )
            }) {
                return Err(err(
                    name,
                    format!(
                        "String.Array elements must be strings, numbers, booleans or null, got {bad}"
                    ),
                ));
            }
            ("String.Array".to_string(), v.to_string())
        }
        Value::Object(o) => {
            let t = o.get("Type").and_then(Value::as_str);
            let val = o.get("Value");
            let extra = o.keys().find(|k| *k != "Type" && *k != "Value");
            match (t, val, extra) {
                (Some(t), Some(Value::String(s)), None) => (t.to_string(), s.clone()),
                (Some(t), Some(Value::Number(n)), None) => (t.to_string(), n.to_string()),
                _ => {
                    return Err(err(
                        name,
                        r#"expected a string, a number, an array or {"Type": "...", "Value": "..."}"#,
                    ));
                }
            }
        }
        Value::Bool(_) | Value::Null => {
            return Err(err(
                name,
                "booleans and null are not attribute values; use a string",
            ));
        }
    };
    let base = data_type.split('.').next().unwrap_or("");
    let kind = match (base, data_type.as_str()) {
        (_, "String.Array") => AttrType::StringArray,
        ("String", _) => AttrType::String,
        ("Number", _) => AttrType::Number,
        ("Binary", _) => AttrType::Binary,
        _ => {
            return Err(err(
                name,
                format!("unknown type {data_type:?}: use String, Number, String.Array or Binary"),
            ));
        }
    };
    match kind {
        AttrType::Number => {
            if value
                .trim()
                .parse::<f64>()
                .map(|f| !f.is_finite())
                .unwrap_or(true)
            {
                return Err(err(name, format!("{value:?} is not a number")));
            }
        }
        AttrType::StringArray => {
            if !matches!(serde_json::from_str::<Value>(&value), Ok(Value::Array(_))) {
                return Err(err(
                    name,
                    format!("a String.Array value must be a JSON array, got {value:?}"),
                ));
            }
        }
        AttrType::Binary => {
            if base64::engine::general_purpose::STANDARD
                .decode(&value)
                .is_err()
            {
                return Err(err(name, "a Binary value must be base64"));
            }
        }
        AttrType::String => {}
    }
    if value.is_empty() {
        return Err(err(name, "the value must not be empty"));
    }
    Ok(Attribute {
        data_type,
        kind,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shorthand_and_sns_forms_parse_to_the_same_attributes() {
        let a = Attributes::from_api(Some(&json!({
            "s": "x", "n": 1.5, "arr": ["a", 1], "b": {"Type": "Binary", "Value": "aGk="},
            "sns": {"Type": "Number", "Value": "3"}
        })))
        .unwrap();
        let sns = a.to_sns_json();
        assert_eq!(sns["s"], json!({"Type": "String", "Value": "x"}));
        assert_eq!(sns["n"], json!({"Type": "Number", "Value": "1.5"}));
        assert_eq!(
            sns["arr"],
            json!({"Type": "String.Array", "Value": "[\"a\",1]"})
        );
        assert_eq!(sns["sns"], json!({"Type": "Number", "Value": "3"}));
        assert_eq!(a.0["b"].kind, AttrType::Binary);
    }

    #[test]
    fn bad_attributes_name_the_attribute() {
        for (v, needle) in [
            (json!({"a": true}), "\"a\""),
            (
                json!({"a": {"Type": "Number", "Value": "x"}}),
                "not a number",
            ),
            (json!({"a": {"Type": "Blob", "Value": "x"}}), "unknown type"),
            (json!({"a": {"Type": "Binary", "Value": "%%%"}}), "base64"),
            (json!({"a b": "x"}), "name may contain"),
            (json!({"a": [{"x": 1}]}), "String.Array"),
        ] {
            let e = Attributes::from_api(Some(&v)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should contain {needle}");
        }
        let many: Map<String, Value> = (0..11).map(|i| (format!("a{i}"), json!("x"))).collect();
        assert!(Attributes::from_api(Some(&Value::Object(many))).is_err());
    }
}

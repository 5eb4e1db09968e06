//! Message attributes as the API accepts them: the filter crate's [`Attributes`] (which
//! parses the shorthand and SNS forms and renders the SNS form), plus the message-level
//! limits SNS applies: at most 10 attributes, names of up to 256 characters from
//! `[A-Za-z0-9_.-]`, non-empty values, base64 for Binary.

use base64::Engine;
use serde_json::Value;

pub use switchyard_filter::{AttrType, Attributes};

/// SNS allows at most 10 message attributes.
pub const MAX_ATTRIBUTES: usize = 10;
/// SNS attribute names are at most 256 characters.
pub const MAX_NAME_LEN: usize = 256;

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

/// Parses the `attributes` member of a publish or send request.
pub fn from_api(v: Option<&Value>) -> Result<Attributes, AttributeError> {
    let (v, map) = match v {
        None | Some(Value::Null) => return Ok(Attributes::new()),
        Some(v @ Value::Object(m)) => (v, m),
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
    for name in map.keys() {
        check_name(name)?;
    }
    let attrs = Attributes::from_api_json(v).map_err(|e| AttributeError {
        name: e.name.clone(),
        problem: e.kind.to_string(),
    })?;
    for (name, a) in attrs.iter() {
        if a.value().is_empty() {
            return Err(err(name, "the value must not be empty"));
        }
        if a.attr_type() == AttrType::Binary
            && base64::engine::general_purpose::STANDARD
                .decode(a.value())
                .is_err()
        {
            return Err(err(name, "a Binary value must be base64"));
        }
    }
    Ok(attrs)
}

/// Size in bytes as SNS counts it toward the message size: names, types and values.
pub fn byte_len(attrs: &Attributes) -> usize {
    attrs
        .iter()
        .map(|(k, a)| k.len() + a.type_label().len() + a.value().len())
        .sum()
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shorthand_and_sns_forms_parse_to_the_same_attributes() {
        let a = from_api(Some(&json!({
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
        assert_eq!(a.get("b").unwrap().attr_type(), AttrType::Binary);
    }

    #[test]
    fn bad_attributes_name_the_attribute() {
        for (v, needle) in [
            (json!({"a": true}), "\"a\""),
            (json!({"a": {"Type": "Number", "Value": "x"}}), "\"a\""),
            (json!({"a": {"Type": "Blob", "Value": "x"}}), "\"a\""),
            (json!({"a": {"Type": "Binary", "Value": "%%%"}}), "base64"),
            (json!({"a b": "x"}), "name may contain"),
            (json!({"a": [{"x": 1}]}), "\"a\""),
            (json!({"a": ""}), "empty"),
        ] {
            let e = from_api(Some(&v)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e} should contain {needle}");
        }
        let many: serde_json::Map<String, Value> =
            (0..11).map(|i| (format!("a{i}"), json!("x"))).collect();
        assert!(from_api(Some(&Value::Object(many))).is_err());
    }
}

//! Message attributes as the filter sees them: name → (type, value string), parsed once when
//! the message arrives so matching never re-parses a `Number` or a `String.Array`.
//! Reads the SNS form and the router API's shorthand, and renders the SNS form back.

use crate::error::{AttributeError, AttributeErrorKind as K};
use crate::number;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The SNS data type of an attribute (custom labels such as `Number.float` map to their base).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttrType {
    String,
    Number,
    StringArray,
    Binary,
}

impl AttrType {
    /// The SNS spelling of the base type.
    pub fn as_str(self) -> &'static str {
        match self {
            AttrType::String => "String",
            AttrType::Number => "Number",
            AttrType::StringArray => "String.Array",
            AttrType::Binary => "Binary",
        }
    }

    /// Parse an SNS type label: `String`, `Number`, `String.Array`, `Binary`, or one of the
    /// first, second and fourth with a custom `.label` suffix.
    pub fn parse_label(label: &str) -> Option<AttrType> {
        if label == "String.Array" {
            return Some(AttrType::StringArray);
        }
        let base = label
            .split_once('.')
            .map_or(label, |(b, rest)| if rest.is_empty() { "" } else { b });
        match base {
            "String" => Some(AttrType::String),
            "Number" => Some(AttrType::Number),
            "Binary" => Some(AttrType::Binary),
            _ => None,
        }
    }
}

/// One element of a `String.Array` attribute.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Element {
    Str(String),
    /// Comparison key (see `number::key`).
    Num(f64),
    Bool(bool),
    Null,
}

/// The value parsed for matching.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Parsed {
    Str,
    /// Comparison key (see `number::key`).
    Num(f64),
    Array(Vec<Element>),
    Binary,
}

/// One attribute: its type label as given, and its value string.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeValue {
    label: String,
    ty: AttrType,
    value: String,
    pub(crate) parsed: Parsed,
}

impl AttributeValue {
    /// Check and parse one attribute value.
    pub fn new(name: &str, label: &str, value: String) -> Result<AttributeValue, AttributeError> {
        let err = |k| AttributeError::new(name, k);
        let ty = AttrType::parse_label(label).ok_or_else(|| err(K::BadType(label.to_owned())))?;
        let parsed = match ty {
            AttrType::String => Parsed::Str,
            AttrType::Binary => Parsed::Binary,
            AttrType::Number => {
                Parsed::Num(parse_number(&value).ok_or_else(|| err(K::NotANumber(value.clone())))?)
            }
            AttrType::StringArray => match serde_json::from_str::<Value>(&value) {
                Ok(Value::Array(items)) => Parsed::Array(
                    items
                        .into_iter()
                        .map(|i| element(i).ok_or_else(|| err(K::BadArrayElement)))
                        .collect::<Result<Vec<_>, _>>()?,
                ),
                // SNS accepts a value that is not an array: a JSON scalar matches as that
                // one value, anything else matches nothing.
                Ok(Value::Object(_)) | Err(_) => Parsed::Array(Vec::new()),
                Ok(scalar) => Parsed::Array(element(scalar).into_iter().collect()),
            },
        };
        Ok(AttributeValue {
            label: label.to_owned(),
            ty,
            value,
            parsed,
        })
    }

    /// The base data type.
    pub fn attr_type(&self) -> AttrType {
        self.ty
    }

    /// The type label as given (`Number.float` stays `Number.float`).
    pub fn type_label(&self) -> &str {
        &self.label
    }

    /// The value string as given (a `String.Array` holds its JSON text).
    pub fn value(&self) -> &str {
        &self.value
    }
}

/// A JSON scalar as an element of a `String.Array`; objects and arrays are none.
fn element(v: Value) -> Option<Element> {
    Some(match v {
        Value::String(s) => Element::Str(s),
        Value::Number(n) => Element::Num(number::key(n.as_f64().unwrap_or(f64::NAN))),
        Value::Bool(b) => Element::Bool(b),
        Value::Null => Element::Null,
        Value::Array(_) | Value::Object(_) => return None,
    })
}

/// A number as SNS accepts it in a `Number` attribute: decimal, optional sign, fraction
/// and exponent; finite.
fn parse_number(s: &str) -> Option<f64> {
    let plausible = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
        && s.bytes().any(|b| b.is_ascii_digit());
    let x: f64 = if plausible {
        s.parse().ok()?
    } else {
        return None;
    };
    x.is_finite().then(|| number::key(x))
}

/// The message attributes of one message.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Attributes {
    map: BTreeMap<String, AttributeValue>,
}

impl Attributes {
    /// No attributes.
    pub fn new() -> Attributes {
        Attributes::default()
    }

    /// Add or replace one attribute.
    pub fn insert(
        &mut self,
        name: &str,
        type_label: &str,
        value: impl Into<String>,
    ) -> Result<(), AttributeError> {
        if name.is_empty() {
            return Err(AttributeError::new(name, K::EmptyName));
        }
        let v = AttributeValue::new(name, type_label, value.into())?;
        self.map.insert(name.to_owned(), v);
        Ok(())
    }

    /// Read the SNS form `{"Name": {"Type": "String|Number|String.Array|Binary", "Value": "…"}}`.
    pub fn from_sns_json(v: &Value) -> Result<Attributes, AttributeError> {
        let obj = v
            .as_object()
            .ok_or_else(|| AttributeError::new("", K::NotAnObject))?;
        let mut attrs = Attributes::new();
        for (name, av) in obj {
            let (label, value) = sns_form(name, av)?;
            attrs.insert(name, label, value)?;
        }
        Ok(attrs)
    }

    /// Read the router API's form, where each value is a JSON string (`String`), a number
    /// (`Number`), an array of strings and numbers (`String.Array`, kept JSON-encoded) or the
    /// SNS form `{"Type": …, "Value": …}`.
    pub fn from_api_json(v: &Value) -> Result<Attributes, AttributeError> {
        let obj = v
            .as_object()
            .ok_or_else(|| AttributeError::new("", K::NotAnObject))?;
        let mut attrs = Attributes::new();
        for (name, av) in obj {
            match av {
                Value::String(s) => attrs.insert(name, "String", s.clone())?,
                Value::Number(n) => attrs.insert(name, "Number", n.to_string())?,
                Value::Array(items) => {
                    if !items.iter().all(|i| i.is_string() || i.is_number()) {
                        return Err(AttributeError::new(name, K::BadArrayElement));
                    }
                    attrs.insert(name, "String.Array", av.to_string())?
                }
                Value::Object(_) => {
                    let (label, value) = sns_form(name, av)?;
                    attrs.insert(name, label, value)?
                }
                _ => return Err(AttributeError::new(name, K::BadShorthand)),
            }
        }
        Ok(attrs)
    }

    /// Render the SNS form (what is stored and delivered).
    pub fn to_sns_json(&self) -> Value {
        let mut m = Map::new();
        for (name, v) in &self.map {
            let mut one = Map::new();
            one.insert("Type".into(), Value::String(v.label.clone()));
            one.insert("Value".into(), Value::String(v.value.clone()));
            m.insert(name.clone(), Value::Object(one));
        }
        Value::Object(m)
    }

    /// One attribute by name.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.map.get(name)
    }

    /// All attributes in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &AttributeValue)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there are no attributes (then `exists: false` matches nothing).
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

fn sns_form<'a>(name: &str, av: &'a Value) -> Result<(&'a str, String), AttributeError> {
    let o = av
        .as_object()
        .ok_or_else(|| AttributeError::new(name, K::NotSnsForm))?;
    if let Some(k) = o.keys().find(|k| *k != "Type" && *k != "Value") {
        return Err(AttributeError::new(name, K::UnknownField(k.clone())));
    }
    let label = match o.get("Type") {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => return Err(AttributeError::new(name, K::BadType(other.to_string()))),
        None => return Err(AttributeError::new(name, K::NotSnsForm)),
    };
    let value = match o.get("Value") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(AttributeError::new(name, K::ValueNotString)),
    };
    Ok((label, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_sns_form_and_renders_it_back() {
        let v = json!({"a": {"Type": "String", "Value": "x"}, "n": {"Type": "Number.float", "Value": "3.015e2"},
                       "l": {"Type": "String.Array", "Value": "[\"x\", 1, true, null]"}, "b": {"Type": "Binary", "Value": "AAE="}});
        let a = Attributes::from_sns_json(&v).unwrap();
        assert_eq!(a.len(), 4);
        assert_eq!(a.get("n").unwrap().attr_type(), AttrType::Number);
        assert_eq!(a.get("n").unwrap().parsed, Parsed::Num(number::key(301.5)));
        assert_eq!(a.to_sns_json(), v);
    }

    #[test]
    fn reads_api_shorthand() {
        let a = Attributes::from_api_json(&json!({"s": "x", "n": 12.5, "l": ["a", 1],
            "f": {"Type": "String", "Value": "y"}}))
        .unwrap();
        assert_eq!(a.get("s").unwrap().attr_type(), AttrType::String);
        assert_eq!(a.get("n").unwrap().value(), "12.5");
        assert_eq!(a.get("l").unwrap().attr_type(), AttrType::StringArray);
        assert_eq!(a.get("l").unwrap().value(), r#"["a",1]"#);
        assert_eq!(a.get("f").unwrap().value(), "y");
    }

    #[test]
    fn errors_name_the_attribute_and_the_problem() {
        let cases = [
            (
                json!({"p": {"Type": "Number", "Value": "abc"}}),
                r#"invalid message attribute "p": Number value "abc" is not a number"#,
            ),
            (
                json!({"p": {"Type": "Number", "Value": "inf"}}),
                r#"invalid message attribute "p": Number value "inf" is not a number"#,
            ),
            (
                json!({"p": {"Type": "Strin", "Value": "x"}}),
                r#"invalid message attribute "p": "Type" must be one of String, Number, String.Array, Binary (optionally with a custom ".label"), got "Strin""#,
            ),
            (
                json!({"p": {"Type": "String", "Value": 5}}),
                r#"invalid message attribute "p": "Value" must be a JSON string"#,
            ),
            (
                json!({"p": {"Type": "String.Array", "Value": "[{}]"}}),
                r#"invalid message attribute "p": String.Array elements must be strings, numbers, true, false or null"#,
            ),
            (
                json!({"p": {"Type": "String", "Value": "x", "X": 1}}),
                r#"invalid message attribute "p": unknown field "X"; expected "Type" and "Value""#,
            ),
            (
                json!({"": {"Type": "String", "Value": "x"}}),
                r#"invalid message attribute "": the attribute name must not be empty"#,
            ),
            (
                json!([1]),
                r#"invalid message attribute "": attributes must be a JSON object of name to value"#,
            ),
        ];
        for (v, want) in cases {
            assert_eq!(Attributes::from_sns_json(&v).unwrap_err().to_string(), want);
        }
        let e = Attributes::from_api_json(&json!({"q": true})).unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"invalid message attribute "q": a value must be a string, a number, an array of strings and numbers, or {"Type", "Value"}"#
        );
        let e = Attributes::from_api_json(&json!({"q": [true]})).unwrap_err();
        assert_eq!(e.name, "q");
    }
}

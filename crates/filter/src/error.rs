//! Typed errors of this crate: why a filter policy is refused and why a set of message
//! attributes is malformed. Both name what they concern (the policy key, the attribute
//! name) so the API can hand them to the caller unchanged.

use thiserror::Error;

/// A filter policy was refused. `Display` reads
/// `invalid filter policy: key "price": Value of <= must be numeric`; the part after the
/// key is AWS's own reason text where AWS documents one (see [`PolicyError::aws_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid filter policy: {}{kind}", key_prefix(.key))]
pub struct PolicyError {
    /// The offending key as a dotted path (`"store.name"`), when one key is to blame.
    pub key: Option<String>,
    /// Which rule the policy broke.
    pub kind: PolicyErrorKind,
}

fn key_prefix(key: &Option<String>) -> String {
    match key {
        Some(k) => format!("key {k:?}: "),
        None => String::new(),
    }
}

impl PolicyError {
    pub(crate) fn new(key: Option<&str>, kind: PolicyErrorKind) -> Self {
        PolicyError {
            key: key.map(str::to_owned),
            kind,
        }
    }

    /// The message in the shape SNS returns it (`Invalid parameter: FilterPolicy: …`), for
    /// clients that compare against AWS's texts.
    pub fn aws_message(&self) -> String {
        format!("Invalid parameter: FilterPolicy: {}", self.kind)
    }
}

/// The rule a filter policy broke. Texts follow AWS's error messages where AWS has one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PolicyErrorKind {
    #[error("Filter policy is not valid JSON: {0}")]
    NotJson(String),
    #[error("Filter policy must be a JSON object")]
    NotAnObject,
    #[error("Filter policy is too large: {size} bytes, at most {max}")]
    TooLarge { size: usize, max: usize },
    #[error("Filter policy can not have more than {max} keys")]
    TooManyKeys { max: usize },
    #[error("Filter policy is too complex: {combinations} combinations, at most {max}")]
    TooComplex { combinations: u64, max: u64 },
    #[error("Filter policy scope MessageAttributes does not support nested filter policy")]
    NestedInAttributes,
    #[error("{0:?} must be an object or an array")]
    NotObjectOrArray(String),
    #[error("Empty arrays are not allowed")]
    EmptyArray,
    #[error("Match value must be String, number, true, false, or null")]
    BadMatchValue,
    #[error("Only one key allowed in match expression")]
    OneKeyPerExpression,
    #[error("Unrecognized match type {0}")]
    UnrecognizedMatchType(String),
    #[error("{0} match pattern must be a string")]
    MustBeString(&'static str),
    #[error("exists match pattern must be either true or false.")]
    ExistsNotBoolean,
    #[error("Value of numeric must be an array.")]
    NumericNotArray,
    #[error("Invalid member in numeric match: {0}")]
    InvalidNumericMember(String),
    #[error("Unrecognized numeric range operator: {0}")]
    UnrecognizedNumericOperator(String),
    #[error("Value of {0} must be numeric")]
    ValueMustBeNumeric(String),
    #[error("Too many elements in numeric expression")]
    TooManyElements,
    #[error("Bad value in numeric range: {0}")]
    BadRangeValue(String),
    #[error("Bad numeric range operator: {0}")]
    BadRangeOperator(String),
    #[error("Bottom must be less than top")]
    BottomNotBelowTop,
    #[error("Too many terms in numeric range expression")]
    TooManyTerms,
    #[error("Value must be between -1.0E9 and 1.0E9, inclusive: {0}")]
    NumberOutOfRange(String),
    #[error("Unsupported anything-but pattern: {0}")]
    UnsupportedAnythingBut(String),
    #[error("Inside anything but list, start|null|boolean is not supported.")]
    AnythingButListMember,
    #[error("Malformed CIDR, one '/' required")]
    CidrNoSlash,
    #[error("Malformed CIDR, mask bits must be an integer")]
    CidrMaskNotInteger,
    #[error("Malformed CIDR, mask bits must be between 0 and {0}")]
    CidrMaskRange(u8),
    #[error("Nonstandard IP address: {0}")]
    CidrBadAddress(String),
    #[error("Consecutive wildcard characters at pos {0}")]
    ConsecutiveWildcards(usize),
    #[error("Invalid escape character at pos {0}")]
    InvalidEscape(usize),
    #[error(
        "Rule is too complex - try using fewer wildcard characters ({count}, at most {max} per value)"
    )]
    TooManyWildcards { count: usize, max: usize },
}

/// A set of message attributes is malformed. `Display` reads
/// `invalid message attribute "price": Number value "abc" is not a number`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid message attribute {name:?}: {kind}")]
pub struct AttributeError {
    /// The attribute concerned (empty when the whole attribute map is malformed).
    pub name: String,
    /// What is wrong with it.
    pub kind: AttributeErrorKind,
}

impl AttributeError {
    pub(crate) fn new(name: &str, kind: AttributeErrorKind) -> Self {
        AttributeError {
            name: name.to_owned(),
            kind,
        }
    }
}

/// What is wrong with one message attribute.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttributeErrorKind {
    #[error("attributes must be a JSON object of name to value")]
    NotAnObject,
    #[error("the attribute name must not be empty")]
    EmptyName,
    #[error("expected {{\"Type\": …, \"Value\": …}}")]
    NotSnsForm,
    #[error("unknown field {0:?}; expected \"Type\" and \"Value\"")]
    UnknownField(String),
    #[error(
        "\"Type\" must be one of String, Number, String.Array, Binary (optionally with a custom \".label\"), got {0:?}"
    )]
    BadType(String),
    #[error("\"Value\" must be a JSON string")]
    ValueNotString,
    #[error("Number value {0:?} is not a number")]
    NotANumber(String),
    #[error("String.Array elements must be strings, numbers, true, false or null")]
    BadArrayElement,
    #[error(
        "a value must be a string, a number, an array of strings and numbers, or {{\"Type\", \"Value\"}}"
    )]
    BadShorthand,
}

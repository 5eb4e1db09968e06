//! SNS subscription filter policies for Switchyard's publish path: parse, validate against
//! AWS's limits, compile the policies of a topic into one matcher, match.
//!
//! This crate is pure: no I/O, no clock, no global state beyond a per-thread scratch buffer.
//! It does not decide what happens to a matched message (that is the publish pipeline's job).
//!
//! Layout:
//! - [`policy`]: the policy syntax tree, parsing and limits ([`Policy`], [`PolicyError`]).
//! - [`attributes`]: message attributes in SNS and API form ([`Attributes`]).
//! - [`matcher`]: the compiled matcher ([`MatcherBuilder`], [`Matcher`]).
//! - [`reference`]: the executable specification the matcher is tested against.
//! - `json`, `number`, `wildcard`, `cidr`: the pieces both sides share; `structural`: the
//!   64-bytes-at-a-time JSON skipping and validation behind `json`.
//!
//! ```
//! use switchyard_filter::{Attributes, MatcherBuilder, Policy, Scope};
//! let p = Policy::parse_str(r#"{"price": [{"numeric": [">", 100]}]}"#).unwrap();
//! let mut b = MatcherBuilder::new();
//! b.add(7, &p, Scope::MessageBody).unwrap();
//! let m = b.build();
//! let mut out = Vec::new();
//! m.matches(br#"{"price": 3.015e2}"#, &Attributes::new(), &mut out);
//! assert_eq!(out, [7]);
//! ```

pub mod attributes;
mod cidr;
pub mod error;
mod json;
pub mod matcher;
pub mod number;
pub mod policy;
pub mod reference;
mod structural;
mod wildcard;

pub use attributes::{AttrType, AttributeValue, Attributes};
pub use error::{AttributeError, AttributeErrorKind, PolicyError, PolicyErrorKind};
pub use json::validate as is_valid_json;
pub use matcher::{MatchScratch, Matcher, MatcherBuilder};
pub use policy::Policy;

/// What a subscription's filter policy is applied to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// The message attributes (the SNS default).
    #[default]
    MessageAttributes,
    /// The message body, which must be a JSON object.
    MessageBody,
}

impl Scope {
    /// The SNS spelling (`MessageAttributes` or `MessageBody`).
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::MessageAttributes => "MessageAttributes",
            Scope::MessageBody => "MessageBody",
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was neither `MessageAttributes` nor `MessageBody`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown filter policy scope {0:?}: expected MessageAttributes or MessageBody")]
pub struct ScopeParseError(pub String);

impl std::str::FromStr for Scope {
    type Err = ScopeParseError;
    fn from_str(s: &str) -> Result<Scope, ScopeParseError> {
        match s {
            "MessageAttributes" => Ok(Scope::MessageAttributes),
            "MessageBody" => Ok(Scope::MessageBody),
            other => Err(ScopeParseError(other.to_owned())),
        }
    }
}

impl Policy {
    /// Does this policy accept the message in `scope`? Compiles a one-policy matcher; for
    /// many messages or many policies build a [`Matcher`] once instead.
    pub fn matches(&self, scope: Scope, body: &[u8], attrs: &Attributes) -> bool {
        let mut b = MatcherBuilder::new();
        if b.add(0, self, scope).is_err() {
            return false;
        }
        let mut out = Vec::new();
        b.build().matches(body, attrs, &mut out);
        !out.is_empty()
    }
}

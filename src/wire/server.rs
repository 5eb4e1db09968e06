//! The server itself: readiness, and trying a filter policy.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `GET /readyz`: whether every function's component has loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Functions whose component is still compiling.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub loading: Vec<String>,
    /// Functions whose component did not load, with why.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failed: BTreeMap<String, String>,
}

/// `POST /v1/policies/test` body: a filter policy and what it looks at.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyTestRequest {
    /// The SNS filter policy.
    #[schema(value_type = Object)]
    pub policy: Value,
    /// `MessageAttributes` (default) or `MessageBody` (also `attributes`, `body`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(MessageAttributes|MessageBody|attributes|body)$")]
    pub scope: Option<String>,
    /// The message body, for body scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Value>)]
    pub message: Option<Box<RawValue>>,
    /// Attributes in the publish forms, for attribute scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<super::Attributes>)]
    pub attributes: Option<Value>,
}

/// Whether the policy matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PolicyTestResult {
    #[serde(rename = "match")]
    pub matches: bool,
}

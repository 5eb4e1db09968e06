//! The config file (`--config`, TOML): parse, validate, then apply.
//!
//! Parsing and validation are pure and report every problem at once, each with the file
//! and the dotted key it concerns. Only a [`ValidConfig`] can be applied, and applying uses
//! the same router calls as the HTTP API's `PUT`s, so both create the same resources and
//! applying the same file twice changes nothing.
//!
//! ```toml
//! [queues.email]
//! visibility_timeout_s = 30
//!
//! [topics.orders]
//! [topics.orders.subscriptions.email]
//! endpoint = { queue = "email" }
//! filter_policy = { kind = ["order_placed"] }
//! ```

use crate::control::Control;
use crate::error::OpError;
use crate::model::{
    Destination, Endpoint, FieldError, FilterScope, FunctionSpec, Kind, QueueSpec, SourceSpec,
    StreamSpec, SubscriptionSpec, TopicSpec, validate_name,
};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// Dotted key, e.g. `topics.orders.subscriptions.email.endpoint.queue`; empty for the
    /// whole file.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.message)
        }
    }
}

/// A topic entry: the topic's `PUT` body plus its subscriptions.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopicEntry {
    #[serde(default)]
    fifo: bool,
    #[serde(default)]
    schema: Option<JsonOrText>,
    #[serde(default)]
    content_based_dedup: bool,
    #[serde(default)]
    max_message_bytes: Option<usize>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    tags: std::collections::BTreeMap<String, String>,
}

/// A subscription entry; `filter_policy` may also be written as a JSON string.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubscriptionEntry {
    endpoint: Endpoint,
    #[serde(default)]
    filter_policy: Option<JsonOrText>,
    #[serde(default)]
    filter_policy_scope: FilterScope,
    #[serde(default)]
    raw_message_delivery: bool,
    #[serde(default)]
    notification: crate::model::Notification,
    #[serde(default)]
    dead_letter_queue: Option<String>,
    #[serde(default)]
    delivery_policy: Option<crate::model::delivery_policy::DeliveryPolicy>,
}

/// A JSON value written either as TOML or as a string holding JSON.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum JsonOrText {
    Text(String),
    Value(serde_json::Value),
}

impl JsonOrText {
    fn into_json(self) -> Result<serde_json::Value, String> {
        match self {
            JsonOrText::Value(v) => Ok(v),
            JsonOrText::Text(s) => {
                serde_json::from_str(&s).map_err(|e| format!("not valid JSON: {e}"))
            }
        }
    }
}

/// A config file whose every part has been checked.
#[derive(Debug, Default)]
pub struct ValidConfig {
    pub queues: BTreeMap<String, QueueSpec>,
    pub streams: BTreeMap<String, StreamSpec>,
    pub functions: BTreeMap<String, FunctionSpec>,
    pub topics: BTreeMap<String, TopicSpec>,
    /// (topic, subscription) → spec.
    pub subscriptions: BTreeMap<(String, String), SubscriptionSpec>,
}

/// Resources already stored, which a file may refer to without declaring them.
#[derive(Debug, Default)]
pub struct Existing {
    pub topics: BTreeSet<String>,
    pub queues: BTreeSet<String>,
    pub streams: BTreeSet<String>,
    pub functions: BTreeSet<String>,
}

/// Reads and validates a config file.
pub fn load(path: &Path, existing: &Existing) -> Result<ValidConfig, Vec<ConfigError>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: path.to_path_buf(),
            key: String::new(),
            message: format!("cannot read: {e}"),
        }]
    })?;
    parse(path, &text, existing)
}

/// Parses and validates config text (pure).
pub fn parse(
    file: &Path,
    text: &str,
    existing: &Existing,
) -> Result<ValidConfig, Vec<ConfigError>> {
    let mut errors = Vec::new();
    let mut err = |key: String, message: String| {
        errors.push(ConfigError {
            file: file.to_path_buf(),
            key,
            message,
        })
    };
    let root: toml::Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            err(String::new(), format!("not valid TOML: {e}"));
            return Err(errors);
        }
    };
    let mut cfg = ValidConfig::default();
    for (key, value) in root {
        let toml::Value::Table(entries) = value else {
            err(key, "expected a table".into());
            continue;
        };
        match key.as_str() {
            "queues" => {
                for (name, v) in entries {
                    let at = format!("queues.{name}");
                    if let Err(e) = validate_name(Kind::Queue, &name) {
                        err(at.clone(), e);
                    }
                    match v.try_into::<QueueSpec>() {
                        Ok(spec) => {
                            for FieldError { field, message } in spec.validate(&name) {
                                err(format!("{at}.{field}"), message);
                            }
                            cfg.queues.insert(name, spec);
                        }
                        Err(e) => err(at, e.message().to_string()),
                    }
                }
            }
            "streams" => {
                for (name, v) in entries {
                    let at = format!("streams.{name}");
                    if let Err(e) = validate_name(Kind::Stream, &name) {
                        err(at.clone(), e);
                    }
                    match v.try_into::<StreamSpec>() {
                        Ok(spec) => {
                            for FieldError { field, message } in spec.validate() {
                                err(format!("{at}.{field}"), message);
                            }
                            cfg.streams.insert(name, spec);
                        }
                        Err(e) => err(at, e.message().to_string()),
                    }
                }
            }
            "functions" => {
                for (name, v) in entries {
                    let at = format!("functions.{name}");
                    if let Err(e) = validate_name(Kind::Function, &name) {
                        err(at.clone(), e);
                    }
                    match v.try_into::<FunctionSpec>() {
                        Ok(mut spec) => {
                            // A module path is relative to the config file, so a config and
                            // its components can move together.
                            let module = Path::new(&spec.module);
                            if spec.module.ends_with(".wasm") && module.is_relative() {
                                let base = file.parent().unwrap_or(Path::new("."));
                                spec.module = base.join(module).to_string_lossy().into_owned();
                            }
                            for FieldError { field, message } in spec.validate() {
                                err(format!("{at}.{field}"), message);
                            }
                            cfg.functions.insert(name, spec);
                        }
                        Err(e) => err(at, e.message().to_string()),
                    }
                }
            }
            "topics" => {
                for (name, v) in entries {
                    let at = format!("topics.{name}");
                    if let Err(e) = validate_name(Kind::Topic, &name) {
                        err(at.clone(), e);
                    }
                    // Subscriptions are read apart from the topic's own keys, so a
                    // mistake in one is reported without hiding mistakes in the other.
                    let mut v = v;
                    let subscriptions = match v.as_table_mut().map(|t| t.remove("subscriptions")) {
                        Some(Some(toml::Value::Table(subs))) => subs,
                        Some(Some(_)) => {
                            err(format!("{at}.subscriptions"), "expected a table".into());
                            toml::Table::new()
                        }
                        _ => toml::Table::new(),
                    };
                    match v.try_into::<TopicEntry>() {
                        Ok(entry) => {
                            let schema = match entry.schema.map(JsonOrText::into_json).transpose() {
                                Ok(s) => s,
                                Err(e) => {
                                    err(format!("{at}.schema"), e);
                                    None
                                }
                            };
                            let spec = TopicSpec {
                                fifo: entry.fifo,
                                schema,
                                content_based_dedup: entry.content_based_dedup,
                                max_message_bytes: entry.max_message_bytes,
                                display_name: entry.display_name,
                                tags: entry.tags,
                            };
                            for FieldError { field, message } in spec.validate(&name) {
                                err(format!("{at}.{field}"), message);
                            }
                            cfg.topics.insert(name.clone(), spec);
                        }
                        Err(e) => err(at.clone(), e.message().to_string()),
                    }
                    for (sub, v) in subscriptions {
                        let sat = format!("{at}.subscriptions.{sub}");
                        if let Err(e) = validate_name(Kind::Subscription, &sub) {
                            err(sat.clone(), e);
                        }
                        let se = match v.try_into::<SubscriptionEntry>() {
                            Ok(e) => e,
                            Err(e) => {
                                err(sat, e.message().to_string());
                                continue;
                            }
                        };
                        let filter_policy =
                            match se.filter_policy.map(JsonOrText::into_json).transpose() {
                                Ok(p) => p,
                                Err(e) => {
                                    err(format!("{sat}.filter_policy"), e);
                                    None
                                }
                            };
                        let spec = SubscriptionSpec {
                            endpoint: se.endpoint,
                            filter_policy,
                            filter_policy_scope: se.filter_policy_scope,
                            raw_message_delivery: se.raw_message_delivery,
                            notification: se.notification,
                            dead_letter_queue: se.dead_letter_queue,
                            delivery_policy: se.delivery_policy,
                        };
                        for FieldError { field, message } in spec.validate() {
                            err(format!("{sat}.{field}"), message);
                        }
                        cfg.subscriptions.insert((name.clone(), sub), spec);
                    }
                }
            }
            _ => err(
                key,
                "unknown section; expected [queues.NAME], [streams.NAME], [functions.NAME] or [topics.NAME]".into(),
            ),
        }
    }
    // References, checked once every entry is known.
    let queue_known = |q: &str| cfg.queues.contains_key(q) || existing.queues.contains(q);
    let topic_known = |t: &str| cfg.topics.contains_key(t) || existing.topics.contains(t);
    let stream_known = |s: &str| cfg.streams.contains_key(s) || existing.streams.contains(s);
    let function_known = |f: &str| cfg.functions.contains_key(f) || existing.functions.contains(f);
    for (name, spec) in &cfg.functions {
        for (i, src) in spec.sources.iter().enumerate() {
            match src {
                SourceSpec::Queue { queue, .. } if !queue_known(queue) => err(
                    format!("functions.{name}.sources[{i}].queue"),
                    format!("queue {queue:?} is not declared"),
                ),
                SourceSpec::Stream { stream, .. } if !stream_known(stream) => err(
                    format!("functions.{name}.sources[{i}].stream"),
                    format!("stream {stream:?} is not declared"),
                ),
                SourceSpec::Stream {
                    on_failure: Some(Destination::Queue { queue }),
                    ..
                } if !queue_known(queue) => err(
                    format!("functions.{name}.sources[{i}].on_failure.queue"),
                    format!("queue {queue:?} is not declared"),
                ),
                SourceSpec::Stream {
                    on_failure: Some(Destination::Topic { topic }),
                    ..
                } if !topic_known(topic) => err(
                    format!("functions.{name}.sources[{i}].on_failure.topic"),
                    format!("topic {topic:?} is not declared"),
                ),
                _ => {}
            }
        }
    }
    for (name, spec) in &cfg.queues {
        if let Some(rp) = &spec.redrive_policy
            && !queue_known(&rp.dead_letter_queue)
        {
            err(
                format!("queues.{name}.redrive_policy.dead_letter_queue"),
                format!("queue {:?} is not declared", rp.dead_letter_queue),
            );
        }
    }
    for ((topic, sub), spec) in &cfg.subscriptions {
        match &spec.endpoint {
            Endpoint::Queue(q) if !queue_known(q) => err(
                format!("topics.{topic}.subscriptions.{sub}.endpoint.queue"),
                format!("queue {q:?} is not declared"),
            ),
            Endpoint::Stream { stream, .. } if !stream_known(stream) => err(
                format!("topics.{topic}.subscriptions.{sub}.endpoint.stream"),
                format!("stream {stream:?} is not declared"),
            ),
            Endpoint::Function(f) if !function_known(f) => err(
                format!("topics.{topic}.subscriptions.{sub}.endpoint.function"),
                format!("function {f:?} is not declared"),
            ),
            _ => {}
        }
        if let Some(q) = &spec.dead_letter_queue
            && !queue_known(q)
        {
            err(
                format!("topics.{topic}.subscriptions.{sub}.dead_letter_queue"),
                format!("queue {q:?} is not declared"),
            );
        }
    }
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(errors)
    }
}

impl ValidConfig {
    /// Creates or updates every resource; resources not in the file are left alone.
    pub async fn apply(self, control: &Control) -> Result<(), OpError> {
        // Dead-letter queues first, so redrive policies refer to queues that exist.
        let (dlq_users, plain): (Vec<_>, Vec<_>) = self
            .queues
            .into_iter()
            .partition(|(_, s)| s.redrive_policy.is_some());
        for (name, spec) in plain.into_iter().chain(dlq_users) {
            control.put_queue(&name, spec).await?;
        }
        for (name, spec) in self.streams {
            control.put_stream(&name, spec).await?;
        }
        for (name, spec) in self.functions {
            // Only changes take effect. Components compile in the background, so the
            // server listens at once; one that does not compile leaves its function
            // `failed` rather than stopping the server.
            if control.function_spec(&name).as_ref() != Some(&spec) {
                control.put_function_in_background(&name, spec).await?;
            }
        }
        for (name, spec) in self.topics {
            control.put_topic(&name, spec).await?;
        }
        for ((topic, name), spec) in self.subscriptions {
            control.put_subscription(&topic, &name, spec).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<ValidConfig, Vec<String>> {
        parse(Path::new("sy.toml"), text, &Existing::default())
            .map_err(|es| es.iter().map(ToString::to_string).collect())
    }

    #[test]
    fn a_valid_file_declares_queues_topics_and_subscriptions() {
        let cfg = parse_str(
            r#"
            [queues.email]
            visibility_timeout_s = 10
            [queues.dlq]
            [queues.work]
            redrive_policy = { dead_letter_queue = "dlq", max_receive_count = 3 }
            [topics.orders]
            schema = '{"type": "object"}'
            [topics.orders.subscriptions.email]
            endpoint = { queue = "email" }
            raw_message_delivery = true
            "#,
        )
        .unwrap();
        assert_eq!(cfg.queues["email"].visibility_timeout_s, 10);
        assert!(cfg.topics["orders"].schema.is_some());
        assert!(cfg.subscriptions[&("orders".into(), "email".into())].raw_message_delivery);
    }

    #[test]
    fn every_error_is_listed_with_file_and_key() {
        let errs = parse_str(
            r#"
            [queues.a]
            visiblity_timeout_s = 10
            [queues.b]
            redrive_policy = { dead_letter_queue = "nope", max_receive_count = 3 }
            [topics.t.subscriptions.s]
            endpoint = { queue = "missing" }
            [extra]
            x = 1
            "#,
        )
        .unwrap_err();
        assert_eq!(errs.len(), 4, "{errs:#?}");
        assert!(
            errs.iter()
                .any(|e| e.starts_with("sy.toml: queues.a: unknown field `visiblity_timeout_s`")),
            "{errs:#?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("queues.b.redrive_policy.dead_letter_queue"))
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("topics.t.subscriptions.s.endpoint.queue"))
        );
        assert!(errs.iter().any(|e| e.contains("extra: unknown section")));
    }

    #[test]
    fn a_stream_source_s_on_failure_destination_must_be_declared() {
        let source = |to: &str| {
            format!(
                r#"
                [streams.s]
                [topics.gone]
                [queues.failed]
                [functions.f]
                module = "f.wasm"
                sources = [{{ stream = "s", group = "g", on_failure = {to} }}]
                "#
            )
        };
        for to in [r#"{ queue = "failed" }"#, r#"{ topic = "gone" }"#] {
            parse_str(&source(to)).unwrap_or_else(|e| panic!("{to}: {e:#?}"));
        }
        for (to, key) in [
            (
                r#"{ queue = "nope" }"#,
                "functions.f.sources[0].on_failure.queue",
            ),
            (
                r#"{ topic = "nope" }"#,
                "functions.f.sources[0].on_failure.topic",
            ),
        ] {
            let errs = parse_str(&source(to)).unwrap_err();
            assert!(errs.iter().any(|e| e.contains(key)), "{to}: {errs:#?}");
        }
    }
}

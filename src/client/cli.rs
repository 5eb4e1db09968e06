//! The client subcommands of the `switchyard` binary: `publish`, `send`, `receive`,
//! `put-records` and `consume` against a running server.
//!
//! `main` flattens [`ClientCommand`] into its own subcommands and hands a parsed command to
//! [`run`]. Output is made for scripts: one JSON object per line on stdout, errors on stderr
//! as `error: <title>: <detail>`. Exit codes: 0 success, 1 the server refused or could not
//! be reached, 2 bad input (clap's own usage errors also exit 2).

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

use super::{
    Client, ClientError, MAX_PUT_RECORDS, MAX_READ_RECORDS, MAX_RECEIVE_MESSAGES, MAX_WAIT_S,
    StreamConsumer, Tailed,
};
use crate::wire::{
    BatchResult, GroupSpec, Position, PublishRequest, PutRecord, ReceiveRequest, ReceivedMessage,
    SendRequest, SnsAttribute, StartPosition, StreamRecord,
};

/// Where the client subcommands look for a server unless told otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8088";

/// Lines of `--lines` input sent per batch request: small enough that a slow producer's
/// lines still go out promptly, large enough to cut request overhead tenfold.
const LINES_PER_REQUEST: usize = 10;

/// Exit code when the server refused a request or could not be reached.
const EXIT_FAILED: u8 = 1;
/// Exit code for bad input (same as clap's usage errors).
const EXIT_USAGE: u8 = 2;

/// Client subcommands; `main` flattens these into the binary's subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Publish events to a topic; prints {"message_id":…} per event.
    Publish(PublishArgs),
    /// Send messages straight to a queue; prints {"message_id":…} per message.
    Send(SendArgs),
    /// Receive messages from a queue; prints one JSON object per message.
    Receive(ReceiveArgs),
    /// Put records into a stream; prints {"shard_id":…,"sequence":…} per record.
    PutRecords(PutRecordsArgs),
    /// Consume a stream as a member of a consumer group; prints one JSON object per record
    /// and checkpoints each shard once its records are printed.
    Consume(ConsumeArgs),
    /// Follow a topic's events live (one JSON object per event, with the subscriptions it
    /// was delivered to), or every shard of a stream from a position without a consumer
    /// group (one JSON object per record; nothing is checkpointed).
    Tail(TailArgs),
}

/// `switchyard tail NAME [--topic | --stream] [--count N] [--filter-policy JSON]
/// [--from POSITION] [--no-follow]`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// The topic or stream to follow.
    pub name: String,
    /// NAME is a topic (needed only when a stream has the same name).
    #[arg(long, conflicts_with = "stream")]
    pub topic: bool,
    /// NAME is a stream (needed only when a topic has the same name).
    #[arg(long)]
    pub stream: bool,
    /// Stop after printing this many events or records.
    #[arg(long)]
    pub count: Option<u64>,
    /// A topic: only the events this SNS filter policy (JSON) matches.
    #[arg(long, conflicts_with_all = ["from", "no_follow"])]
    pub filter_policy: Option<String>,
    /// A topic: what the filter policy applies to, `attributes` (default) or `body`.
    #[arg(long, requires = "filter_policy")]
    pub filter_policy_scope: Option<String>,
    /// A stream: where to start in every shard, trim_horizon, latest (default) or
    /// at_timestamp:MS.
    #[arg(long)]
    pub from: Option<Position>,
    /// A stream: stop at the end of every shard instead of waiting for new records.
    #[arg(long)]
    pub no_follow: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// How long `tail` waits before reading shards that were at their end again.
const TAIL_IDLE: std::time::Duration = std::time::Duration::from_millis(200);
/// Records asked for per shard read.
const TAIL_PAGE: u32 = 1000;

/// Runs a client subcommand to completion.
///
/// Server refusals and unreachable servers are reported on stderr and turned into exit
/// codes; `Err` is left for failures of the process itself (stdout closed with an error).
pub async fn run(command: ClientCommand) -> anyhow::Result<ExitCode> {
    match command {
        ClientCommand::Publish(args) => publish(args).await,
        ClientCommand::Send(args) => send(args).await,
        ClientCommand::Receive(args) => receive(args).await,
        ClientCommand::PutRecords(args) => put_records(args).await,
        ClientCommand::Consume(args) => consume(args).await,
        ClientCommand::Tail(args) => tail(args).await,
    }
}

async fn tail(args: TailArgs) -> anyhow::Result<ExitCode> {
    let client = match args.connect.client() {
        Ok(client) => client,
        Err(error) => return Ok(usage_error(&error.to_string())),
    };
    let is_topic = match (args.topic, args.stream) {
        (true, _) => true,
        (_, true) => false,
        _ => {
            let (topic, stream) =
                tokio::join!(client.get_topic(&args.name), client.get_stream(&args.name));
            match (exists(topic), exists(stream)) {
                (Err(error), _) | (_, Err(error)) => return Ok(failed(&error)),
                (Ok(true), Ok(true)) => {
                    return Ok(usage_error(&format!(
                        "both a topic and a stream are named {:?}: say --topic or --stream",
                        args.name
                    )));
                }
                (Ok(false), Ok(false)) => {
                    return Ok(usage_error(&format!(
                        "there is no topic or stream named {:?}",
                        args.name
                    )));
                }
                (Ok(topic), Ok(_)) => topic,
            }
        }
    };
    if is_topic {
        tail_topic(&client, args).await
    } else if args.filter_policy.is_some() {
        Ok(usage_error(
            "--filter-policy applies to a topic's events, not to a stream's records",
        ))
    } else {
        tail_stream(&client, args).await
    }
}

/// Whether a `GET` found its resource: a 404 is `false`, any other refusal an error.
fn exists<T>(got: Result<T, ClientError>) -> Result<bool, ClientError> {
    match got {
        Ok(_) => Ok(true),
        Err(ClientError::Api(p)) if p.status == 404 => Ok(false),
        Err(error) => Err(error),
    }
}

/// Prints a topic's events as they are published.
async fn tail_topic(client: &Client, args: TailArgs) -> anyhow::Result<ExitCode> {
    if args.from.is_some() || args.no_follow {
        return Ok(usage_error(
            "--from and --no-follow apply to a stream: a topic's tail starts now and follows",
        ));
    }
    let policy = match args.filter_policy.as_deref().map(serde_json::from_str) {
        None => None,
        Some(Ok(policy)) => Some(policy),
        Some(Err(e)) => return Ok(usage_error(&format!("--filter-policy is not JSON: {e}"))),
    };
    let scope = match args.filter_policy_scope.as_deref() {
        None => None,
        Some("attributes" | "MessageAttributes") => Some("MessageAttributes"),
        Some("body" | "MessageBody") => Some("MessageBody"),
        Some(other) => {
            return Ok(usage_error(&format!(
                "--filter-policy-scope {other:?}: use attributes or body"
            )));
        }
    };
    let mut tail = match client.tail_topic(&args.name, policy.as_ref(), scope).await {
        Ok(tail) => tail,
        Err(error) => return Ok(failed(&error)),
    };
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0_u64;
    let mut out = io::stdout();
    while args.count.is_none_or(|c| printed < c) {
        let next = tokio::select! {
            next = tail.next() => next,
            _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
        };
        match next {
            Ok(Some(Tailed::Event(event))) => {
                if let Some(code) = print_line(&mut out.lock(), &event)? {
                    return Ok(code);
                }
                printed += 1;
            }
            Ok(Some(Tailed::Dropped(n))) => {
                eprintln!("warning: {n} events were dropped: this tail reads too slowly");
            }
            Ok(None) => return Ok(ExitCode::SUCCESS),
            Err(error) => return Ok(failed(&error)),
        }
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints a stream's records from a position in every shard.
async fn tail_stream(client: &Client, args: TailArgs) -> anyhow::Result<ExitCode> {
    let from = args.from.unwrap_or(Position::Latest);
    let shards = match client.list_shards(&args.name).await {
        Ok(shards) => shards,
        Err(error) => return Ok(failed(&error)),
    };
    let mut positions: Vec<(String, Position)> =
        shards.into_iter().map(|s| (s.shard_id, from)).collect();
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0_u64;
    loop {
        let mut any = false;
        for (shard, pos) in positions.iter_mut() {
            let page = tokio::select! {
                page = client.read_shard(&args.name, shard, *pos, TAIL_PAGE) => page,
                _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
            };
            let page = match page {
                Ok(page) => page,
                Err(error) => return Ok(failed(&error)),
            };
            let wanted = args.count.map_or(page.records.len(), |c| {
                (c - printed).min(page.records.len() as u64) as usize
            });
            let (written, stop) = print_records(&page.records[..wanted])?;
            if let Some(code) = stop {
                return Ok(code);
            }
            printed += written as u64;
            any |= written > 0;
            if let Some(next) = page.next {
                *pos = next;
            }
            if args.count.is_some_and(|c| printed >= c) {
                return Ok(ExitCode::SUCCESS);
            }
        }
        if !any {
            if args.no_follow {
                return Ok(ExitCode::SUCCESS);
            }
            tokio::select! {
                _ = tokio::time::sleep(TAIL_IDLE) => {}
                _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
            }
        }
    }
}

/// Which server to talk to.
#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    /// Base URL of the Switchyard server.
    #[arg(long, env = "SWITCHYARD_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

impl ConnectArgs {
    pub(crate) fn client(&self) -> Result<Client, ClientError> {
        let client = Client::new(&self.url)?;
        Ok(match &self.token {
            Some(token) => client.with_token(token),
            None => client,
        })
    }
}

/// Where the message(s) come from: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct MessageInput {
    /// The message, as JSON (a bare word must be quoted: '"hello"').
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub message: Option<Value>,
    /// Read one JSON message from FILE ('-' for stdin).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Read one JSON message per line from stdin; blank lines are skipped.
    #[arg(long)]
    pub lines: bool,
}

/// A `--attr` argument, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct AttributeArg {
    /// Attribute name.
    pub name: String,
    /// Its value in the request's form: a string, a JSON array, or the SNS form.
    pub value: Value,
}

/// `publish TOPIC …`
#[derive(Debug, Clone, Args)]
pub struct PublishArgs {
    /// Topic to publish to.
    pub topic: String,
    #[command(flatten)]
    pub input: MessageInput,
    /// Message attribute; TYPE is String (default), Number, String.Array (a JSON array) or
    /// Binary (base64). Repeat for several.
    #[arg(long = "attr", value_name = "NAME[:TYPE]=VALUE", value_parser = parse_attribute)]
    pub attributes: Vec<AttributeArg>,
    /// FIFO topics: the message group.
    #[arg(long)]
    pub group_id: Option<String>,
    /// FIFO topics: the deduplication id (not with --lines: every line would share it).
    #[arg(long, conflicts_with = "lines")]
    pub dedup_id: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `send QUEUE …`
#[derive(Debug, Clone, Args)]
pub struct SendArgs {
    /// Queue to send to.
    pub queue: String,
    #[command(flatten)]
    pub input: MessageInput,
    /// Message attribute; TYPE is String (default), Number, String.Array (a JSON array) or
    /// Binary (base64). Repeat for several.
    #[arg(long = "attr", value_name = "NAME[:TYPE]=VALUE", value_parser = parse_attribute)]
    pub attributes: Vec<AttributeArg>,
    /// Seconds before the message becomes visible (0..=900); default: the queue's delay.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=900))]
    pub delay_s: Option<u32>,
    /// FIFO queues: the message group.
    #[arg(long)]
    pub group_id: Option<String>,
    /// FIFO queues: the deduplication id (not with --lines: every line would share it).
    #[arg(long, conflicts_with = "lines")]
    pub dedup_id: Option<String>,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `receive QUEUE …`
#[derive(Debug, Clone, Args)]
pub struct ReceiveArgs {
    /// Queue to receive from.
    pub queue: String,
    /// Most messages per receive (1..=10).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_RECEIVE_MESSAGES)))]
    pub max: u32,
    /// Seconds to wait for a first message (0..=20); default 0, or 20 with --follow.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_WAIT_S)))]
    pub wait_s: Option<u32>,
    /// Seconds the received messages stay hidden from other receivers; default: the queue's.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=43_200))]
    pub visibility_timeout_s: Option<u32>,
    /// Delete each message once it has been printed.
    #[arg(long)]
    pub ack: bool,
    /// Keep receiving until interrupted (ctrl-c).
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// How each record's partition key is chosen: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct KeyInput {
    /// The partition key of every record.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Take each record's partition key from its data at this JSON pointer (a string or
    /// number), e.g. /customer.
    #[arg(long, value_name = "POINTER", value_parser = parse_pointer)]
    pub key_pointer: Option<String>,
}

/// Where the record(s) come from: exactly one of these.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct RecordInput {
    /// The record's data, as JSON (a bare word must be quoted: '"hello"').
    #[arg(long, value_name = "JSON", value_parser = parse_json)]
    pub data: Option<Value>,
    /// Read one JSON record per line from stdin; blank lines are skipped.
    #[arg(long)]
    pub lines: bool,
}

/// `put-records STREAM …`
#[derive(Debug, Clone, Args)]
pub struct PutRecordsArgs {
    /// Stream to put records into.
    pub stream: String,
    #[command(flatten)]
    pub key: KeyInput,
    #[command(flatten)]
    pub input: RecordInput,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `consume STREAM …`
#[derive(Debug, Clone, Args)]
pub struct ConsumeArgs {
    /// Stream to consume.
    pub stream: String,
    /// Consumer group; members of one group share the shards, each group reads everything.
    #[arg(long)]
    pub group: String,
    /// This consumer's name in the group. Reusing a name resumes its leases.
    #[arg(long)]
    pub member: String,
    /// Most records per poll (1..=10000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_READ_RECORDS)))]
    pub max: u32,
    /// Seconds a poll waits for records (0..=20); default 0, or 20 with --follow.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=i64::from(MAX_WAIT_S)))]
    pub wait_s: Option<u32>,
    /// A new group starts at the oldest retained record (the default).
    #[arg(long, conflicts_with = "latest")]
    pub from_start: bool,
    /// A new group starts after the newest record: only records put from now on.
    #[arg(long)]
    pub latest: bool,
    /// A new group's lease timeout in seconds (1..=300; default 10): how long after its last
    /// poll a member's shards pass to the others.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=300))]
    pub lease_timeout_s: Option<u64>,
    /// Print without checkpointing: the group will deliver these records again.
    #[arg(long)]
    pub no_checkpoint: bool,
    /// Stop after this many records.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: Option<u64>,
    /// Keep polling until interrupted (ctrl-c) or --count is reached; without it, stop at
    /// the first poll that returns nothing.
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub connect: ConnectArgs,
}

impl ConsumeArgs {
    /// The group to create if it does not exist yet; `None` leaves that to the first poll,
    /// which creates it with the server's defaults.
    pub fn new_group_spec(&self) -> Option<GroupSpec> {
        if !(self.from_start || self.latest || self.lease_timeout_s.is_some()) {
            return None;
        }
        let start = if self.latest {
            StartPosition::Latest
        } else {
            StartPosition::TrimHorizon
        };
        let spec = GroupSpec::new(start);
        Some(match self.lease_timeout_s {
            Some(seconds) => spec.lease_timeout_s(seconds),
            None => spec,
        })
    }

    /// Seconds each poll waits.
    pub fn poll_wait_s(&self) -> u32 {
        self.wait_s
            .unwrap_or(if self.follow { MAX_WAIT_S } else { 0 })
    }
}

/// Parses a `--key-pointer` value: empty (the whole data) or starting with '/'.
fn parse_pointer(text: &str) -> Result<String, String> {
    if text.is_empty() || text.starts_with('/') {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?} is not a JSON pointer (it must start with '/')"
        ))
    }
}

/// The partition key of a record with `data`.
fn partition_key(key: &KeyInput, data: &Value) -> Result<String, String> {
    if let Some(key) = &key.key {
        return Ok(key.clone());
    }
    let pointer = key.key_pointer.as_deref().unwrap_or_default();
    match data.pointer(pointer) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text.clone()),
        Some(Value::Number(number)) => Ok(number.to_string()),
        Some(other) => Err(format!(
            "the partition key at {pointer:?} must be a non-empty string or a number, got {other}"
        )),
        None => Err(format!(
            "the data has nothing at {pointer:?} for the partition key"
        )),
    }
}

/// Parses a `--message` value.
fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))
}

/// Parses `NAME=VALUE` (a String) or `NAME:TYPE=VALUE`.
pub fn parse_attribute(arg: &str) -> Result<AttributeArg, String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE or NAME:TYPE=VALUE, got {arg:?}"))?;
    // SNS attribute names have no ':', so the first one separates the type.
    let (name, data_type) = match key.split_once(':') {
        Some((name, data_type)) => (name, Some(data_type)),
        None => (key, None),
    };
    if name.is_empty() {
        return Err(format!("attribute name is empty in {arg:?}"));
    }
    let value = match data_type {
        None | Some("String") => Value::String(value.to_owned()),
        Some("Number") => {
            // Sent in SNS form to keep the number exactly as written ("1.50" stays "1.50").
            match serde_json::from_str::<Value>(value) {
                Ok(Value::Number(_)) => SnsAttribute::number(value).into(),
                _ => return Err(format!("attribute {name}: {value:?} is not a number")),
            }
        }
        Some("String.Array") => match serde_json::from_str::<Value>(value) {
            Ok(Value::Array(items))
                if items
                    .iter()
                    .all(|item| item.is_string() || item.is_number()) =>
            {
                Value::Array(items)
            }
            _ => {
                return Err(format!(
                    "attribute {name}: String.Array needs a JSON array of strings and numbers, got {value:?}"
                ));
            }
        },
        Some("Binary") => {
            if !is_base64(value) {
                return Err(format!(
                    "attribute {name}: Binary needs base64, got {value:?}"
                ));
            }
            SnsAttribute {
                data_type: "Binary".to_owned(),
                value: value.to_owned(),
            }
            .into()
        }
        Some(other) => {
            return Err(format!(
                "attribute {name}: unknown type {other:?} (expected String, Number, String.Array or Binary)"
            ));
        }
    };
    Ok(AttributeArg {
        name: name.to_owned(),
        value,
    })
}

/// Standard base64 with padding, as SNS expects for Binary attributes.
fn is_base64(text: &str) -> bool {
    let body = text.trim_end_matches('=');
    text.len().is_multiple_of(4)
        && text.len() - body.len() <= 2
        && body
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'+' || byte == b'/')
}

/// Collects `--attr` arguments into a request's `attributes`, refusing a name given twice;
/// `None` for none, so the request leaves the member out.
fn collect_attributes(args: &[AttributeArg]) -> Result<Option<Value>, String> {
    let mut attributes = Map::new();
    for arg in args {
        if attributes
            .insert(arg.name.clone(), arg.value.clone())
            .is_some()
        {
            return Err(format!("attribute {} is given more than once", arg.name));
        }
    }
    Ok((!attributes.is_empty()).then_some(Value::Object(attributes)))
}

/// The single message of `--message` or `--file`, or `None` for `--lines`.
async fn single_message(input: &MessageInput) -> Result<Option<Value>, String> {
    if let Some(message) = &input.message {
        return Ok(Some(message.clone()));
    }
    let Some(path) = &input.file else {
        return Ok(None);
    };
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        tokio::io::stdin()
            .read_to_string(&mut text)
            .await
            .map_err(|error| format!("cannot read stdin: {error}"))?;
        text
    } else {
        tokio::fs::read_to_string(path)
            .await
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))
}

/// What publishing or sending does with each message: the part that differs between
/// `publish` and `send`.
trait Producer {
    type Item: serde::Serialize;
    /// The request for `message`, with `id` when it is a batch entry.
    fn item(&self, message: Value, id: Option<String>) -> Self::Item;
    async fn one(&self, item: &Self::Item) -> Result<String, ClientError>;
    async fn batch(&self, entries: &[Self::Item]) -> Result<BatchResult, ClientError>;
}

struct TopicProducer {
    client: Client,
    topic: String,
    attributes: Option<Value>,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

impl Producer for TopicProducer {
    type Item = PublishRequest;
    fn item(&self, message: Value, id: Option<String>) -> PublishRequest {
        PublishRequest {
            attributes: self.attributes.clone(),
            group_id: self.group_id.clone(),
            dedup_id: self.dedup_id.clone(),
            id,
            ..PublishRequest::new(message)
        }
    }
    async fn one(&self, item: &PublishRequest) -> Result<String, ClientError> {
        self.client.publish(&self.topic, item).await
    }
    async fn batch(&self, entries: &[PublishRequest]) -> Result<BatchResult, ClientError> {
        self.client.publish_batch(&self.topic, entries).await
    }
}

struct QueueProducer {
    client: Client,
    queue: String,
    attributes: Option<Value>,
    delay_s: Option<u64>,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

impl Producer for QueueProducer {
    type Item = SendRequest;
    fn item(&self, message: Value, id: Option<String>) -> SendRequest {
        SendRequest {
            attributes: self.attributes.clone(),
            delay_s: self.delay_s,
            group_id: self.group_id.clone(),
            dedup_id: self.dedup_id.clone(),
            id,
            ..SendRequest::new(message)
        }
    }
    async fn one(&self, item: &SendRequest) -> Result<String, ClientError> {
        self.client.send(&self.queue, item).await
    }
    async fn batch(&self, entries: &[SendRequest]) -> Result<BatchResult, ClientError> {
        self.client.send_batch(&self.queue, entries).await
    }
}

async fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let attributes = match collect_attributes(&args.attributes) {
        Ok(attributes) => attributes,
        Err(message) => return Ok(usage_error(&message)),
    };
    let client = match args.connect.client() {
        Ok(client) => client,
        Err(error) => return Ok(usage_error(&error.to_string())),
    };
    let producer = TopicProducer {
        client,
        topic: args.topic,
        attributes,
        group_id: args.group_id,
        dedup_id: args.dedup_id,
    };
    produce(&producer, &args.input).await
}

async fn send(args: SendArgs) -> anyhow::Result<ExitCode> {
    let attributes = match collect_attributes(&args.attributes) {
        Ok(attributes) => attributes,
        Err(message) => return Ok(usage_error(&message)),
    };
    let client = match args.connect.client() {
        Ok(client) => client,
        Err(error) => return Ok(usage_error(&error.to_string())),
    };
    let producer = QueueProducer {
        client,
        queue: args.queue,
        attributes,
        delay_s: args.delay_s.map(u64::from),
        group_id: args.group_id,
        dedup_id: args.dedup_id,
    };
    produce(&producer, &args.input).await
}

/// Publishes or sends the input: one message, or every line of stdin.
async fn produce<P: Producer>(producer: &P, input: &MessageInput) -> anyhow::Result<ExitCode> {
    let message = match single_message(input).await {
        Ok(message) => message,
        Err(message) => return Ok(usage_error(&message)),
    };
    let mut out = io::stdout().lock();
    match message {
        Some(message) => match producer.one(&producer.item(message, None)).await {
            Ok(message_id) => {
                let line = serde_json::json!({ "message_id": message_id });
                Ok(print_line(&mut out, &line)?.unwrap_or(ExitCode::SUCCESS))
            }
            Err(error) => Ok(failed(&error)),
        },
        None => {
            drop(out);
            produce_lines(producer, tokio::io::stdin()).await
        }
    }
}

/// Sends each JSON line of `input` in batches of up to [`LINES_PER_REQUEST`], printing
/// `{"line":N,"message_id":…}` per stored message. A batch goes out when it is full or
/// when no further input is buffered, so a slow producer's lines are not held back.
async fn produce_lines<P: Producer, R: AsyncRead + Unpin>(
    producer: &P,
    input: R,
) -> anyhow::Result<ExitCode> {
    let mut reader = BufReader::new(input);
    let mut batch: Vec<(u64, Value)> = Vec::with_capacity(LINES_PER_REQUEST);
    let mut line = String::new();
    let mut line_number = 0_u64;
    let mut outcome = LinesOutcome::default();
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .await
            .context("cannot read stdin")?;
        if read == 0 {
            break;
        }
        line_number += 1;
        let text = line.trim();
        if !text.is_empty() {
            match serde_json::from_str::<Value>(text) {
                Ok(message) => batch.push((line_number, message)),
                Err(error) => {
                    eprintln!("error: line {line_number}: not JSON: {error}");
                    outcome.bad_input = true;
                }
            }
        }
        let flush =
            batch.len() == LINES_PER_REQUEST || (!batch.is_empty() && reader.buffer().is_empty());
        if flush && let Some(code) = send_lines(producer, &mut batch, &mut outcome).await? {
            return Ok(code);
        }
    }
    if let Some(code) = send_lines(producer, &mut batch, &mut outcome).await? {
        return Ok(code);
    }
    Ok(outcome.exit_code())
}

#[derive(Default)]
struct LinesOutcome {
    /// Some line was not JSON.
    bad_input: bool,
    /// Some line was refused by the server.
    failed: bool,
}

impl LinesOutcome {
    fn exit_code(&self) -> ExitCode {
        if self.bad_input {
            ExitCode::from(EXIT_USAGE)
        } else if self.failed {
            ExitCode::from(EXIT_FAILED)
        } else {
            ExitCode::SUCCESS
        }
    }
}

/// Sends one batch of lines; `Some(code)` when the run must stop (request failed as a
/// whole, or stdout is gone).
async fn send_lines<P: Producer>(
    producer: &P,
    batch: &mut Vec<(u64, Value)>,
    outcome: &mut LinesOutcome,
) -> anyhow::Result<Option<ExitCode>> {
    if batch.is_empty() {
        return Ok(None);
    }
    let entries: Vec<P::Item> = batch
        .drain(..)
        .map(|(line, message)| producer.item(message, Some(line.to_string())))
        .collect();
    let result = match producer.batch(&entries).await {
        Ok(result) => result,
        Err(error) => return Ok(Some(failed(&error))),
    };
    let mut out = io::stdout().lock();
    for success in &result.successful {
        let line = serde_json::json!({
            "line": success.id.parse::<u64>().ok(),
            "message_id": success.message_id,
        });
        if let Some(code) = print_line(&mut out, &line)? {
            return Ok(Some(code));
        }
    }
    for failure in &result.failed {
        let title = reqwest::StatusCode::from_u16(failure.status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("Error");
        eprintln!("error: line {}: {title}: {}", failure.id, failure.detail);
        outcome.failed = true;
    }
    Ok(None)
}

async fn receive(args: ReceiveArgs) -> anyhow::Result<ExitCode> {
    let client = match args.connect.client() {
        Ok(client) => client,
        Err(error) => return Ok(usage_error(&error.to_string())),
    };
    let wait_s = args
        .wait_s
        .unwrap_or(if args.follow { MAX_WAIT_S } else { 0 });
    let request = ReceiveRequest {
        max_messages: Some(args.max as usize),
        wait_s: Some(u64::from(wait_s)),
        visibility_timeout_s: args.visibility_timeout_s.map(u64::from),
    };
    // One listener for the whole run: an interrupt while printing or acknowledging is then
    // seen at the next receive instead of being lost.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let received = tokio::select! {
            received = client.receive(&args.queue, &request) => received,
            _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
        };
        let messages = match received {
            Ok(messages) => messages,
            Err(error) => return Ok(failed(&error)),
        };
        if let Some(code) = print_messages(&messages)? {
            return Ok(code);
        }
        if args.ack && !messages.is_empty() {
            let receipts: Vec<String> = messages.into_iter().map(|m| m.receipt).collect();
            if let Err(error) = client.ack(&args.queue, &receipts).await {
                return Ok(failed(&error));
            }
        }
        if !args.follow {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

async fn put_records(args: PutRecordsArgs) -> anyhow::Result<ExitCode> {
    let client = match args.connect.client() {
        Ok(client) => client,
        Err(error) => return Ok(usage_error(&error.to_string())),
    };
    let Some(data) = args.input.data.clone() else {
        return put_record_lines(&client, &args, tokio::io::stdin()).await;
    };
    let record = match partition_key(&args.key, &data) {
        Ok(key) => PutRecord::new(key, data),
        Err(message) => return Ok(usage_error(&message)),
    };
    match client.put_records(&args.stream, &[record]).await {
        Ok(placed) => {
            let mut out = io::stdout().lock();
            for result in &placed {
                if let Some(code) = print_line(&mut out, result)? {
                    return Ok(code);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => Ok(failed(&error)),
    }
}

/// Puts each JSON line of `input` as a record, up to [`MAX_PUT_RECORDS`] per request,
/// printing `{"line":N,"shard_id":…,"sequence":…}` per stored record. A request goes out
/// when it is full or when no further input is buffered. A put is stored or refused as a
/// whole, so a refused request stops the run (the requests before it stay stored).
async fn put_record_lines<R: AsyncRead + Unpin>(
    client: &Client,
    args: &PutRecordsArgs,
    input: R,
) -> anyhow::Result<ExitCode> {
    let mut reader = BufReader::new(input);
    let mut lines: Vec<u64> = Vec::new();
    let mut records: Vec<PutRecord> = Vec::new();
    let mut line = String::new();
    let mut line_number = 0_u64;
    let mut bad_input = false;
    loop {
        line.clear();
        let read = reader
            .read_line(&mut line)
            .await
            .context("cannot read stdin")?;
        let at_end = read == 0;
        if !at_end {
            line_number += 1;
            let text = line.trim();
            if !text.is_empty() {
                let record = serde_json::from_str::<Value>(text)
                    .map_err(|error| format!("not JSON: {error}"))
                    .and_then(|data| {
                        partition_key(&args.key, &data).map(|key| PutRecord::new(key, data))
                    });
                match record {
                    Ok(record) => {
                        lines.push(line_number);
                        records.push(record);
                    }
                    Err(message) => {
                        eprintln!("error: line {line_number}: {message}");
                        bad_input = true;
                    }
                }
            }
        }
        let flush = records.len() == MAX_PUT_RECORDS
            || (!records.is_empty() && (at_end || reader.buffer().is_empty()));
        if flush {
            let placed = match client.put_records(&args.stream, &records).await {
                Ok(placed) => placed,
                Err(error) => return Ok(failed(&error)),
            };
            let mut out = io::stdout().lock();
            for (line, result) in lines.iter().zip(&placed) {
                let printed = serde_json::json!({
                    "line": line,
                    "shard_id": result.shard_id,
                    "sequence": result.sequence,
                });
                if let Some(code) = print_line(&mut out, &printed)? {
                    return Ok(code);
                }
            }
            lines.clear();
            records.clear();
        }
        if at_end {
            break;
        }
    }
    Ok(if bad_input {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    })
}

async fn consume(args: ConsumeArgs) -> anyhow::Result<ExitCode> {
    let client = match args.connect.client() {
        Ok(client) => client,
        Err(error) => return Ok(usage_error(&error.to_string())),
    };
    let consumer = StreamConsumer::new(client, &args.stream, &args.group, &args.member)
        .max_records(args.max)
        .wait_s(args.poll_wait_s());
    if let Some(spec) = args.new_group_spec()
        && let Err(error) = consumer.create_group(&spec).await
    {
        return Ok(failed(&error));
    }
    // One listener for the whole run: an interrupt while printing or checkpointing is then
    // seen at the next poll instead of being lost.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut printed = 0_u64;
    loop {
        let limit = match args.count {
            // Asking for no more than is still wanted: records returned to a member are not
            // returned to it again, so any surplus would be skipped until failover.
            Some(count) => u32::try_from(count - printed).unwrap_or(u32::MAX),
            None => u32::MAX,
        };
        let polled = tokio::select! {
            polled = consumer.next_batch_up_to(limit) => polled,
            _ = &mut interrupted => return Ok(ExitCode::SUCCESS),
        };
        let records = match polled {
            Ok(records) => records,
            Err(error) => return Ok(failed(&error)),
        };
        if records.is_empty() {
            if args.follow {
                continue;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let (written, stop) = print_records(&records)?;
        if !args.no_checkpoint && written > 0 {
            match consumer.checkpoint_batch(&records[..written]).await {
                Ok(outcome) => {
                    for (shard_id, sequence) in &outcome.lease_lost {
                        eprintln!(
                            "warning: lost the lease on {shard_id} before checkpointing sequence {sequence}; its new holder will deliver those records again"
                        );
                    }
                }
                Err(error) => return Ok(failed(&error)),
            }
        }
        if let Some(code) = stop {
            return Ok(code);
        }
        printed += written as u64;
        if args.count.is_some_and(|count| printed >= count) {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// Prints records as JSON lines; returns how many were written (and flushed) and, when
/// stdout was closed by the reader, the exit code to stop with.
fn print_records(records: &[StreamRecord]) -> anyhow::Result<(usize, Option<ExitCode>)> {
    let mut out = io::stdout().lock();
    for (written, record) in records.iter().enumerate() {
        if let Some(code) = print_line(&mut out, record)? {
            return Ok((written, Some(code)));
        }
    }
    Ok((records.len(), None))
}

fn print_messages(messages: &[ReceivedMessage]) -> anyhow::Result<Option<ExitCode>> {
    let mut out = io::stdout().lock();
    for message in messages {
        if let Some(code) = print_line(&mut out, message)? {
            return Ok(Some(code));
        }
    }
    Ok(None)
}

/// Writes one JSON line and flushes it (a consumer may be waiting on each line).
/// `Some(SUCCESS)` when stdout was closed by the reader (`| head`): nothing more to do.
fn print_line(
    out: &mut impl Write,
    value: &impl serde::Serialize,
) -> anyhow::Result<Option<ExitCode>> {
    let written = serde_json::to_writer(&mut *out, value)
        .map_err(io::Error::from)
        .and_then(|()| out.write_all(b"\n"))
        .and_then(|()| out.flush());
    match written {
        Ok(()) => Ok(None),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(Some(ExitCode::SUCCESS)),
        Err(error) => Err(error).context("cannot write to stdout"),
    }
}

fn failed(error: &ClientError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(EXIT_FAILED)
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(EXIT_USAGE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    /// Stands in for `main`'s parser.
    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ClientCommand,
    }

    fn parse(args: &[&str]) -> Result<ClientCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("switchyard").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn attribute_without_type_is_a_string() {
        let arg = parse_attribute("color=red=ish").unwrap();
        assert_eq!(arg.name, "color");
        assert_eq!(arg.value, json!("red=ish"));
    }

    #[test]
    fn number_attribute_keeps_its_spelling() {
        let arg = parse_attribute("price:Number=1.50").unwrap();
        assert_eq!(arg.value, Value::from(SnsAttribute::number("1.50")));
        assert!(parse_attribute("price:Number=cheap").is_err());
    }

    #[test]
    fn string_array_attribute_needs_a_json_array_of_scalars() {
        let arg = parse_attribute(r#"tags:String.Array=["a",1]"#).unwrap();
        assert_eq!(arg.value, json!(["a", 1]));
        assert!(parse_attribute(r#"tags:String.Array=["a",{"b":1}]"#).is_err());
        assert!(parse_attribute("tags:String.Array=a,b").is_err());
    }

    #[test]
    fn binary_attribute_needs_base64() {
        let arg = parse_attribute("blob:Binary=aGk=").unwrap();
        assert_eq!(arg.value, json!({"Type": "Binary", "Value": "aGk="}));
        assert!(parse_attribute("blob:Binary=not base64!").is_err());
    }

    #[test]
    fn malformed_attributes_are_refused_with_the_reason() {
        assert!(
            parse_attribute("novalue")
                .unwrap_err()
                .contains("NAME=VALUE")
        );
        assert!(parse_attribute("=x").unwrap_err().contains("empty"));
        assert!(
            parse_attribute("a:Bool=true")
                .unwrap_err()
                .contains("unknown type")
        );
    }

    #[test]
    fn attribute_given_twice_is_refused() {
        let args = [
            parse_attribute("a=1").unwrap(),
            parse_attribute("a=2").unwrap(),
        ];
        assert!(
            collect_attributes(&args)
                .unwrap_err()
                .contains("more than once")
        );
    }

    #[test]
    fn publish_parses_message_attributes_and_fifo_fields() {
        let command = parse(&[
            "publish",
            "orders.fifo",
            "--message",
            r#"{"id":1}"#,
            "--attr",
            "color=red",
            "--attr",
            "n:Number=3",
            "--group-id",
            "g1",
            "--dedup-id",
            "d1",
            "--url",
            "http://127.0.0.1:9999",
        ])
        .unwrap();
        let ClientCommand::Publish(args) = command else {
            panic!("expected publish, got {command:?}");
        };
        assert_eq!(args.topic, "orders.fifo");
        assert_eq!(args.input.message, Some(json!({"id": 1})));
        assert_eq!(args.attributes.len(), 2);
        assert_eq!(args.group_id.as_deref(), Some("g1"));
        assert_eq!(args.dedup_id.as_deref(), Some("d1"));
        assert_eq!(args.connect.url, "http://127.0.0.1:9999");
    }

    #[test]
    fn publish_needs_exactly_one_message_source() {
        assert!(parse(&["publish", "t"]).is_err());
        assert!(parse(&["publish", "t", "--message", "1", "--lines"]).is_err());
        assert!(parse(&["publish", "t", "--file", "f", "--message", "1"]).is_err());
        assert!(parse(&["publish", "t", "--lines"]).is_ok());
    }

    #[test]
    fn invalid_json_message_is_a_usage_error() {
        let error = parse(&["publish", "t", "--message", "{oops"]).unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }

    #[test]
    fn dedup_id_conflicts_with_lines() {
        assert!(parse(&["send", "q", "--lines", "--dedup-id", "d"]).is_err());
    }

    #[test]
    fn send_delay_is_bounded_like_the_queue_timer() {
        let ClientCommand::Send(args) =
            parse(&["send", "q", "--message", "1", "--delay-s", "900"]).unwrap()
        else {
            panic!("expected send");
        };
        assert_eq!(args.delay_s, Some(900));
        assert!(parse(&["send", "q", "--message", "1", "--delay-s", "901"]).is_err());
    }

    #[test]
    fn receive_defaults_to_one_message_without_waiting() {
        let ClientCommand::Receive(args) = parse(&["receive", "q"]).unwrap() else {
            panic!("expected receive");
        };
        assert_eq!(
            (args.max, args.wait_s, args.ack, args.follow),
            (1, None, false, false)
        );
        assert!(parse(&["receive", "q", "--max", "11"]).is_err());
        assert!(parse(&["receive", "q", "--max", "0"]).is_err());
        assert!(parse(&["receive", "q", "--wait-s", "21"]).is_err());
    }

    fn consume_args(args: &[&str]) -> Result<ConsumeArgs, clap::Error> {
        let mut all = vec!["consume"];
        all.extend_from_slice(args);
        match parse(&all)? {
            ClientCommand::Consume(args) => Ok(args),
            other => panic!("expected consume, got {other:?}"),
        }
    }

    #[test]
    fn consume_needs_a_group_and_a_member() {
        assert!(consume_args(&["s"]).is_err());
        assert!(consume_args(&["s", "--group", "g"]).is_err());
        assert!(consume_args(&["s", "--member", "m"]).is_err());
        let args = consume_args(&["s", "--group", "g", "--member", "m"]).unwrap();
        assert_eq!(
            (
                args.stream.as_str(),
                args.group.as_str(),
                args.member.as_str()
            ),
            ("s", "g", "m")
        );
    }

    #[test]
    fn consume_defaults_to_one_drain_without_waiting_and_with_checkpoints() {
        let args = consume_args(&["s", "--group", "g", "--member", "m"]).unwrap();
        assert_eq!(args.max, 100);
        assert_eq!(args.poll_wait_s(), 0);
        assert_eq!(
            (args.follow, args.no_checkpoint, args.count),
            (false, false, None)
        );
        assert_eq!(
            args.new_group_spec(),
            None,
            "the first poll creates the group"
        );
    }

    #[test]
    fn consume_follow_long_polls_unless_told_otherwise() {
        let args = consume_args(&["s", "--group", "g", "--member", "m", "--follow"]).unwrap();
        assert_eq!(args.poll_wait_s(), MAX_WAIT_S);
        let args = consume_args(&[
            "s", "--group", "g", "--member", "m", "--follow", "--wait-s", "3",
        ])
        .unwrap();
        assert_eq!(args.poll_wait_s(), 3);
    }

    #[test]
    fn consume_start_position_and_lease_timeout_shape_a_new_group() {
        let args = consume_args(&["s", "--group", "g", "--member", "m", "--latest"]).unwrap();
        assert_eq!(
            args.new_group_spec(),
            Some(GroupSpec::new(StartPosition::Latest))
        );
        let args = consume_args(&[
            "s",
            "--group",
            "g",
            "--member",
            "m",
            "--from-start",
            "--lease-timeout-s",
            "2",
        ])
        .unwrap();
        assert_eq!(
            args.new_group_spec(),
            Some(GroupSpec::new(StartPosition::TrimHorizon).lease_timeout_s(2))
        );
        assert!(
            consume_args(&[
                "s",
                "--group",
                "g",
                "--member",
                "m",
                "--latest",
                "--from-start"
            ])
            .is_err()
        );
    }

    #[test]
    fn consume_bounds_follow_the_server_limits() {
        let base = ["s", "--group", "g", "--member", "m"];
        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            consume_args(&all)
        };
        assert_eq!(with(&["--max", "10000"]).unwrap().max, 10_000);
        assert!(with(&["--max", "10001"]).is_err());
        assert!(with(&["--max", "0"]).is_err());
        assert!(with(&["--wait-s", "21"]).is_err());
        assert!(with(&["--count", "0"]).is_err());
        assert_eq!(with(&["--count", "5"]).unwrap().count, Some(5));
        assert!(with(&["--lease-timeout-s", "301"]).is_err());
        assert!(with(&["--no-checkpoint"]).unwrap().no_checkpoint);
    }

    #[test]
    fn put_records_needs_one_key_source_and_one_data_source() {
        assert!(parse(&["put-records", "s", "--data", "1"]).is_err());
        assert!(parse(&["put-records", "s", "--key", "k"]).is_err());
        assert!(parse(&["put-records", "s", "--key", "k", "--data", "1", "--lines"]).is_err());
        assert!(
            parse(&[
                "put-records",
                "s",
                "--key",
                "k",
                "--key-pointer",
                "/a",
                "--lines"
            ])
            .is_err()
        );
        assert!(parse(&["put-records", "s", "--key-pointer", "a", "--lines"]).is_err());
        let ClientCommand::PutRecords(args) =
            parse(&["put-records", "s", "--key", "k", "--data", r#"{"n":1}"#]).unwrap()
        else {
            panic!("expected put-records");
        };
        assert_eq!(args.input.data, Some(json!({"n": 1})));
        assert_eq!(args.key.key.as_deref(), Some("k"));
    }

    #[test]
    fn partition_key_comes_from_the_flag_or_the_data() {
        let fixed = KeyInput {
            key: Some("k".into()),
            key_pointer: None,
        };
        assert_eq!(partition_key(&fixed, &json!({})).unwrap(), "k");
        let pointer = KeyInput {
            key: None,
            key_pointer: Some("/customer".into()),
        };
        assert_eq!(
            partition_key(&pointer, &json!({"customer": "c1"})).unwrap(),
            "c1"
        );
        assert_eq!(
            partition_key(&pointer, &json!({"customer": 7})).unwrap(),
            "7"
        );
        assert!(
            partition_key(&pointer, &json!({}))
                .unwrap_err()
                .contains("nothing at")
        );
        assert!(partition_key(&pointer, &json!({"customer": ""})).is_err());
        assert!(partition_key(&pointer, &json!({"customer": [1]})).is_err());
    }

    #[test]
    fn base64_check_accepts_padding_and_refuses_other_characters() {
        assert!(is_base64(""));
        assert!(is_base64("aGk="));
        assert!(is_base64("aGVsbG8h"));
        assert!(!is_base64("aGk"));
        assert!(!is_base64("a==="));
        assert!(!is_base64("aG-k"));
    }
}

//! End-to-end load tool: starts the real `switchyard` binary (built with the bench profile)
//! on loopback and measures what a user of the HTTP API would see.
//!
//! Run: `cargo bench --bench load`. Every phase is bounded in time and count, and only
//! loopback addresses are used.
//!
//! | variable           | default   | meaning                                           |
//! |--------------------|-----------|---------------------------------------------------|
//! | `LOAD_SECONDS`     | 5         | length of each throughput phase                   |
//! | `LOAD_CONNECTIONS` | 64        | concurrent connections of the publish phase       |
//! | `LOAD_RATE`        | 5000      | events/s of the fixed-rate latency phase          |
//! | `LOAD_LATENCY_SECONDS` | 20    | length of the fixed-rate latency phase            |
//! | `LOAD_BACKLOG`     | 1000000   | 1 KiB messages backlogged for the RSS measurement |
//! | `LOAD_BACKLOG_MAX_SECONDS` | 600 | give up filling the backlog after this long    |
//! | `LOAD_SPAN_PAIRS`  | 3         | interleaved export-off/on pairs of phase (h)      |
//! | `LOAD_PHASES`      | abcdefgh  | the phases to run, by letter                      |
//! | `SWITCHYARD_BIN`   | (cargo's) | server binary to measure instead                  |
//!
//! Phases:
//! - (a) publish of 1 KiB events with one matching queue subscription from
//!   `LOAD_CONNECTIONS` connections, against a bare axum handler in this process that
//!   parses the same JSON and answers 202;
//! - (b) batch publish, 100 events per request;
//! - (c) receive 10 and ack them;
//! - (d) publish latency at a fixed rate, open loop (requests go out on schedule whatever
//!   the responses do, so a stall is not hidden), on a fresh server; each request is timed
//!   from when the pacer sends it, and how late the pacer was is reported beside it; then,
//!   for comparison, the disk alone: 1 KiB synced back to back for as long (a publish is
//!   answered after its sync, so a slow sync of the disk is a slow publish);
//! - (e) start to healthy, idle RSS, and RSS with a backlog on a fresh server: when filled,
//!   a few seconds later, and the peak;
//! - (g) the AWS protocols against `/v1` doing the same work on the same server: SQS
//!   SendMessage over the JSON protocol against `/v1` sends, SNS Publish over the query
//!   protocol against `/v1` publishes, 1 KiB each, `LOAD_CONNECTIONS` connections; and
//!   SQS ReceiveMessage (10) + DeleteMessageBatch against `/v1` receive (10) + ack, each
//!   from a backlog of its own of the same size, with the same consumers;
//! - (h) what exporting spans costs: publish and batch publish as in (a) and (b), on two
//!   fresh servers, one exporting its spans over OTLP to a receiver in this process and
//!   one not, in `LOAD_SPAN_PAIRS` pairs whose order alternates (off–on, on–off, …) so
//!   that a machine drifting during the run weighs on both sides alike;
//! - (f) start of the order fan-out example (`examples/order-fanout/`, three functions):
//!   to healthy and to ready (every component loaded), with a fresh data directory and
//!   compiled-component cache, and with a fresh data directory and a warm cache.
//!
//! The load generator runs on one thread so that the server gets the other core; the bare
//! handler gets its own two-thread runtime, as the server process would.

#[path = "common/mod.rs"]
mod common;
// Only `path` is used here; the tests use the rest.
#[allow(dead_code)]
#[path = "../tests/it/guests.rs"]
mod guests;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use switchyard::client::{Client, ClientError};
use switchyard::wire::{
    BatchResult, QueueSpec, ReceiveRequest, SendRequest, SubscriptionSpec, TopicSpec,
};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use common::{HealthPoll, Launch, Server, Table, env_var, ms, server_binary};

/// (f) The order example's start, to healthy and to ready: with a fresh compiled cache
/// every time, then with one warmed by a first start.
async fn example_starts(settings: &Settings, table: &mut Table) -> anyhow::Result<()> {
    // Builds the guests the example's config names.
    guests::path("email");
    let config: std::ffi::OsString = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/order-fanout/switchyard.toml"
    )
    .into();
    let warm_cache = tempfile::tempdir().context("create a cache dir")?;
    let with_cache = |cache: Option<&std::path::Path>| {
        let mut args = vec!["--config".into(), config.clone()];
        if let Some(cache) = cache {
            args.extend(["--compiled-cache".into(), cache.as_os_str().to_owned()]);
        }
        args
    };
    // Fills the warm cache.
    Server::start_with(
        &settings.binary,
        &LAUNCH,
        http_client(1)?,
        &with_cache(Some(warm_cache.path())),
    )
    .await?
    .ready_after(READY_TIMEOUT)
    .await?;
    for (label, cache) in [
        ("fresh compiled cache", None),
        ("warm compiled cache", Some(warm_cache.path())),
    ] {
        let mut healthy = Vec::with_capacity(EXAMPLE_START_SAMPLES);
        let mut ready = Vec::with_capacity(EXAMPLE_START_SAMPLES);
        for _ in 0..EXAMPLE_START_SAMPLES {
            let server = Server::start_with(
                &settings.binary,
                &LAUNCH,
                http_client(1)?,
                &with_cache(cache),
            )
            .await?;
            healthy.push(server.started_in);
            ready.push(server.ready_after(READY_TIMEOUT).await?);
        }
        healthy.sort();
        ready.sort();
        let median = EXAMPLE_START_SAMPLES / 2;
        table.row(
            format!("(f) order example, {label}: start to healthy / to ready"),
            format!(
                "{:.1} / {:.1} ms (medians of {EXAMPLE_START_SAMPLES})",
                ms(healthy[median]),
                ms(ready[median])
            ),
        );
    }
    Ok(())
}

/// Size of the `pad` string that makes each event about 1 KiB of JSON.
const EVENT_PAD: usize = 1_000;
/// Events per batch-publish request: the API's maximum.
const PUBLISH_BATCH: usize = 100;
/// Concurrent requests of the batch phases: enough to keep group commit busy.
const BATCH_CONNECTIONS: usize = 8;
/// Concurrent consumers of the receive phase.
const CONSUMERS: usize = 16;
/// Upper bound on requests in one throughput phase, whatever the time limit.
const MAX_REQUESTS_PER_PHASE: u64 = 5_000_000;
/// Most requests in flight in the fixed-rate phase; past that the server is overloaded and
/// waiting for a slot counts as latency.
const MAX_IN_FLIGHT: usize = 512;
/// Starts measured for the start-to-healthy time (the median is reported).
const START_SAMPLES: usize = 5;
/// Starts of the order example measured per cache state (the median is reported).
const EXAMPLE_START_SAMPLES: usize = 3;
/// Longest a start of the order example may take to be ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long after filling the backlog its RSS is read a second time.
const SETTLE: Duration = Duration::from_secs(5);
/// How the server is started: the start-to-healthy time is measured, so `/healthz` is
/// polled closely.
const LAUNCH: Launch = Launch {
    data_dir_prefix: "switchyard-load-",
    // Per-request logging would measure the logger.
    log_level: "warn",
    health_poll: HealthPoll::Ramp,
};

fn main() -> ExitCode {
    common::main("load", || run(Settings::from_env()))
}

/// What to run, from the environment.
struct Settings {
    seconds: Duration,
    connections: usize,
    rate: u64,
    latency_seconds: Duration,
    backlog: u64,
    backlog_max: Duration,
    span_pairs: usize,
    phases: String,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            seconds: Duration::from_secs_f64(env_var("LOAD_SECONDS", 5.0)),
            connections: env_var("LOAD_CONNECTIONS", 64),
            rate: env_var("LOAD_RATE", 5_000),
            latency_seconds: Duration::from_secs(env_var("LOAD_LATENCY_SECONDS", 20)),
            backlog: env_var("LOAD_BACKLOG", 1_000_000),
            backlog_max: Duration::from_secs(env_var("LOAD_BACKLOG_MAX_SECONDS", 600)),
            span_pairs: env_var("LOAD_SPAN_PAIRS", 3),
            phases: std::env::var("LOAD_PHASES").unwrap_or_else(|_| "abcdefgh".into()),
            binary: server_binary(),
        }
    }

    /// Whether any of `phases` (letters) is to run.
    fn runs(&self, phases: &str) -> bool {
        phases.chars().any(|p| self.phases.contains(p))
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut table = Table::default();
    eprintln!("load: server binary {}", settings.binary.display());

    if settings.runs("e") {
        starts_and_idle(&settings, &mut table).await?;
    }
    if settings.runs("f") {
        example_starts(&settings, &mut table).await?;
    }
    if settings.runs("abcg") {
        one_server(&settings, &mut table).await?;
    }
    if settings.runs("d") {
        latency(&settings, &mut table).await?;
    }
    if settings.runs("e") {
        backlog_rss(&settings, &mut table).await?;
    }
    if settings.runs("h") {
        span_export(&settings, &mut table).await?;
    }
    table.print("switchyard end-to-end load (loopback; the load generator shares the machine)");
    Ok(())
}

/// (e) Start to healthy and idle RSS, on fresh empty stores.
async fn starts_and_idle(settings: &Settings, table: &mut Table) -> anyhow::Result<()> {
    let mut starts = Vec::with_capacity(START_SAMPLES);
    let mut idle_rss = 0.0;
    for _ in 0..START_SAMPLES {
        let server = Server::start(&settings.binary, &LAUNCH, http_client(1)?).await?;
        starts.push(server.started_in);
        idle_rss = server.rss_mb()?;
    }
    starts.sort();
    let median = starts[starts.len() / 2];
    table.row(
        "(e) start to healthy, empty store".into(),
        format!(
            "{:.1} ms (median of {START_SAMPLES}; min {:.1}, max {:.1})",
            ms(median),
            ms(starts[0]),
            ms(starts[starts.len() - 1])
        ),
    );
    table.row("(e) idle RSS".into(), format!("{idle_rss:.1} MB"));
    Ok(())
}

/// (a), (b), (c) and (g), one after the other on one server.
async fn one_server(settings: &Settings, table: &mut Table) -> anyhow::Result<()> {
    let server = Server::start(&settings.binary, &LAUNCH, http_client(1)?).await?;
    let client = Client::with_http(&server.base_url, http_client(settings.connections)?)?;
    bench_topic(&client).await?;
    let event = Bytes::from(serde_json::to_vec(&publish_body(0))?);

    if settings.runs("a") {
        // (a) Publish throughput against the bare handler.
        let bare = bare_handler()?;
        let bare_result = closed_loop(
            &bare.url("/v1/topics/bench/publish"),
            event.clone(),
            settings.connections,
            settings.seconds,
        )
        .await?;
        let result = closed_loop(
            &format!("{}/v1/topics/bench/publish", server.base_url),
            event.clone(),
            settings.connections,
            settings.seconds,
        )
        .await?;
        table.row(
            format!(
                "(a) publish 1 KiB, 1 queue subscription, {} connections",
                settings.connections
            ),
            format!(
                "{:.0} req/s{}; bare axum 202 handler {:.0} req/s; ratio {:.2}",
                result.per_second(),
                result.errors_note(),
                bare_result.per_second(),
                result.per_second() / bare_result.per_second().max(1.0)
            ),
        );
        drop(bare);
    }

    // (c) drains what (b) stores, so (c) runs (b) first.
    if settings.runs("bc") {
        // (b) Batch publish, into its own queue that (c) then drains.
        client
            .put_topic("bench-batch", &TopicSpec::default())
            .await?;
        client
            .put_queue("bench-drain", &QueueSpec::default())
            .await?;
        client
            .put_subscription(
                "bench-batch",
                "drain",
                &SubscriptionSpec::to_queue("bench-drain"),
            )
            .await?;
        let stored = batch_publish(&client, "bench-batch", settings.seconds).await?;
        table.row(
            format!(
                "(b) batch publish, {PUBLISH_BATCH} x 1 KiB per request, {BATCH_CONNECTIONS} connections"
            ),
            format!(
                "{:.0} events/s stored{}",
                stored.per_second(),
                stored.errors_note()
            ),
        );
        if settings.runs("c") {
            // (c) ReceiveRequest + ack.
            let consumed = receive_and_ack(&client, "bench-drain", settings.seconds).await?;
            table.row(
                format!("(c) receive 10 + ack, {CONSUMERS} consumers"),
                format!(
                    "{:.0} msgs/s{}",
                    consumed.per_second(),
                    consumed.errors_note()
                ),
            );
        }
    }

    // (g) The AWS protocols against /v1 doing the same work, same connections, same
    // server, one after the other: what speaking SQS's JSON or SNS's query protocol costs
    // over the operation itself.
    if settings.runs("g") {
        aws_protocols(&client, &server.base_url, settings, table).await?;
    }
    Ok(())
}

/// (d) Latency at a fixed rate, on a server of its own: measured on the server of (a) it
/// would time the compaction of what (a) to (c) wrote at full speed, not a steady
/// 5,000/s. The phase is long enough to include the storage's own memtable flushes.
async fn latency(settings: &Settings, table: &mut Table) -> anyhow::Result<()> {
    let event = Bytes::from(serde_json::to_vec(&publish_body(0))?);
    {
        let server = Server::start(&settings.binary, &LAUNCH, http_client(1)?).await?;
        let client = Client::with_http(&server.base_url, http_client(1)?)?;
        bench_topic(&client).await?;
        let latency = fixed_rate(
            &format!("{}/v1/topics/bench/publish", server.base_url),
            event,
            settings.rate,
            settings.latency_seconds,
        )
        .await?;
        table.row(
            format!(
                "(d) publish latency at {} events/s for {} s, open loop, fresh server",
                settings.rate,
                settings.latency_seconds.as_secs()
            ),
            latency,
        );
    }
    // A publish is answered after its sync, so no publish is faster than the disk's
    // slowest sync meanwhile; the same disk alone, for as long, is the bound to read (d)
    // against.
    let latency_seconds = settings.latency_seconds;
    let disk = tokio::task::spawn_blocking(move || disk_sync_probe(latency_seconds))
        .await
        .context("disk probe")??;
    table.row(
        format!(
            "(d) for comparison: the disk alone, fdatasync of 1 KiB back to back for {} s",
            settings.latency_seconds.as_secs()
        ),
        disk,
    );
    Ok(())
}

/// (e) RSS with a backlog, on a server of its own: the one of (a) still holds what (a) and
/// (b) published and (c) did not drain.
async fn backlog_rss(settings: &Settings, table: &mut Table) -> anyhow::Result<()> {
    let server = Server::start(&settings.binary, &LAUNCH, http_client(1)?).await?;
    let client = Client::with_http(&server.base_url, http_client(BATCH_CONNECTIONS)?)?;
    let backlog = fill_backlog(
        &client,
        "bench-backlog",
        settings.backlog,
        settings.backlog_max,
    )
    .await?;
    let (filled, peak) = (server.rss_mb()?, server.peak_rss_mb()?);
    // Once the storage has flushed what the fill left in memory.
    tokio::time::sleep(SETTLE).await;
    let settled = server.rss_mb()?;
    table.row(
        format!("(e) RSS with {} x 1 KiB messages backlogged", backlog.ok),
        format!(
            "{filled:.1} MB when filled, {settled:.1} MB {} s later, peak {peak:.1} MB \
             (filled at {:.0} msgs/s{})",
            SETTLE.as_secs(),
            backlog.per_second(),
            backlog.errors_note()
        ),
    );
    drop(server);
    Ok(())
}

/// (h) Publish and batch publish with spans exported and without, interleaved.
async fn span_export(settings: &Settings, table: &mut Table) -> anyhow::Result<()> {
    let sink = OtlpSink::start()?;
    let endpoint = sink.server.url("");
    let off = Server::start(&settings.binary, &LAUNCH, http_client(1)?).await?;
    let on = Server::start_with(
        &settings.binary,
        &LAUNCH,
        http_client(1)?,
        &["--otlp-endpoint".into(), endpoint.into()],
    )
    .await?;
    let event = Bytes::from(serde_json::to_vec(&publish_body(0))?);
    let mut rates: [[Vec<f64>; 2]; 2] = Default::default();
    let mut errors = String::new();
    for server in [&off, &on] {
        bench_topic(&Client::with_http(&server.base_url, http_client(1)?)?).await?;
    }
    for pair in 0..settings.span_pairs {
        let order = if pair % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let server = [&off, &on][side];
            let single = closed_loop(
                &format!("{}/v1/topics/bench/publish", server.base_url),
                event.clone(),
                settings.connections,
                settings.seconds,
            )
            .await?;
            let client = Client::with_http(&server.base_url, http_client(BATCH_CONNECTIONS)?)?;
            let batch = batch_publish(&client, "bench", settings.seconds).await?;
            for outcome in [&single, &batch] {
                errors.push_str(&outcome.errors_note());
            }
            rates[0][side].push(single.per_second());
            rates[1][side].push(batch.per_second());
        }
    }
    let (exports, bytes) = sink.taken();
    for (what, [off, on]) in [
        format!("publish 1 KiB, {} connections, req/s", settings.connections),
        format!("batch publish, {PUBLISH_BATCH} x 1 KiB per request, events/s"),
    ]
    .into_iter()
    .zip(rates)
    {
        let (m_off, m_on) = (median(&off), median(&on));
        table.row(
            format!("(h) {what}: spans off / exported"),
            format!(
                "{m_off:.0} / {m_on:.0}, ratio {:.2} (medians of {} pairs; off {}, on {})",
                m_on / m_off.max(1.0),
                off.len(),
                list(&off),
                list(&on),
            ),
        );
    }
    table.row(
        "(h) spans received by the OTLP sink".into(),
        format!("{exports} exports, {:.1} MB{errors}", bytes as f64 / 1e6),
    );
    Ok(())
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

fn list(v: &[f64]) -> String {
    v.iter()
        .map(|x| format!("{x:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The topic the single-publish phases publish to, with its one queue subscription.
///
/// The bodies are written out rather than the client's types serialized, so that the
/// same generator can measure older servers, which refuse members they do not know.
async fn bench_topic(client: &Client) -> anyhow::Result<()> {
    let http = http_client(1)?;
    for (path, body) in [
        (&["v1", "topics", "bench"][..], json!({})),
        (&["v1", "queues", "bench-sink"], json!({})),
        (
            &["v1", "topics", "bench", "subscriptions", "sink"],
            json!({"endpoint": {"queue": "bench-sink"}}),
        ),
    ] {
        http.put(client.url(path).to_string())
            .json(&body)
            .send()
            .await?
            .error_for_status()?;
    }
    Ok(())
}

/// Phase (g): SQS SendMessage (JSON protocol) against `/v1` sends, and SNS Publish
/// (query protocol) against `/v1` publishes to the same topic, each 1 KiB of the same
/// text.
async fn aws_protocols(
    client: &Client,
    base: &str,
    settings: &Settings,
    table: &mut Table,
) -> anyhow::Result<()> {
    client.put_queue("bench-sqs", &QueueSpec::default()).await?;
    let text = serde_json::to_string(&publish_body(0)["message"])?;
    // The same body is a `/v1` send and a `/v1` publish.
    let v1_body = Bytes::from(serde_json::to_vec(&json!({ "message": text }))?);
    let v1_send = closed_loop(
        &format!("{base}/v1/queues/bench-sqs/messages"),
        v1_body.clone(),
        settings.connections,
        settings.seconds,
    )
    .await?;
    let sqs_send = closed_loop_as(
        &format!("{base}/"),
        Bytes::from(serde_json::to_vec(&json!({
            "QueueUrl": format!("{base}/000000000000/bench-sqs"),
            "MessageBody": text,
        }))?),
        Kind {
            content_type: "application/x-amz-json-1.0",
            target: Some("AmazonSQS.SendMessage"),
        },
        settings.connections,
        settings.seconds,
    )
    .await?;
    table.row(
        format!(
            "(g) SQS SendMessage (JSON protocol) vs /v1 send, 1 KiB, {} connections",
            settings.connections
        ),
        against(&sqs_send, &v1_send),
    );
    let v1_publish = closed_loop(
        &format!("{base}/v1/topics/bench/publish"),
        v1_body,
        settings.connections,
        settings.seconds,
    )
    .await?;
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("Action", "Publish")
        .append_pair("Version", "2010-03-31")
        .append_pair("TopicArn", "arn:aws:sns:us-east-1:000000000000:bench")
        .append_pair("Message", &text)
        .finish();
    let sns_publish = closed_loop_as(
        &format!("{base}/"),
        Bytes::from(form),
        Kind {
            content_type: "application/x-www-form-urlencoded",
            target: None,
        },
        settings.connections,
        settings.seconds,
    )
    .await?;
    table.row(
        format!(
            "(g) SNS Publish (query protocol) vs /v1 publish, 1 KiB, 1 queue subscription, {} connections",
            settings.connections
        ),
        against(&sns_publish, &v1_publish),
    );

    // Receive + delete: two backlogs of the same size, drained the same way.
    for queue in ["bench-rd-v1", "bench-rd-sqs"] {
        fill_backlog(client, queue, RECEIVE_BACKLOG, BACKLOG_FILL_TIME).await?;
    }
    let v1_consumed = receive_and_ack(client, "bench-rd-v1", settings.seconds).await?;
    let sqs_consumed = sqs_receive_and_delete(
        &format!("{base}/"),
        &format!("{base}/000000000000/bench-rd-sqs"),
        settings.seconds,
    )
    .await?;
    table.row(
        format!(
            "(g) SQS ReceiveMessage 10 + DeleteMessageBatch vs /v1 receive 10 + ack, {CONSUMERS} consumers"
        ),
        format!(
            "{:.0}{} vs {:.0}{} msgs/s; ratio {:.2}",
            sqs_consumed.per_second(),
            sqs_consumed.errors_note(),
            v1_consumed.per_second(),
            v1_consumed.errors_note(),
            sqs_consumed.per_second() / v1_consumed.per_second().max(1.0)
        ),
    );
    Ok(())
}

/// Messages in each backlog the receive comparison drains.
const RECEIVE_BACKLOG: u64 = 200_000;
/// Longest the filling of one such backlog may take.
const BACKLOG_FILL_TIME: Duration = Duration::from_secs(60);

/// [`receive_and_ack`] over SQS's JSON protocol: [`CONSUMERS`] tasks receive 10 and
/// delete them in one batch until `duration` passes or the queue is empty.
async fn sqs_receive_and_delete(
    url: &str,
    queue_url: &str,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let http = http_client(CONSUMERS)?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + duration;
    let receive = Bytes::from(serde_json::to_vec(
        &json!({"QueueUrl": queue_url, "MaxNumberOfMessages": 10}),
    )?);
    let mut tasks = JoinSet::new();
    for _ in 0..CONSUMERS {
        let (http, url, queue_url) = (http.clone(), url.to_owned(), queue_url.to_owned());
        let (receive, tally) = (receive.clone(), tally.clone());
        tasks.spawn(async move {
            for _ in 0..MAX_REQUESTS_PER_PHASE {
                if Instant::now() >= deadline {
                    break;
                }
                let got = match post_read::<Value>(&http, &url, receive.clone(), SQS_RECEIVE).await
                {
                    Ok(got) => got,
                    Err(error) => {
                        tally.error(format!("{error:#}"));
                        continue;
                    }
                };
                let Some(messages) = got["Messages"].as_array().filter(|m| !m.is_empty()) else {
                    break;
                };
                let entries: Vec<Value> = messages
                    .iter()
                    .enumerate()
                    .map(|(i, m)| json!({"Id": i.to_string(), "ReceiptHandle": m["ReceiptHandle"]}))
                    .collect();
                let delete = json!({"QueueUrl": queue_url, "Entries": entries});
                let delete = Bytes::from(delete.to_string());
                match post_read::<Value>(&http, &url, delete, SQS_DELETE_BATCH).await {
                    Ok(done) => {
                        let deleted = done["Successful"].as_array().map_or(0, Vec::len);
                        tally.ok.fetch_add(deleted as u64, Ordering::Relaxed);
                        if let Some(failed) = done["Failed"].as_array().filter(|f| !f.is_empty()) {
                            tally.error(format!("{} deletes failed", failed.len()));
                        }
                    }
                    Err(error) => tally.error(format!("{error:#}")),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.outcome(started.elapsed()))
}

/// `aws` against `v1`: both rates and their ratio.
fn against(aws: &Outcome, v1: &Outcome) -> String {
    format!(
        "{:.0}{} vs {:.0}{} req/s; ratio {:.2}",
        aws.per_second(),
        aws.errors_note(),
        v1.per_second(),
        v1.errors_note(),
        aws.per_second() / v1.per_second().max(1.0)
    )
}

/// Keep-alive pool sized for `connections`, no proxy (loopback only).
fn http_client(connections: usize) -> anyhow::Result<reqwest::Client> {
    common::http_client_builder(connections.max(CONSUMERS))
        .timeout(Duration::from_secs(120))
        .build()
        .context("build the HTTP client")
}

/// A publish body of about 1 KiB; `n` makes it distinct.
fn publish_body(n: u64) -> Value {
    json!({
        "message": {"n": n, "kind": "order", "pad": "x".repeat(EVENT_PAD)},
        "attributes": {"kind": "order"}
    })
}

/// What a phase achieved.
struct Outcome {
    ok: u64,
    errors: u64,
    first_error: Option<String>,
    elapsed: Duration,
}

impl Outcome {
    fn per_second(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    fn errors_note(&self) -> String {
        match &self.first_error {
            Some(error) => format!(" ({} errors, first: {error})", self.errors),
            None => String::new(),
        }
    }
}

/// Counters shared by the tasks of one phase.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn error(&self, error: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().expect("not poisoned");
        if first.is_none() {
            *first = Some(error.to_string());
        }
    }

    fn outcome(&self, elapsed: Duration) -> Outcome {
        Outcome {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            first_error: self.first_error.lock().expect("not poisoned").clone(),
            elapsed,
        }
    }
}

/// `connections` tasks POST `body` to `url` back to back for `duration`.
async fn closed_loop(
    url: &str,
    body: Bytes,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    closed_loop_as(url, body, JSON, connections, duration).await
}

/// What a request says its body is: a content type and, for the AWS JSON protocols, an
/// `X-Amz-Target`.
#[derive(Clone, Copy)]
struct Kind {
    content_type: &'static str,
    target: Option<&'static str>,
}

const JSON: Kind = Kind {
    content_type: "application/json",
    target: None,
};

const SQS_RECEIVE: Kind = Kind {
    content_type: "application/x-amz-json-1.0",
    target: Some("AmazonSQS.ReceiveMessage"),
};

const SQS_DELETE_BATCH: Kind = Kind {
    content_type: "application/x-amz-json-1.0",
    target: Some("AmazonSQS.DeleteMessageBatch"),
};

/// [`closed_loop`] with requests of another kind.
async fn closed_loop_as(
    url: &str,
    body: Bytes,
    kind: Kind,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let http = http_client(connections)?;
    // Warm the pool and check the target answers before timing.
    let warm = post_as(&http, url, body.clone(), kind).await?;
    ensure!(
        warm.is_success(),
        "{url} answered {warm} to a warm-up publish"
    );
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + duration;
    let per_task = MAX_REQUESTS_PER_PHASE / connections as u64;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let (http, url, body, tally) = (http.clone(), url.to_owned(), body.clone(), tally.clone());
        tasks.spawn(async move {
            for _ in 0..per_task {
                if Instant::now() >= deadline {
                    break;
                }
                match post_as(&http, &url, body.clone(), kind).await {
                    Ok(status) if status.is_success() => {
                        tally.ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(status) => tally.error(status),
                    Err(error) => tally.error(format!("{error:#}")),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.outcome(started.elapsed()))
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    body: Bytes,
) -> anyhow::Result<reqwest::StatusCode> {
    post_as(http, url, body, JSON).await
}

async fn post_as(
    http: &reqwest::Client,
    url: &str,
    body: Bytes,
    kind: Kind,
) -> anyhow::Result<reqwest::StatusCode> {
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, kind.content_type);
    if let Some(target) = kind.target {
        request = request.header("x-amz-target", target);
    }
    let response = request.body(body).send().await?;
    let status = response.status();
    // Read the body so the connection goes back to the pool.
    response.bytes().await?;
    Ok(status)
}

/// Batch publishes of [`PUBLISH_BATCH`] events from [`BATCH_CONNECTIONS`] tasks.
async fn batch_publish(
    client: &Client,
    topic: &str,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let entries: Vec<Value> = (0..PUBLISH_BATCH as u64)
        .map(|n| {
            let mut entry = publish_body(n);
            entry["id"] = json!(format!("e{n}"));
            entry
        })
        .collect();
    let body = Bytes::from(serde_json::to_vec(&json!({ "entries": entries }))?);
    let url = client
        .url(&["v1", "topics", topic, "publish-batch"])
        .to_string();
    let http = http_client(BATCH_CONNECTIONS)?;
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..BATCH_CONNECTIONS {
        let (http, url, body, tally) = (http.clone(), url.clone(), body.clone(), tally.clone());
        tasks.spawn(async move {
            for _ in 0..MAX_REQUESTS_PER_PHASE / PUBLISH_BATCH as u64 {
                if Instant::now() >= deadline {
                    break;
                }
                match post_read::<BatchResult>(&http, &url, body.clone(), JSON).await {
                    Ok(result) => {
                        tally
                            .ok
                            .fetch_add(result.successful.len() as u64, Ordering::Relaxed);
                        for failure in result.failed {
                            tally.error(format!("{} {}", failure.status, failure.detail));
                        }
                    }
                    Err(error) => tally.error(format!("{error:#}")),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.outcome(started.elapsed()))
}

/// Posts `body` as `kind` and reads the answer, failing on a status that is not a success.
async fn post_read<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    url: &str,
    body: Bytes,
    kind: Kind,
) -> anyhow::Result<T> {
    let mut request = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, kind.content_type);
    if let Some(target) = kind.target {
        request = request.header("x-amz-target", target);
    }
    let response = request.body(body).send().await?;
    let status = response.status();
    let bytes = response.bytes().await?;
    if !status.is_success() {
        bail!("{status}: {}", String::from_utf8_lossy(&bytes));
    }
    Ok(serde_json::from_slice(&bytes)?)
}

/// [`CONSUMERS`] tasks receive 10 and ack them until `duration` passes or the queue is
/// empty.
async fn receive_and_ack(
    client: &Client,
    queue: &str,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = JoinSet::new();
    for _ in 0..CONSUMERS {
        let (client, queue, tally) = (client.clone(), queue.to_owned(), tally.clone());
        tasks.spawn(async move {
            for _ in 0..MAX_REQUESTS_PER_PHASE {
                if Instant::now() >= deadline {
                    break;
                }
                let messages = match client.receive(&queue, &ReceiveRequest::new(10)).await {
                    Ok(messages) if messages.is_empty() => break,
                    Ok(messages) => messages,
                    Err(error) => {
                        tally.error(error);
                        continue;
                    }
                };
                let receipts: Vec<String> = messages.into_iter().map(|m| m.receipt).collect();
                match client.ack(&queue, &receipts).await {
                    Ok(acked) => {
                        tally.ok.fetch_add(acked, Ordering::Relaxed);
                    }
                    Err(error) => tally.error(error),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    Ok(tally.outcome(started.elapsed()))
}

/// Publishes at `rate` per second for `duration` whatever the responses do (open loop)
/// and reports latency percentiles, each measured from the request's scheduled start.
async fn fixed_rate(
    url: &str,
    body: Bytes,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<String> {
    ensure!(rate > 0, "LOAD_RATE must be positive");
    let http = http_client(MAX_IN_FLIGHT)?;
    let histogram = Arc::new(std::sync::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).context("histogram bounds")?,
    ));
    let mut lateness =
        Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).context("histogram bounds")?;
    let tally = Arc::new(Tally::default());
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let total = (rate as f64 * duration.as_secs_f64()) as u64;
    let started = Instant::now();
    let mut ticks = common::pace::pace(rate, total);
    let mut tasks = JoinSet::new();
    while let Some(scheduled) = ticks.recv().await {
        // Timed from here, not from `scheduled`: how late the pacer's tick arrived is this
        // tool's error, reported apart. Waiting for an in-flight slot (the server being
        // slow) still counts.
        let issued = Instant::now();
        lateness.saturating_record(
            (issued.saturating_duration_since(scheduled).as_micros() as u64).max(1),
        );
        let (http, url, body) = (http.clone(), url.to_owned(), body.clone());
        let (histogram, tally, slots) = (histogram.clone(), tally.clone(), slots.clone());
        tasks.spawn(async move {
            let _slot = slots.acquire_owned().await.expect("never closed");
            match post(&http, &url, body).await {
                Ok(status) if status.is_success() => {
                    let micros = issued.elapsed().as_micros() as u64;
                    tally.ok.fetch_add(1, Ordering::Relaxed);
                    histogram
                        .lock()
                        .expect("not poisoned")
                        .saturating_record(micros.max(1));
                }
                Ok(status) => tally.error(status),
                Err(error) => tally.error(format!("{error:#}")),
            }
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let outcome = tally.outcome(started.elapsed());
    let histogram = histogram.lock().expect("not poisoned");
    let at = |q: f64| histogram.value_at_quantile(q) as f64 / 1_000.0;
    Ok(format!(
        "p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.0}/s achieved{}; sent late by p50 {:.2} ms, p99 {:.2} ms)",
        at(0.50),
        at(0.90),
        at(0.99),
        histogram.max() as f64 / 1_000.0,
        outcome.per_second(),
        outcome.errors_note(),
        lateness.value_at_quantile(0.5) as f64 / 1_000.0,
        lateness.value_at_quantile(0.99) as f64 / 1_000.0,
    ))
}

/// Size of the disk probe's file, zero-filled ahead as the server's log segments are, so a
/// sync flushes data blocks only, as the server's do.
const PROBE_FILE_BYTES: u64 = 16 << 20;
/// A sync slower than this alone would break phase (d)'s target for the publishes waiting
/// on it.
const SLOW_SYNC: Duration = Duration::from_millis(5);

/// Latency of the disk itself: 1 KiB written and `fdatasync`ed back to back for
/// `duration`, in a file beside the servers' data dirs.
fn disk_sync_probe(duration: Duration) -> anyhow::Result<String> {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::Builder::new()
        .prefix(LAUNCH.data_dir_prefix)
        .tempdir()
        .context("probe dir")?;
    let file = std::fs::File::create(dir.path().join("probe")).context("probe file")?;
    let zeros = vec![0_u8; 1 << 20];
    for chunk in 0..PROBE_FILE_BYTES / zeros.len() as u64 {
        file.write_all_at(&zeros, chunk * zeros.len() as u64)?;
    }
    file.sync_all()?;
    let record = [0x5a_u8; 1024];
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    let (mut offset, mut slow) = (0, 0);
    let started = Instant::now();
    while started.elapsed() < duration {
        file.write_all_at(&record, offset)?;
        offset = (offset + record.len() as u64) % PROBE_FILE_BYTES;
        let sync = Instant::now();
        file.sync_data()?;
        let took = sync.elapsed();
        slow += u64::from(took > SLOW_SYNC);
        histogram.saturating_record((took.as_micros() as u64).max(1));
    }
    let at = |q: f64| histogram.value_at_quantile(q) as f64 / 1_000.0;
    Ok(format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; {slow} of {} syncs over {} ms",
        at(0.5),
        at(0.99),
        histogram.max() as f64 / 1_000.0,
        histogram.len(),
        SLOW_SYNC.as_millis()
    ))
}

/// Sends `count` 1 KiB messages to a fresh queue in batches; stops at `max_time`.
async fn fill_backlog(
    client: &Client,
    queue: &str,
    count: u64,
    max_time: Duration,
) -> anyhow::Result<Outcome> {
    client.put_queue(queue, &QueueSpec::default()).await?;
    let mut batch_size = PUBLISH_BATCH;
    let entry = |n: u64| {
        SendRequest::new(json!({"n": n, "pad": "x".repeat(EVENT_PAD)})).id(format!("e{n}"))
    };
    // Find the largest batch the server takes: the contract fixes 100 for publish; a
    // server may hold sends to SQS's 10.
    let probe: Vec<_> = (0..batch_size as u64).map(entry).collect();
    if let Err(ClientError::Api(problem)) = client.send_batch(queue, &probe).await {
        eprintln!("  batch send of {batch_size} refused ({problem}); using 10");
        batch_size = 10;
    } else {
        client.purge(queue).await?;
    }
    let batch: Arc<Vec<_>> = Arc::new((0..batch_size as u64).map(entry).collect());
    let requests = count.div_ceil(batch_size as u64);
    let next = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let started = Instant::now();
    let deadline = started + max_time;
    let mut tasks = JoinSet::new();
    for _ in 0..BATCH_CONNECTIONS {
        let (client, queue, batch) = (client.clone(), queue.to_owned(), batch.clone());
        let (next, stop, tally) = (next.clone(), stop.clone(), tally.clone());
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) && next.fetch_add(1, Ordering::Relaxed) < requests {
                if Instant::now() >= deadline {
                    stop.store(true, Ordering::Relaxed);
                    break;
                }
                match client.send_batch(&queue, &batch).await {
                    Ok(result) => {
                        tally
                            .ok
                            .fetch_add(result.successful.len() as u64, Ordering::Relaxed);
                        for failure in result.failed {
                            tally.error(format!("{} {}", failure.status, failure.detail));
                        }
                    }
                    Err(error) => {
                        tally.error(&error);
                        if !error.is_retryable() {
                            stop.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
        });
    }
    let mut reported = Instant::now();
    while tasks.join_next().await.is_some() {
        if reported.elapsed() > Duration::from_secs(10) {
            eprintln!("  backlog: {} sent", tally.ok.load(Ordering::Relaxed));
            reported = Instant::now();
        }
    }
    Ok(tally.outcome(started.elapsed()))
}

/// An axum app served on loopback from a thread of this process with a runtime of its
/// own, so it does not share the load generator's thread; stopped on drop.
struct InProcess {
    address: std::net::SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    fn serve(app: axum::Router, threads: usize) -> anyhow::Result<InProcess> {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").context("bind an in-process server")?;
        listener.set_nonblocking(true)?;
        let address = listener.local_addr()?;
        let (shutdown, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .expect("build the in-process server's runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = shutdown_rx.await;
                    })
                    .await;
            });
        });
        Ok(InProcess {
            address,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The publish body as the server reads it.
#[derive(serde::Deserialize)]
#[allow(dead_code)] // Parsed for its cost, never read.
struct PublishBody {
    message: Value,
    #[serde(default)]
    attributes: BTreeMap<String, Value>,
    #[serde(default)]
    group_id: Option<String>,
    #[serde(default)]
    dedup_id: Option<String>,
}

/// An axum handler that parses the publish body and answers 202: the floor of what any
/// HTTP publish can cost on this machine. Runs on its own two-thread runtime, as a server
/// process would.
fn bare_handler() -> anyhow::Result<InProcess> {
    use axum::Json;
    use axum::extract::Path;
    use axum::http::StatusCode;
    use axum::routing::post;

    let app = axum::Router::new().route(
        "/v1/topics/{topic}/publish",
        post(
            |Path(topic): Path<String>, Json(body): Json<PublishBody>| async move {
                std::hint::black_box((topic, body));
                StatusCode::ACCEPTED
            },
        ),
    );
    InProcess::serve(app, 2)
}

/// An OTLP/HTTP receiver that takes every export and keeps only its count and size: the
/// far end of a server's span export, as cheap as a receiver can be. One thread.
struct OtlpSink {
    server: InProcess,
    exports: Arc<AtomicU64>,
    bytes: Arc<AtomicU64>,
}

impl OtlpSink {
    fn start() -> anyhow::Result<OtlpSink> {
        use axum::http::{StatusCode, header};
        use axum::routing::post;

        let exports = Arc::new(AtomicU64::new(0));
        let bytes = Arc::new(AtomicU64::new(0));
        let (e, b) = (exports.clone(), bytes.clone());
        let app = axum::Router::new().route(
            "/v1/traces",
            post(move |body: Bytes| async move {
                e.fetch_add(1, Ordering::Relaxed);
                b.fetch_add(body.len() as u64, Ordering::Relaxed);
                // An empty ExportTraceServiceResponse: everything accepted.
                (
                    StatusCode::OK,
                    [(header::CONTENT_TYPE, "application/x-protobuf")],
                )
            }),
        );
        Ok(OtlpSink {
            server: InProcess::serve(app, 1)?,
            exports,
            bytes,
        })
    }

    fn taken(&self) -> (u64, u64) {
        (
            self.exports.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
        )
    }
}

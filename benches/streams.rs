//! Stream benchmark: starts the real `switchyard` binary (built with the bench profile) on
//! loopback with a fresh temporary data dir and measures streams as a user of the HTTP API
//! sees them.
//!
//! Run: `cargo bench --bench streams`. Every phase is bounded in time and count, and only
//! loopback addresses are used.
//!
//! | variable              | default   | meaning                                          |
//! |-----------------------|-----------|--------------------------------------------------|
//! | `STREAMS_SECONDS`     | 5         | length of the put phase                          |
//! | `STREAMS_CONNECTIONS` | 4         | concurrent put requests                          |
//! | `STREAMS_RECORDS`     | 400000    | records of each group phase                      |
//! | `STREAMS_LEASE_S`     | 2         | lease timeout of the failover phase              |
//! | `STREAMS_FAILOVERS`   | 3         | failovers measured (median and max reported)     |
//! | `SWITCHYARD_BIN`      | (cargo's) | server binary to measure instead                 |
//!
//! Phases:
//! - (a) put: 1 KiB records in batches of 500 (the API's maximum) to a 4-shard stream from
//!   `STREAMS_CONNECTIONS` connections; each answer means the batch is on disk;
//! - (b) group: `STREAMS_CONNECTIONS` producers put `STREAMS_RECORDS` 1 KiB records while
//!   a group of two members (already holding two shards each) polls, and checkpoints every
//!   batch; the rate is records over the time from the first put to the last record
//!   received, so it cannot exceed the put rate;
//! - (b') the same group reading `STREAMS_RECORDS` records put beforehand: the read rate
//!   itself, from the first poll to the last record received;
//! - (c) failover: members A and B share four shards while records keep arriving; A stops
//!   polling after checkpointing what it read; measured is the time from A's last poll until
//!   B holds all four shards and has received a record of each of A's, in lease timeouts
//!   (target: at most 2). B must resume exactly after A's checkpoints.

#[path = "common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use bytes::Bytes;
use serde_json::json;
use switchyard::client::{Client, MAX_PUT_RECORDS, StreamConsumer};
use switchyard::wire::{GroupSpec, PutRecord, StreamRecord, StreamSpec};
use tokio::task::JoinSet;

use common::{HealthPoll, Launch, Server, Table, env_var, http_client, ms, server_binary};

/// Shards of every stream measured: enough for two members to split, few enough that a
/// member's batch holds many records per shard.
const SHARDS: u32 = 4;
/// Size of the `pad` string that makes each record about 1 KiB of JSON.
const RECORD_PAD: usize = 1_000;
/// Upper bound on put requests in the put phase, whatever the time limit.
const MAX_PUTS: u64 = 100_000;
/// Records per poll of the group phase.
const POLL_RECORDS: u32 = 1_000;
/// Longest the group phase may take before the tool gives up.
const GROUP_TIMEOUT: Duration = Duration::from_secs(300);
/// Longest a group may take to balance its shards.
const BALANCE_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between the failover phase's puts: a steady trickle, so B's resumption shows.
const TRICKLE_PAUSE: Duration = Duration::from_millis(20);
/// How the server is started.
const LAUNCH: Launch = Launch {
    data_dir_prefix: "switchyard-bench-",
    // Per-request logging would measure the logger.
    log_level: "warn",
    health_poll: HealthPoll::Every(Duration::from_millis(10)),
};

fn main() -> ExitCode {
    // The load generator runs on one thread so that the server gets the other core.
    common::main("streams", || run(Settings::from_env()))
}

/// What to run, from the environment.
struct Settings {
    seconds: Duration,
    connections: usize,
    records: u64,
    lease_s: u64,
    failovers: usize,
    binary: PathBuf,
}

impl Settings {
    fn from_env() -> Self {
        Settings {
            seconds: Duration::from_secs_f64(env_var("STREAMS_SECONDS", 5.0)),
            connections: env_var("STREAMS_CONNECTIONS", 4_usize).max(1),
            records: env_var("STREAMS_RECORDS", 400_000_u64).max(1),
            lease_s: env_var("STREAMS_LEASE_S", 2_u64).clamp(1, 300),
            failovers: env_var("STREAMS_FAILOVERS", 3_usize).max(1),
            binary: server_binary(),
        }
    }
}

async fn run(settings: Settings) -> anyhow::Result<()> {
    let mut table = Table::default();
    eprintln!("streams: server binary {}", settings.binary.display());
    let server = Server::start(&settings.binary, &LAUNCH, http_client(1)?).await?;
    let http = http_client(settings.connections + 4)?;
    let client = Client::with_http(&server.base_url, http.clone())?;

    // (a) Put throughput.
    client.put_stream("put", &StreamSpec::new(SHARDS)).await?;
    let (records, elapsed) = put_phase(&http, &server, &settings).await?;
    let rate = records as f64 / elapsed.as_secs_f64();
    table.row(
        format!(
            "(a) put, 1 KiB records x {MAX_PUT_RECORDS}/request, {} connections",
            settings.connections
        ),
        format!(
            "{rate:.0} records/s ({:.1} MiB/s), {records} records in {:.1} s, durable",
            rate * record_bytes() as f64 / (1024.0 * 1024.0),
            elapsed.as_secs_f64()
        ),
    );

    // (b) A group of two members reading four shards, end to end and from a backlog.
    for (stream, backlog, label) in [
        (
            "group",
            false,
            "(b) group of 2 members on 4 shards, put -> poll -> checkpoint",
        ),
        (
            "backlog",
            true,
            "(b') group of 2 members on 4 shards, poll -> checkpoint of a backlog",
        ),
    ] {
        let group = group_phase(
            &client,
            stream,
            settings.records,
            settings.connections,
            backlog,
        )
        .await?;
        table.row(
            label.into(),
            format!(
                "{:.0} records/s {}, {} records in {:.2} s (split {} / {}, {} checkpoints)",
                settings.records as f64 / group.elapsed.as_secs_f64(),
                if backlog { "read" } else { "end to end" },
                settings.records,
                group.elapsed.as_secs_f64(),
                group.per_member[0],
                group.per_member[1],
                group.checkpoints
            ),
        );
    }

    // (c) Failover.
    let lease = Duration::from_secs(settings.lease_s);
    let mut takeovers = Vec::with_capacity(settings.failovers);
    for trial in 0..settings.failovers {
        let took = failover_trial(&client, trial, settings.lease_s).await?;
        eprintln!(
            "  failover {}: {:.2} lease timeouts ({:.0} ms)",
            trial + 1,
            took.as_secs_f64() / lease.as_secs_f64(),
            ms(took)
        );
        takeovers.push(took);
    }
    takeovers.sort();
    let median = takeovers[takeovers.len() / 2];
    let max = takeovers[takeovers.len() - 1];
    let in_leases = |d: Duration| d.as_secs_f64() / lease.as_secs_f64();
    table.row(
        format!(
            "(c) failover, lease timeout {} s, B takes A's 2 shards",
            settings.lease_s
        ),
        format!(
            "median {:.2} lease timeouts ({:.0} ms), max {:.2} of {} trials; target <= 2: {}; resumed right after A's checkpoints",
            in_leases(median),
            ms(median),
            in_leases(max),
            takeovers.len(),
            if in_leases(max) <= 2.0 {
                "met"
            } else {
                "MISSED"
            }
        ),
    );

    table.print("switchyard streams (loopback; the load generator shares the machine)");
    Ok(())
}

/// The data of one record: about 1 KiB of JSON.
fn record_data(n: u64) -> serde_json::Value {
    json!({"n": n, "pad": "x".repeat(RECORD_PAD)})
}

fn record_bytes() -> usize {
    record_data(0).to_string().len()
}

/// Sends pre-serialized put batches from `connections` tasks until the time is up;
/// returns the records stored and the time taken.
async fn put_phase(
    http: &reqwest::Client,
    server: &Server,
    settings: &Settings,
) -> anyhow::Result<(u64, Duration)> {
    // One body, serialized once: the tool measures the server, not its own JSON encoder.
    // 500 distinct keys spread each batch over all shards.
    let records: Vec<PutRecord> = (0..MAX_PUT_RECORDS as u64)
        .map(|n| PutRecord::new(format!("key-{n}"), record_data(n)))
        .collect();
    let body = Bytes::from(serde_json::to_vec(&json!({ "records": records }))?);
    let url = format!("{}/v1/streams/put/records", server.base_url);
    let stored = Arc::new(AtomicU64::new(0));
    let puts = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = started + settings.seconds;
    let mut tasks = JoinSet::new();
    for _ in 0..settings.connections {
        let (http, url, body) = (http.clone(), url.clone(), body.clone());
        let (stored, puts, failed) = (stored.clone(), puts.clone(), failed.clone());
        tasks.spawn(async move {
            while Instant::now() < deadline
                && puts.fetch_add(1, Ordering::Relaxed) < MAX_PUTS
                && !failed.load(Ordering::Relaxed)
            {
                let response = http
                    .post(&url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(response) if response.status().is_success() => {
                        let _ = response.bytes().await;
                        stored.fetch_add(MAX_PUT_RECORDS as u64, Ordering::Relaxed);
                    }
                    Ok(response) => {
                        eprintln!("put refused: {}", response.status());
                        failed.store(true, Ordering::Relaxed);
                    }
                    Err(error) => {
                        eprintln!("put failed: {error}");
                        failed.store(true, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let elapsed = started.elapsed();
    ensure!(!failed.load(Ordering::Relaxed), "a put failed");
    Ok((stored.load(Ordering::Relaxed), elapsed))
}

/// What the group phase measured.
struct GroupOutcome {
    elapsed: Duration,
    per_member: [u64; 2],
    checkpoints: u64,
}

async fn group_phase(
    client: &Client,
    stream: &'static str,
    total: u64,
    connections: usize,
    backlog: bool,
) -> anyhow::Result<GroupOutcome> {
    client.put_stream(stream, &StreamSpec::new(SHARDS)).await?;
    client.put_group(stream, "g", &GroupSpec::default()).await?;
    let members: Vec<StreamConsumer> = ["a", "b"]
        .into_iter()
        .map(|member| {
            StreamConsumer::new(client.clone(), stream, "g", member)
                .max_records(POLL_RECORDS)
                .wait_s(1)
        })
        .collect();
    balance(&members, &[2, 2]).await?;

    let producer = {
        let client = client.clone();
        tokio::spawn(produce(client, stream, total, connections))
    };
    let mut producer = if backlog {
        tokio::time::timeout(GROUP_TIMEOUT, producer)
            .await
            .with_context(|| format!("putting {total} records took over {GROUP_TIMEOUT:?}"))?
            .context("producer task")??;
        None
    } else {
        Some(producer)
    };
    let received = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut consumers = JoinSet::new();
    for consumer in members {
        let (received, stop) = (received.clone(), stop.clone());
        consumers.spawn(async move {
            let (mut mine, mut checkpoints) = (0_u64, 0_u64);
            while !stop.load(Ordering::Relaxed) {
                let records = consumer.next_batch().await?;
                mine += records.len() as u64;
                let outcome = consumer.checkpoint_batch(&records).await?;
                ensure!(outcome.all_saved(), "{} lost a lease", consumer.member());
                checkpoints += outcome.saved.len() as u64;
                received.fetch_add(records.len() as u64, Ordering::Relaxed);
            }
            anyhow::Ok((consumer.member().to_owned(), mine, checkpoints))
        });
    }
    while received.load(Ordering::Relaxed) < total {
        ensure!(
            started.elapsed() < GROUP_TIMEOUT,
            "received {} of {total} records within {GROUP_TIMEOUT:?}",
            received.load(Ordering::Relaxed)
        );
        // Surface a failed put at once rather than at the timeout.
        if let Some(done) = producer.take_if(|task| task.is_finished()) {
            done.await.context("producer task")??;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed();
    if let Some(producer) = producer {
        producer.await.context("producer task")??;
    }
    stop.store(true, Ordering::Relaxed);
    let mut per_member = BTreeMap::new();
    let mut checkpoints = 0;
    while let Some(joined) = consumers.join_next().await {
        let (member, mine, saved) = joined.context("consumer task")??;
        per_member.insert(member, mine);
        checkpoints += saved;
    }
    let received = received.load(Ordering::Relaxed);
    ensure!(
        received == total,
        "received {received} records, put {total}"
    );
    Ok(GroupOutcome {
        elapsed,
        per_member: [per_member["a"], per_member["b"]],
        checkpoints,
    })
}

/// Puts `total` records to `stream` from `connections` concurrent requests, each a batch of
/// distinct keys.
async fn produce(
    client: Client,
    stream: &'static str,
    total: u64,
    connections: usize,
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..connections.max(1) {
        let (client, next) = (client.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(MAX_PUT_RECORDS as u64, Ordering::Relaxed);
                if n >= total {
                    return anyhow::Ok(());
                }
                let batch: Vec<PutRecord> = (n..total.min(n + MAX_PUT_RECORDS as u64))
                    .map(|i| PutRecord::new(format!("key-{i}"), record_data(i)))
                    .collect();
                client.put_records(stream, &batch).await?;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("producer task")??;
    }
    Ok(())
}

/// Polls with every member (no wait, processing nothing) until each holds the given number
/// of shards.
async fn balance(members: &[StreamConsumer], shares: &[usize]) -> anyhow::Result<()> {
    let deadline = Instant::now() + BALANCE_TIMEOUT;
    loop {
        for member in members {
            let idle = member.clone().wait_s(0).max_records(1);
            // Nothing has been put yet, so these polls read nothing.
            ensure!(
                idle.next_batch().await?.is_empty(),
                "records before the start"
            );
        }
        let info = members[0].describe_group().await?;
        let held: Vec<usize> = members
            .iter()
            .map(|m| info.held_by(m.member()).len())
            .collect();
        if held == shares {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "the group did not balance within {BALANCE_TIMEOUT:?}: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One failover: A and B share the shards of a fresh stream while a producer trickles
/// records in; A checkpoints what it read and stops; returns the time from A's last poll
/// until B holds every shard and has received a record of each of A's former shards.
async fn failover_trial(client: &Client, trial: usize, lease_s: u64) -> anyhow::Result<Duration> {
    let stream = format!("failover-{trial}");
    client.put_stream(&stream, &StreamSpec::new(SHARDS)).await?;
    client
        .put_group(&stream, "g", &GroupSpec::default().lease_timeout_s(lease_s))
        .await?;
    // A polls without waiting, so its last heartbeat is exactly its last poll; B is an
    // ordinary long-polling consumer, as a real one would be.
    let a = StreamConsumer::new(client.clone(), &stream, "g", "a")
        .max_records(POLL_RECORDS)
        .wait_s(0);
    let b = StreamConsumer::new(client.clone(), &stream, "g", "b")
        .max_records(POLL_RECORDS)
        .wait_s(1);
    balance(&[a.clone(), b.clone()], &[2, 2]).await?;
    let info = a.describe_group().await?;
    let a_shards: BTreeSet<String> = info.held_by("a").into_iter().map(str::to_owned).collect();

    // One record per shard per put, placed by explicit hash keys so every shard gets some.
    let shards = client.list_shards(&stream).await?;
    let trickle: Vec<PutRecord> = shards
        .iter()
        .map(|shard| {
            let hash_key: u128 = shard.hash_key_range.start.parse().unwrap_or(0);
            PutRecord::new("trickle", json!({"shard": shard.shard_id})).explicit_hash_key(hash_key)
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let producer = {
        let (client, stream, stop) = (client.clone(), stream.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                client.put_records(&stream, &trickle).await?;
                tokio::time::sleep(TRICKLE_PAUSE).await;
            }
            anyhow::Ok(())
        })
    };

    // Both consume for a while; then A checkpoints its last batch and stops.
    let warm_up = Instant::now() + Duration::from_millis(500);
    let mut a_checkpointed: BTreeMap<String, u64> = BTreeMap::new();
    while Instant::now() < warm_up {
        let records = a.next_batch().await?;
        let outcome = a.checkpoint_batch(&records).await?;
        ensure!(outcome.all_saved(), "A lost a lease while polling");
        a_checkpointed.extend(outcome.saved);
        // B gets a turn so it keeps its leases.
        let records = b.clone().wait_s(0).next_batch().await?;
        b.checkpoint_batch(&records).await?;
        tokio::time::sleep(TRICKLE_PAUSE).await;
    }
    let records = a.next_batch().await?;
    let a_stopped = Instant::now();
    a_checkpointed.extend(a.checkpoint_batch(&records).await?.saved);

    // B alone, until it has taken over and resumed on each of A's shards.
    let mut resumed: BTreeMap<String, StreamRecord> = BTreeMap::new();
    let deadline = a_stopped + Duration::from_secs(lease_s * 10);
    let took = loop {
        let records = b.next_batch().await?;
        let now = Instant::now();
        for record in &records {
            if a_shards.contains(&record.shard_id) {
                resumed
                    .entry(record.shard_id.clone())
                    .or_insert(record.clone());
            }
        }
        b.checkpoint_batch(&records).await?;
        if resumed.len() == a_shards.len() {
            let info = b.describe_group().await?;
            ensure!(
                info.held_by("b").len() == SHARDS as usize,
                "B resumed A's shards without holding all of them"
            );
            break now - a_stopped;
        }
        if now > deadline {
            bail!("B did not take over A's shards within 10 lease timeouts");
        }
    };
    stop.store(true, Ordering::Relaxed);
    producer.await.context("producer task")??;
    // B resumed exactly after A's checkpoints: nothing repeated, nothing skipped.
    for (shard, first) in &resumed {
        let expected = a_checkpointed.get(shard).map_or(1, |sequence| sequence + 1);
        ensure!(
            first.sequence_number() == expected,
            "B resumed {shard} at {} instead of {expected}",
            first.sequence
        );
    }
    Ok(took)
}

//! A stream worker: one member of a consumer group that prints every record it gets and
//! checkpoints each batch once it is printed, built on `switchyard::client::StreamConsumer`.
//!
//! Run, with a server listening on the default address (`switchyard serve`):
//!
//! ```sh
//! cargo run --example stream_worker -- --stream clicks --group printers --member w1 --shards 4
//! ```
//!
//! Start a second one with `--member w2` and the group splits the shards between them;
//! stop one (ctrl-c) and after the lease timeout the other takes its shards over and
//! resumes after its last checkpoint. See `README.md` next to this file.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use reqwest::StatusCode;
use switchyard::client::{Client, StreamConsumer};
use switchyard::wire::{GroupSpec, StartPosition, StreamSpec};

/// Pause after a failed poll before the next, so a server that is down is not hammered.
const RETRY_PAUSE: Duration = Duration::from_secs(1);

#[derive(Debug, Parser)]
#[command(about = "Consume a Switchyard stream as a member of a consumer group")]
struct Args {
    /// Base URL of the Switchyard server.
    #[arg(long, env = "SWITCHYARD_URL", default_value = "http://127.0.0.1:8088")]
    url: String,
    /// Bearer token, when the server requires one.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// The stream to consume.
    #[arg(long)]
    stream: String,
    /// The consumer group; its members share the shards.
    #[arg(long, default_value = "workers")]
    group: String,
    /// This worker's name in the group; default `worker-PID`.
    #[arg(long)]
    member: Option<String>,
    /// Create the stream with this many shards if it does not exist.
    #[arg(long)]
    shards: Option<u32>,
    /// Lease timeout of a new group, in seconds: how soon a stopped worker's shards move.
    #[arg(long, default_value_t = 5)]
    lease_timeout_s: u64,
    /// A new group starts with records put from now on instead of the oldest retained.
    #[arg(long)]
    latest: bool,
    /// Most records per batch.
    #[arg(long, default_value_t = 100)]
    max: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let member = args
        .member
        .clone()
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let mut client = Client::new(&args.url)?;
    if let Some(token) = &args.token {
        client = client.with_token(token);
    }
    if let Some(shards) = args.shards {
        match client
            .put_stream(&args.stream, &StreamSpec::new(shards))
            .await
        {
            Ok(()) => {}
            // It exists with another shard count: consume it as it is.
            Err(error) if error.status() == Some(StatusCode::CONFLICT) => {}
            Err(error) => return Err(error).context("create the stream"),
        }
    }
    let consumer =
        StreamConsumer::new(client, &args.stream, &args.group, &member).max_records(args.max);
    let start = if args.latest {
        StartPosition::Latest
    } else {
        StartPosition::TrimHorizon
    };
    let spec = GroupSpec::new(start).lease_timeout_s(args.lease_timeout_s);
    if consumer.create_group(&spec).await? {
        eprintln!("[{member}] created group {}", args.group);
    }
    eprintln!(
        "[{member}] consuming {} as a member of {} (ctrl-c stops)",
        args.stream, args.group
    );

    let mut held: BTreeSet<String> = BTreeSet::new();
    // One listener for the whole run, so a ctrl-c while printing is seen at the next poll.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let batch = tokio::select! {
            batch = consumer.next_batch() => batch,
            _ = &mut interrupted => break,
        };
        let records = match batch {
            Ok(records) => records,
            Err(error) if error.is_retryable() => {
                eprintln!("[{member}] poll failed, retrying: {error}");
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
            Err(error) => return Err(error).context("poll"),
        };
        report_leases(&consumer, &mut held).await;
        for record in &records {
            println!(
                "[{member}] {} #{} key={} {}",
                record.shard_id,
                record.sequence,
                record.partition_key,
                String::from_utf8_lossy(&record.bytes())
            );
        }
        // The batch is processed: record that per shard, so a successor resumes after it.
        for (shard_id, sequence) in consumer.checkpoint_batch(&records).await?.lease_lost {
            eprintln!(
                "[{member}] lost {shard_id} before checkpointing #{sequence}; its new holder repeats those records"
            );
        }
    }
    eprintln!("[{member}] stopped; my shards move to the others after the lease timeout");
    Ok(())
}

/// Prints the shards this member holds whenever that set changes, so a rebalance or a
/// failover shows up in the output.
async fn report_leases(consumer: &StreamConsumer, held: &mut BTreeSet<String>) {
    let Ok(info) = consumer.describe_group().await else {
        return;
    };
    let now: BTreeSet<String> = info
        .held_by(consumer.member())
        .into_iter()
        .map(str::to_owned)
        .collect();
    if now != *held {
        eprintln!(
            "[{}] now holding {}",
            consumer.member(),
            if now.is_empty() {
                "no shards".to_owned()
            } else {
                now.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        );
        *held = now;
    }
}

//! The stream subcommands of the binary end to end: `put-records` stores what it reads,
//! `consume` prints what was put as JSON lines and checkpoints it, so the group's next
//! member continues where the last one stopped, and two `consume --follow` processes in one
//! group split the shards between them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use switchyard::wire::{GroupSpec, PutRecord, StartPosition, StreamSpec};

use crate::harness::{TestServer, eventually, spawn_server};

/// Longest wait for leases to lapse or move: several lease timeouts of the groups below.
const LEASE_WAIT: Duration = Duration::from_secs(15);

/// Longest wait for records to reach a following consumer.
const DELIVERY_WAIT: Duration = Duration::from_secs(20);

/// Parses the JSON lines a subcommand printed.
fn json_lines(stdout: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("{line:?}: {error}")))
        .collect()
}

/// Runs a subcommand that must succeed; returns its JSON lines.
async fn cli_ok(server: &TestServer, args: &[&str], stdin: &str) -> Vec<Value> {
    let output = server.cli(args, stdin).await;
    assert!(
        output.status.success(),
        "`switchyard {}` failed with {}: {}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    json_lines(&output.stdout)
}

/// The `data.n` of each printed record.
fn numbers(records: &[Value]) -> Vec<i64> {
    records
        .iter()
        .map(|record| record["data"]["n"].as_i64().expect("data.n is a number"))
        .collect()
}

/// Waits until `member` holds no lease in the group any more.
async fn wait_until_lease_lapses(server: &TestServer, stream: &str, group: &str, member: &str) {
    eventually(LEASE_WAIT, &format!("{member}'s leases lapse"), || async {
        let info = server.client.get_group(stream, group).await.ok()?;
        info.held_by(member).is_empty().then_some(())
    })
    .await;
}

#[tokio::test]
async fn consume_prints_what_was_put_and_checkpoints_so_the_next_member_continues() {
    let server = spawn_server(None).await;
    server
        .client
        .put_stream("clicks", &StreamSpec::new(2))
        .await
        .unwrap();
    let input: String = (0..10)
        .map(|n| format!("{}\n", json!({"user": format!("u{n}"), "n": n})))
        .collect();
    let placed = cli_ok(
        &server,
        &["put-records", "clicks", "--key-pointer", "/user", "--lines"],
        &input,
    )
    .await;
    assert_eq!(placed.len(), 10);
    assert_eq!(placed[0]["line"], 1);
    assert!(placed.iter().all(|p| p["sequence"].is_string()));

    let consume = |member: &'static str, count: Option<&'static str>| {
        let mut args = vec![
            "consume",
            "clicks",
            "--group",
            "g",
            "--member",
            member,
            "--lease-timeout-s",
            "1",
        ];
        if let Some(count) = count {
            args.extend(["--count", count]);
        }
        args
    };
    let first = cli_ok(&server, &consume("a", Some("4")), "").await;
    assert_eq!(first.len(), 4, "--count bounds the output: {first:?}");
    for record in &first {
        for field in [
            "shard_id",
            "sequence",
            "partition_key",
            "arrived_at",
            "data",
        ] {
            assert!(!record[field].is_null(), "{field} missing in {record}");
        }
        assert_eq!(
            record["partition_key"],
            json!(format!("u{}", record["data"]["n"]))
        );
    }

    // The group's checkpoints are the last printed record of each shard.
    let mut last_printed: BTreeMap<String, u64> = BTreeMap::new();
    for record in &first {
        let sequence: u64 = record["sequence"].as_str().unwrap().parse().unwrap();
        let shard = record["shard_id"].as_str().unwrap().to_owned();
        let entry = last_printed.entry(shard).or_insert(sequence);
        *entry = (*entry).max(sequence);
    }
    let info = server.client.get_group("clicks", "g").await.unwrap();
    let checkpoints: BTreeMap<String, u64> = info
        .shards
        .iter()
        .filter_map(|shard| {
            Some((
                shard.shard_id.clone(),
                shard.checkpoint.as_deref()?.parse().unwrap(),
            ))
        })
        .collect();
    assert_eq!(checkpoints, last_printed);

    // Once a's leases lapse, b resumes after a's checkpoints: nothing repeated, nothing
    // skipped.
    wait_until_lease_lapses(&server, "clicks", "g", "a").await;
    let rest = cli_ok(&server, &consume("b", None), "").await;
    let mut seen: Vec<i64> = numbers(&first);
    seen.extend(numbers(&rest));
    seen.sort_unstable();
    assert_eq!(seen, (0..10).collect::<Vec<_>>());

    // Everything is checkpointed: the next member finds nothing.
    wait_until_lease_lapses(&server, "clicks", "g", "b").await;
    assert!(cli_ok(&server, &consume("c", None), "").await.is_empty());
}

#[tokio::test]
async fn consume_without_checkpoints_leaves_the_records_to_the_next_member() {
    let server = spawn_server(None).await;
    server
        .client
        .put_stream("s", &StreamSpec::new(1))
        .await
        .unwrap();
    for n in 0..3 {
        let data = json!({"n": n}).to_string();
        let placed = cli_ok(
            &server,
            &["put-records", "s", "--key", "k", "--data", &data],
            "",
        )
        .await;
        assert_eq!(placed[0]["sequence"], json!((n + 1).to_string()));
    }
    let args = |member| {
        [
            "consume",
            "s",
            "--group",
            "g",
            "--member",
            member,
            "--lease-timeout-s",
            "1",
            "--no-checkpoint",
        ]
    };
    assert_eq!(numbers(&cli_ok(&server, &args("a"), "").await), [0, 1, 2]);
    wait_until_lease_lapses(&server, "s", "g", "a").await;
    assert_eq!(
        numbers(&cli_ok(&server, &args("b"), "").await),
        [0, 1, 2],
        "nothing was checkpointed, so b reads from the start"
    );
}

#[tokio::test]
async fn consume_latest_reads_only_records_put_after_the_group_was_created() {
    let server = spawn_server(None).await;
    let client = &server.client;
    client.put_stream("s", &StreamSpec::new(1)).await.unwrap();
    let old: Vec<PutRecord> = (0..3)
        .map(|n| PutRecord::new("k", json!({"n": n})))
        .collect();
    client.put_records("s", &old).await.unwrap();
    let args = ["consume", "s", "--group", "g", "--member", "a", "--latest"];
    assert!(cli_ok(&server, &args, "").await.is_empty());
    let info = client.get_group("s", "g").await.unwrap();
    assert_eq!(info.spec.start_position, StartPosition::Latest);
    let new: Vec<PutRecord> = (3..5)
        .map(|n| PutRecord::new("k", json!({"n": n})))
        .collect();
    client.put_records("s", &new).await.unwrap();
    assert_eq!(numbers(&cli_ok(&server, &args, "").await), [3, 4]);
}

/// A `consume --follow` process whose output lines are collected as they come.
struct Follower {
    child: Child,
    lines: Arc<Mutex<Vec<Value>>>,
}

impl Follower {
    fn start(server: &TestServer, args: &[&str]) -> Follower {
        let mut child = Command::new(env!("CARGO_BIN_EXE_switchyard"))
            .args(args)
            .arg("--url")
            .arg(&server.base_url)
            .env_remove("SWITCHYARD_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn the switchyard binary");
        let stdout = child.stdout.take().expect("stdout is piped");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let value = serde_json::from_str(&line)
                    .unwrap_or_else(|error| panic!("{line:?} is not JSON: {error}"));
                sink.lock().unwrap().push(value);
            }
        });
        Follower { child, lines }
    }

    fn records(&self) -> Vec<Value> {
        self.lines.lock().unwrap().clone()
    }

    /// Interrupts it as ctrl-c would and waits until it exits.
    async fn interrupt(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the child is not reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        eventually(Duration::from_secs(10), "the consumer exits", || {
            let exited = self.child.try_wait().expect("wait for the consumer");
            async move { exited.map(drop) }
        })
        .await;
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn two_consumers_in_one_group_split_the_shards() {
    let server = spawn_server(None).await;
    let client = &server.client;
    client.put_stream("s", &StreamSpec::new(4)).await.unwrap();
    client
        .put_group("s", "g", &GroupSpec::default().lease_timeout_s(2))
        .await
        .unwrap();
    let follow = |member| {
        [
            "consume", "s", "--group", "g", "--member", member, "--follow", "--wait-s", "1",
        ]
    };
    let a = Follower::start(&server, &follow("a"));
    let b = Follower::start(&server, &follow("b"));
    eventually(LEASE_WAIT, "a and b hold two shards each", || async {
        let info = client.get_group("s", "g").await.ok()?;
        (info.held_by("a").len() == 2 && info.held_by("b").len() == 2).then_some(())
    })
    .await;

    let records: Vec<PutRecord> = (0..40)
        .map(|n| PutRecord::new(format!("key-{n}"), json!({"n": n})))
        .collect();
    let placed = client.put_records("s", &records).await.unwrap();
    let shards_used: BTreeSet<&str> = placed.iter().map(|p| p.shard_id.as_str()).collect();
    assert_eq!(shards_used.len(), 4, "40 keys spread over all four shards");
    eventually(DELIVERY_WAIT, "all 40 records are printed", || async {
        (a.records().len() + b.records().len() >= 40).then_some(())
    })
    .await;
    let (from_a, from_b) = (a.records(), b.records());
    a.interrupt().await;
    b.interrupt().await;

    let shards_of = |records: &[Value]| -> BTreeSet<String> {
        records
            .iter()
            .map(|r| r["shard_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (shards_a, shards_b) = (shards_of(&from_a), shards_of(&from_b));
    assert_eq!(shards_a.len(), 2, "a read {shards_a:?}");
    assert_eq!(shards_b.len(), 2, "b read {shards_b:?}");
    assert!(
        shards_a.is_disjoint(&shards_b),
        "{shards_a:?} / {shards_b:?}"
    );
    let mut all = numbers(&from_a);
    all.extend(numbers(&from_b));
    all.sort_unstable();
    assert_eq!(all, (0..40).collect::<Vec<_>>(), "each record exactly once");
}

#[tokio::test]
async fn tail_prints_every_shard_from_a_position_without_a_group() {
    let server = spawn_server(None).await;
    server
        .client
        .put_stream("clicks", &StreamSpec::new(3))
        .await
        .unwrap();
    let input: String = (0..9)
        .map(|n| format!("{}\n", json!({"user": format!("u{n}"), "n": n})))
        .collect();
    cli_ok(
        &server,
        &["put-records", "clicks", "--key-pointer", "/user", "--lines"],
        &input,
    )
    .await;
    let all = cli_ok(
        &server,
        &["tail", "clicks", "--from", "trim_horizon", "--no-follow"],
        "",
    )
    .await;
    let mut seen = numbers(&all);
    seen.sort();
    assert_eq!(seen, (0..9).collect::<Vec<_>>());
    let some = cli_ok(
        &server,
        &["tail", "clicks", "--from", "trim_horizon", "--count", "4"],
        "",
    )
    .await;
    assert_eq!(some.len(), 4);
    let none = cli_ok(&server, &["tail", "clicks", "--no-follow"], "").await;
    assert!(
        none.is_empty(),
        "from latest there is nothing yet: {none:?}"
    );
    let group = server
        .json(
            reqwest::Method::GET,
            "/v1/streams/clicks/groups/tail",
            Value::Null,
        )
        .await;
    assert_eq!(
        group.0,
        reqwest::StatusCode::NOT_FOUND,
        "tail uses no group"
    );
}

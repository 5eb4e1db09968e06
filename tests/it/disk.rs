//! A full disk. The data directory sits on a small tmpfs that the test mounts (the suite
//! runs as root) and fills: new data is refused with a 507 that says the disk is full,
//! reads, receives and acks go on, nothing acknowledged is lost or changed, and writes
//! resume once space is freed, without a restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use switchyard::wire::{PublishRequest, ReceiveRequest, SendRequest, SubscriptionSpec};
use tempfile::TempDir;

use crate::harness::{Launch, TestServer, eventually, refused, topic_with_queues};

const MIB: u64 = 1 << 20;
/// The filesystem: room for the store's log segments and fjall's files with some left.
const DISK: u64 = 256 * MIB;
/// `--min-free-disk-mb` of the server under test.
const RESERVE_MIB: u64 = 32;
/// What the filler leaves free: below the reserve, far from nothing.
const LEAVE: u64 = 12 * MIB;

/// A tmpfs of a given size, unmounted when dropped.
struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    fn mount(bytes: u64) -> Tmpfs {
        let dir = tempfile::Builder::new()
            .prefix("switchyard-small-disk-")
            .tempdir()
            .expect("create a mount point");
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(
            status.success(),
            "mounting a {bytes}-byte tmpfs on {} failed ({status}): this test needs root",
            dir.path().display()
        );
        Tmpfs { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn free(&self) -> u64 {
        let s = rustix::fs::statvfs(self.path()).expect("statvfs of the tmpfs");
        s.f_bavail * s.f_frsize
    }

    /// Writes a file until only `leave` bytes are free; returns it.
    fn fill(&self, leave: u64) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create the filler");
        let chunk = vec![0xa5u8; MIB as usize];
        loop {
            let free = self.free();
            if free <= leave {
                break;
            }
            let n = (free - leave).min(MIB) as usize;
            file.write_all(&chunk[..n]).expect("fill the disk");
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a server still holding files in it is killed only after this returns.
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

fn body(i: usize) -> Value {
    json!({"order": i, "note": "x".repeat(2_000)})
}

/// Sends `body(i)` for each `i`; returns message id → `i`.
async fn send_all(s: &TestServer, range: std::ops::Range<usize>) -> BTreeMap<String, usize> {
    let mut sent = BTreeMap::new();
    for i in range {
        let id = s
            .client
            .send("orders", &SendRequest::new(body(i)))
            .await
            .unwrap_or_else(|e| panic!("send {i}: {e}"));
        sent.insert(id, i);
    }
    sent
}

async fn stream_records(s: &TestServer) -> Vec<Value> {
    let shard = s
        .ok(Method::GET, "/v1/streams/clicks/shards", Value::Null)
        .await["shards"][0]["shard_id"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(
        Method::GET,
        &format!("/v1/streams/clicks/shards/{shard}/records?from=trim_horizon&limit=1000"),
        Value::Null,
    )
    .await["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["data"].clone())
        .collect()
}

#[tokio::test]
async fn a_full_disk_refuses_new_data_keeps_what_was_acknowledged_and_recovers_without_restart() {
    let disk = Tmpfs::mount(DISK);
    let mut s = Launch::new(None, &["--min-free-disk-mb", &RESERVE_MIB.to_string()])
        .data_in(disk.path())
        .spawn()
        .await;
    topic_with_queues(
        &s.client,
        "orders",
        &[("orders", SubscriptionSpec::to_queue("orders").raw())],
    )
    .await;
    s.ok(Method::PUT, "/v1/streams/clicks", json!({"shards": 1}))
        .await;
    let mut sent = send_all(&s, 0..20).await;
    let clicks: Vec<Value> = (0..10).map(|i| json!({"click": i})).collect();
    let records: Vec<Value> = clicks
        .iter()
        .map(|d| json!({"partition_key": "k", "data": d}))
        .collect();
    s.ok(
        Method::POST,
        "/v1/streams/clicks/records",
        json!({ "records": records }),
    )
    .await;

    let filler = disk.fill(LEAVE);

    // New data of every kind is refused, saying why.
    let p = refused(
        s.client.send("orders", &SendRequest::new(body(99))).await,
        StatusCode::INSUFFICIENT_STORAGE,
    );
    assert_eq!(p.kind, "/problems/disk-full");
    assert!(
        p.detail.contains("free") && p.detail.contains("--min-free-disk-mb"),
        "{}",
        p.detail
    );
    refused(
        s.client
            .publish("orders", &PublishRequest::new(body(98)))
            .await,
        StatusCode::INSUFFICIENT_STORAGE,
    );
    let (status, v) = s
        .json(
            Method::POST,
            "/v1/streams/clicks/records",
            json!({"records": [{"partition_key": "k", "data": 1}]}),
        )
        .await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    let (status, v) = s.json(Method::PUT, "/v1/queues/another", json!({})).await;
    assert_eq!(status, StatusCode::INSUFFICIENT_STORAGE, "{v}");
    // SQS clients get their protocol's retryable error, not a 500.
    let res = s
        .http
        .post(s.url("/"))
        .header("content-type", "application/x-amz-json-1.0")
        .header("x-amz-target", "AmazonSQS.SendMessage")
        .body(json!({"QueueUrl": s.url("/000000000000/orders"), "MessageBody": "m"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let err: Value = res.json().await.unwrap();
    assert!(
        err["message"].as_str().unwrap_or_default().contains("full"),
        "{err}"
    );

    // Reads, receives and acks go on.
    let got = s
        .client
        .receive("orders", &ReceiveRequest::new(10))
        .await
        .expect("receive on a full disk");
    assert_eq!(got.len(), 10);
    let receipts: Vec<String> = got.iter().map(|m| m.receipt.clone()).collect();
    assert_eq!(s.client.ack("orders", &receipts).await.expect("ack"), 10);
    for m in &got {
        let i = sent.remove(&m.message_id).expect("a message that was sent");
        assert_eq!(m.message, body(i));
    }
    assert_eq!(stream_records(&s).await, clicks);

    // Space freed: writes resume in the same process.
    std::fs::remove_file(filler).unwrap();
    let id = eventually(
        Duration::from_secs(10),
        "a send after freeing space",
        || async {
            s.client
                .send("orders", &SendRequest::new(body(20)))
                .await
                .ok()
        },
    )
    .await;
    sent.insert(id, 20);
    sent.extend(send_all(&s, 21..25).await);
    s.ok(
        Method::POST,
        "/v1/streams/clicks/records",
        json!({"records": [{"partition_key": "k", "data": {"click": 10}}]}),
    )
    .await;
    assert!(
        !s.log_tail().contains("stops accepting writes"),
        "the store never failed:\n{}",
        s.log_tail()
    );

    // After a crash, exactly what was acknowledged and not yet acked is there, unchanged.
    s.kill9();
    s.restart().await;
    let mut left = BTreeMap::new();
    loop {
        let batch = s
            .client
            .receive("orders", &ReceiveRequest::new(10))
            .await
            .unwrap();
        if batch.is_empty() {
            break;
        }
        for m in batch {
            left.insert(m.message_id, m.message);
        }
    }
    let want: BTreeMap<String, Value> = sent.into_iter().map(|(id, i)| (id, body(i))).collect();
    assert_eq!(left, want);
    let mut all_clicks = clicks;
    all_clicks.push(json!({"click": 10}));
    assert_eq!(stream_records(&s).await, all_clicks);
}

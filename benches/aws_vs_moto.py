"""Server CPU per operation of Switchyard and of moto, driven by the same boto3 script.

Run: `scripts/bench-moto.sh` (builds the release binary, makes a virtual environment
with boto3 and moto, and runs this). Directly:
`python benches/aws_vs_moto.py --switchyard-bin target/release/switchyard [--count N]`.

Each server is started on a free loopback port, one after the other, and does the same
work: SQS SendMessage, SendMessageBatch (10), ReceiveMessage (10) + DeleteMessageBatch
until every message sent is received, SNS Publish to a topic with one filtered queue
subscription, and SNS Publish to a topic with 100 queue subscriptions of which 10 match.
The server's CPU time (user + system, from /proc) is read before and after each timed
phase; what it spent is divided by the operations of the phase. Every message is counted
where it should arrive, so a server that loses one fails the run instead of looking fast.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import boto3
import botocore.config

REGION = "us-east-1"
TICK = os.sysconf("SC_CLK_TCK")
BODY = "x" * 1000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    """User + system CPU of a process and its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def wait_until_up(url, process, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server at {url} exited with {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # it answers, whatever it answers
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the server at {url} did not come up in {timeout} s")


class Server:
    def __init__(self, name, command, port, health, data_dir=None):
        self.name, self.port, self.data_dir = name, port, data_dir
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_until_up(self.url + health, self.process)

    def cpu(self):
        return cpu_seconds(self.process.pid)

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
        if self.data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)


def clients(url):
    config = botocore.config.Config(retries={"max_attempts": 1}, max_pool_connections=4)
    make = lambda service: boto3.client(  # noqa: E731
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=config,
    )
    return make("sqs"), make("sns")


def queue(sqs, name):
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def drain(sqs, url, want, deadline_s=600):
    """Receives 10 at a time and deletes them in one batch until `want` came."""
    got, requests = 0, 0
    deadline = time.monotonic() + deadline_s
    while got < want and time.monotonic() < deadline:
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1
        ).get("Messages", [])
        requests += 1
        if not messages:
            continue
        entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
        requests += 1
        got += len(messages)
    if got != want:
        raise SystemExit(f"{url}: received {got} messages, {want} were sent")
    return requests


def timed(server, work):
    """Runs `work`; the server's CPU seconds meanwhile and what `work` returned."""
    before = server.cpu()
    result = work()
    return server.cpu() - before, result


def run_phases(server, count):
    sqs, sns = clients(server.url)
    out = {}

    url, _ = queue(sqs, "bench-send")
    cpu, _ = timed(server, lambda: [sqs.send_message(QueueUrl=url, MessageBody=BODY) for _ in range(count)])
    out["SQS SendMessage, 1 KiB"] = (cpu, count)

    batches = count // 10
    entries = [{"Id": str(i), "MessageBody": BODY} for i in range(10)]
    cpu, _ = timed(
        server, lambda: [sqs.send_message_batch(QueueUrl=url, Entries=entries) for _ in range(batches)]
    )
    out["SQS SendMessageBatch, 10 x 1 KiB"] = (cpu, batches)

    sent = count + batches * 10
    cpu, requests = timed(server, lambda: drain(sqs, url, sent))
    out["SQS ReceiveMessage 10 + DeleteMessageBatch"] = (cpu, requests // 2)

    topic = sns.create_topic(Name="bench-filtered")["TopicArn"]
    target, target_arn = queue(sqs, "bench-filtered")
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=target_arn,
        Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"kind": ["a"]})},
    )
    attrs = {"kind": {"DataType": "String", "StringValue": "a"}}
    cpu, _ = timed(
        server,
        lambda: [sns.publish(TopicArn=topic, Message=BODY, MessageAttributes=attrs) for _ in range(count)],
    )
    out["SNS Publish, 1 filtered queue subscription"] = (cpu, count)
    drain(sqs, target, count)

    topic = sns.create_topic(Name="bench-fanout")["TopicArn"]
    matching = []
    for i in range(100):
        url_i, arn_i = queue(sqs, f"bench-fanout-{i}")
        kind = "a" if i % 10 == 0 else f"other-{i}"
        sns.subscribe(
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=arn_i,
            Attributes={"RawMessageDelivery": "true", "FilterPolicy": json.dumps({"kind": [kind]})},
        )
        if kind == "a":
            matching.append(url_i)
    publishes = max(count // 10, 1)
    cpu, _ = timed(
        server,
        lambda: [
            sns.publish(TopicArn=topic, Message=BODY, MessageAttributes=attrs)
            for _ in range(publishes)
        ],
    )
    out["SNS Publish, 100 queue subscriptions, 10 match"] = (cpu, publishes)
    for url_i in matching:
        drain(sqs, url_i, publishes)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--switchyard-bin", required=True)
    parser.add_argument("--count", type=int, default=1000, help="operations per phase")
    args = parser.parse_args()
    moto_server = shutil.which("moto_server") or os.path.join(os.path.dirname(sys.executable), "moto_server")

    results = {}
    port = free_port()
    print(f"moto: {args.count} operations per phase ...", file=sys.stderr)
    server = Server("moto", [moto_server, "-H", "127.0.0.1", "-p", str(port)], port, "/moto-api/")
    try:
        results["moto"] = run_phases(server, args.count)
    finally:
        server.stop()

    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="switchyard-moto-bench-")
    print(f"switchyard: {args.count} operations per phase ...", file=sys.stderr)
    server = Server(
        "switchyard",
        [args.switchyard_bin, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data_dir],
        port,
        "/healthz",
        data_dir,
    )
    try:
        results["switchyard"] = run_phases(server, args.count)
    finally:
        server.stop()

    print("| phase | operations | moto CPU ms/op | Switchyard CPU ms/op | moto / Switchyard |")
    print("|---|---:|---:|---:|---:|")
    for phase, (moto_cpu, ops) in results["moto"].items():
        sy_cpu, sy_ops = results["switchyard"][phase]
        moto_ms, sy_ms = 1000 * moto_cpu / ops, 1000 * sy_cpu / sy_ops
        ratio = moto_ms / sy_ms if sy_ms > 0 else float("inf")
        print(f"| {phase} | {ops} / {sy_ops} | {moto_ms:.2f} | {sy_ms:.3f} | {ratio:.0f}x |")
    print(f"CPU clock tick: {1000 / TICK:.0f} ms; nothing was lost (every message counted).")


if __name__ == "__main__":
    main()

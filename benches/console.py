"""The console's speed on this machine: its first page load with 1,000 queues and 100
topics, measured in the browser, and whether a topic's live tail keeps up with 5,000
events a second. Prints a table.

Run: scripts/bench-console.sh [--queues N] [--topics N] [--rate N] [--seconds N]

A release server on a fresh data directory and a free loopback port; Debian's Chromium,
headless, driven by Playwright. Every loop is bounded in count and time.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

from playwright.sync_api import sync_playwright

FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
LOADS = 5


def call(base, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as res:
        return res.read()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(binary, data):
    port = free_port()
    server = subprocess.Popen(
        [binary, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", data],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            call(base, "GET", "/healthz")
            return server, base
        except OSError:
            time.sleep(0.05)
    server.kill()
    sys.exit("the server did not start within 60 s")


def populate(base, queues, topics):
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: call(base, "PUT", f"/v1/queues/q-{i:04}", {}), range(queues)))
        list(pool.map(lambda i: call(base, "PUT", f"/v1/topics/t-{i:03}", {}), range(topics)))
        list(pool.map(lambda i: call(base, "PUT", f"/v1/topics/t-{i:03}/subscriptions/s",
                                     {"endpoint": {"queue": f"q-{i:04}"}}), range(topics)))


def first_loads(page, base, last_queue):
    times = []
    for _ in range(LOADS):
        page.goto(f"{base}/ui/")
        page.wait_for_selector(f'[data-node="queue:{last_queue}"]', timeout=60_000)
        # Read with evaluate: the page's content security policy refuses what
        # wait_for_function would evaluate.
        drawn = "performance.getEntriesByName('topology-drawn').map((e) => e.startTime)"
        deadline = time.monotonic() + 60
        while not (mark := page.evaluate(drawn)):
            if time.monotonic() > deadline:
                sys.exit("the topology was never drawn")
            time.sleep(0.01)
        times.append(mark[0])
    return times


def tail(page, base, rate, seconds):
    page.goto(f"{base}/ui/#/topic/t-000")
    page.wait_for_selector("text=waiting for events")
    # The page's tail is connected once the server counts a watcher.
    deadline = time.monotonic() + 30
    while b'switchyard_topic_watchers{topic="t-000"} 1' not in call(base, "GET", "/metrics"):
        if time.monotonic() > deadline:
            sys.exit("the page's tail did not connect")
        time.sleep(0.05)
    batch = 50
    interval = batch / rate
    latencies = []
    sent = 0
    started = time.monotonic()

    def publish():
        nonlocal sent
        n = 0
        while time.monotonic() - started < seconds:
            entries = [{"message": {"n": n + i}} for i in range(batch)]
            t0 = time.monotonic()
            call(base, "POST", "/v1/topics/t-000/publish-batch", {"entries": entries})
            latencies.append(time.monotonic() - t0)
            n += batch
            sent = n
            pause = started + n / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)

    publishers = [threading.Thread(target=publish)]
    for p in publishers:
        p.start()
    for p in publishers:
        p.join()
    elapsed = time.monotonic() - started
    # Let the page catch up with what is on its way, then read its counters.
    time.sleep(2)
    shown = page.evaluate("""() => {
        const h = [...document.querySelectorAll('h2')].find(e => e.textContent.startsWith('Live tail'));
        const n = h.textContent.match(/(\\d+) events?/);
        const d = h.textContent.match(/(\\d+) dropped/);
        return [n ? Number(n[1]) : 0, d ? Number(d[1]) : 0];
    }""")
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1] if latencies else 0
    return sent, sent / elapsed, shown[0], shown[1], p99


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--switchyard-bin", required=True)
    ap.add_argument("--queues", type=int, default=1000)
    ap.add_argument("--topics", type=int, default=100)
    ap.add_argument("--rate", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="switchyard-console-") as data:
        server, base = start(a.switchyard_bin, data)
        try:
            populate(base, a.queues, a.topics)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                loads = first_loads(page, base, f"q-{a.queues - 1:04}")
                sent, achieved, shown, dropped, p99 = tail(page, base, a.rate, a.seconds)
                browser.close()
        finally:
            server.kill()
    rows = [
        (f"first page load, {a.queues} queues, {a.topics} topics (median of {LOADS})",
         f"{statistics.median(loads):.0f} ms (max {max(loads):.0f} ms)"),
        (f"live tail: published at {a.rate}/s for {a.seconds:.0f} s", f"{sent} events at {achieved:.0f}/s"),
        ("live tail: shown in the page", f"{shown} ({100 * shown / max(sent, 1):.1f} %)"),
        ("live tail: dropped, counted on the page", f"{dropped}"),
        ("live tail: shown + dropped", f"{shown + dropped} of {sent}"),
        ("publish-batch of 50 during the tail, p99", f"{1000 * p99:.1f} ms"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"{'measurement'.ljust(width)}  result")
    print(f"{'-' * width}  {'-' * 30}")
    for name, value in rows:
        print(f"{name.ljust(width)}  {value}")


if __name__ == "__main__":
    main()

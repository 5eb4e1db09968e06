"""Drives the web console at /ui in Debian's Chromium, headless, as a user would: the
topology, a topic's live tail and publish form, a queue's depth, a function's invoke
form and logs, the filter-policy tester, and the token login. Fails (non-zero exit, with
the step) when the page does not show what it should; saves a screenshot of each page.

Usage: console.py BASE_URL SCREENSHOT_DIR [TOKEN]
The server holds topic `orders` (subscription `audit` to queue `orders-audit` for
events with `"kind": ["order"]`), and function `fraud` (the fraud example).
"""

import sys
import time
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
# Chromium's background services reach for the network, which tests must not.
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 15_000


def main() -> None:
    base, shots = sys.argv[1].rstrip("/"), Path(sys.argv[2])
    token = sys.argv[3] if len(sys.argv) > 3 else None
    shots.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        started = time.monotonic()
        page.goto(f"{base}/ui/")
        if token:
            # The first call is refused: the page asks for the token, keeps it in the
            # tab, and goes on.
            expect(page.locator("#login")).to_be_visible()
            page.fill("#token", token)
            page.click("#login button")
        graph = page.get_by_test_id("topology")
        expect(graph.locator('[data-node="topic:orders"]')).to_be_visible()
        print(f"topology shown after {1000 * (time.monotonic() - started):.0f} ms")
        if token:
            assert page.evaluate("sessionStorage.getItem('switchyard-token')") == token
            page.screenshot(path=shots / "login.png")
            browser.close()
            assert not errors, errors
            return
        expect(graph.locator('[data-node="sub:orders/audit"]')).to_contain_text('"kind":["order"]')
        expect(graph.locator('[data-node="queue:orders-audit"]')).to_be_visible()
        expect(graph.locator('[data-node="function:fraud"]')).to_be_visible()
        # Live numbers arrive from /metrics.
        expect(graph.locator('[data-node="queue:orders-audit"] .live')).to_contain_text("visible")
        assert graph.locator("svg path").count() >= 2, "the topology draws its edges"
        page.screenshot(path=shots / "topology.png")

        # The queue before the publish.
        page.goto(f"{base}/ui/#/queue/orders-audit")
        counts = page.get_by_test_id("counts")
        expect(counts.locator("tr", has_text="visible").first).to_contain_text("0")

        # Publish from the form; the event appears in the live tail with where it went.
        # The topic page renders after its data arrives, and the queue page before it has
        # a message box too: fill the form only once the topic page is there.
        page.goto(f"{base}/ui/#/topic/orders")
        expect(page.locator("h2", has_text="Live tail")).to_be_visible()
        page.fill('textarea[aria-label="message"]', '{"order_id": "o-42", "total": 5}')
        page.fill('textarea[aria-label="attributes"]', '{"kind": "order"}')
        # The tail is connected once the page has rendered; give it the publish.
        tail = page.get_by_test_id("tail")
        deadline = time.monotonic() + TIMEOUT_MS / 1000
        published = 0
        while tail.locator(".event").count() == 0:
            page.get_by_role("button", name="Publish", exact=True).click()
            published += 1
            expect(page.get_by_test_id("publish-result")).to_contain_text("Published")
            if time.monotonic() > deadline:
                raise AssertionError("the published event never reached the live tail")
            page.wait_for_timeout(200)
        first = tail.locator(".event").first
        expect(first).to_contain_text("o-42")
        expect(first).to_contain_text("delivered to audit")
        page.screenshot(path=shots / "topic.png")

        # An invalid message is refused with the server's words.
        page.fill('textarea[aria-label="message"]', '{"order_id": ')
        page.get_by_role("button", name="Publish", exact=True).click()
        expect(page.get_by_test_id("publish-result")).to_contain_text("not JSON")

        # The queue's depth follows.
        page.goto(f"{base}/ui/#/queue/orders-audit")
        counts = page.get_by_test_id("counts")
        expect(counts.locator("tr", has_text="visible").first).to_contain_text(str(published))
        page.fill('input[aria-label="visibility timeout"]', "0")
        page.get_by_role("button", name="Receive up to 10", exact=True).click()
        expect(page.get_by_test_id("received")).to_contain_text("o-42")
        page.screenshot(path=shots / "queue.png")

        # A function invoked from its page shows its outcome and logs.
        page.goto(f"{base}/ui/#/function/fraud")
        page.fill('textarea[aria-label="event"]', '{"order_id": "o-7", "total": 5000, "country": "NL"}')
        page.get_by_role("button", name="Invoke", exact=True).click()
        outcome = page.get_by_test_id("invocation")
        expect(outcome).to_contain_text("Succeeded")
        expect(outcome).to_contain_text("order_flagged")
        expect(page.get_by_test_id("logs")).not_to_be_empty()
        # The invocation's lines reach the function's recent logs, which the page
        # refreshes.
        expect(page.get_by_test_id("recent-logs")).to_contain_text("o-7 flagged")
        page.screenshot(path=shots / "function.png", full_page=True)

        # The filter-policy tester answers as publishing would.
        page.goto(f"{base}/ui/#/policies")
        page.get_by_role("button", name="Test", exact=True).click()
        expect(page.get_by_test_id("policy-result")).to_have_text("Matches")
        page.fill('textarea[aria-label="message"]', '{"total": 50}')
        page.select_option('select[aria-label="scope"]', "MessageBody")
        page.fill('textarea[aria-label="policy"]', '{"total": [{"numeric": [">", 100]}]}')
        page.get_by_role("button", name="Test", exact=True).click()
        expect(page.get_by_test_id("policy-result")).to_have_text("Does not match")
        page.screenshot(path=shots / "policies.png")

        browser.close()
        assert not errors, f"the page raised: {errors}"


if __name__ == "__main__":
    main()

"""SNS `http` subscriptions through boto3 against a running Switchyard:
python sns_http_boto3.py BASE_URL.

The script serves the subscribers' endpoints itself: a local HTTP server that records
every request it gets and answers 200. Through it the checks follow a subscription as
AWS documents it: the SubscriptionConfirmation it is sent, confirming with the token or
by visiting the SubscribeURL, the notifications (SNS's JSON or, raw, the message
itself), filter policies, and unsubscribing. Each check is a function; the script runs
them all in order, each building on the last, and exits non-zero on the first failure,
naming it.
"""

import http.server
import json
import queue
import re
import sys
import threading
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections import namedtuple

from checks import client_at, eq, error_of, run

BASE = sys.argv[1]
REGION = "eu-west-1"
ACCOUNT = "000000000000"
TOPIC_NAME = "sh-hooks"
TOPIC = f"arn:aws:sns:{REGION}:{ACCOUNT}:{TOPIC_NAME}"
UUID = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
SUBSCRIPTION_ARN = re.compile(re.escape(TOPIC + ":") + UUID)
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z")


client = client_at(BASE, REGION)
sns = client("sns")


# The subscribers' side: every request any endpoint gets, in the order they came.
Request = namedtuple("Request", "method path headers body")
RECEIVED = queue.Queue()


class Recorder(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 so that a sender may keep its connection for the next delivery.
    protocol_version = "HTTP/1.1"

    def record(self):
        headers = {k.lower(): v for k, v in self.headers.items()}
        RECEIVED.put(Request(self.command, self.path, headers, self.read_body()))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    do_GET = do_POST = do_PUT = do_DELETE = record

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            # A sender may stream its body; what is recorded is the bytes it meant.
            body = b""
            while size := int(self.rfile.readline().split(b";")[0], 16):
                body += self.rfile.read(size)
                self.rfile.readline()
            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                pass
            return body
        return self.rfile.read(int(self.headers.get("content-length") or 0))

    def log_message(self, *args):
        # The report is the checks' lines; a line per request would bury them.
        pass


LISTENER = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
LISTENER.daemon_threads = True
threading.Thread(target=LISTENER.serve_forever, daemon=True).start()
HOOK = f"http://127.0.0.1:{LISTENER.server_address[1]}/hook"
OTHER = f"http://127.0.0.1:{LISTENER.server_address[1]}/other"


def next_request(timeout=10, what="a request"):
    try:
        return RECEIVED.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"{what} never reached the endpoints ({timeout} s)") from None


def request_within(seconds):
    """The next request if one comes within `seconds`, else None: for what may or must
    not come, where waiting that long is the only way to tell."""
    try:
        return RECEIVED.get(timeout=seconds)
    except queue.Empty:
        return None


def notifications(n, timeout=10):
    return [next_request(timeout, f"request {i + 1} of {n}") for i in range(n)]


def described(req):
    kind = req.headers.get("x-amz-sns-message-type")
    return f"{req.method} {req.path} ({kind}): {req.body[:200]!r}"


def body_of(req):
    return json.loads(req.body.decode("utf-8"))


def query_of(url):
    return {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(url).query).items()}


def sns_post(req, path, kind):
    """Checks what every SNS delivery to an endpoint carries; its JSON body."""
    eq((req.method, req.path), ("POST", path), f"{kind}: request")
    eq(req.headers.get("x-amz-sns-message-type"), kind, f"{kind}: message type header")
    eq(req.headers.get("x-amz-sns-topic-arn"), TOPIC, f"{kind}: topic header")
    # Media type and charset names are case-insensitive; AWS writes `charset=UTF-8`.
    eq(
        req.headers.get("content-type", "").lower(),
        "text/plain; charset=utf-8",
        f"{kind}: content-type",
    )
    body = body_of(req)
    eq(body.get("Type"), kind, f"{kind}: Type")
    eq(body.get("TopicArn"), TOPIC, f"{kind}: TopicArn")
    assert body.get("MessageId"), f"{kind}: no MessageId in {body}"
    eq(req.headers.get("x-amz-sns-message-id"), body["MessageId"], f"{kind}: message id header")
    assert TIMESTAMP.fullmatch(body.get("Timestamp", "")), f"{kind}: Timestamp in {body}"
    # Signed with AWS's key in AWS; a local server has none, and claims no signature.
    for field in ("Signature", "SignatureVersion", "SigningCertURL"):
        assert field not in body, f"{kind}: {field} in {body}"
    return body


def confirmation_of(req, path):
    """Checks a SubscriptionConfirmation sent to `path`; its body."""
    body = sns_post(req, path, "SubscriptionConfirmation")
    token = body.get("Token")
    assert isinstance(token, str) and token, f"Token in {body}"
    assert TOPIC_NAME in body.get("Message", ""), f"the Message names the topic: {body}"
    # AWS's SubscribeURL is the ConfirmSubscription call itself, so a subscriber that
    # cannot sign can still confirm by visiting it.
    eq(
        query_of(body.get("SubscribeURL", "")),
        {"Action": "ConfirmSubscription", "TopicArn": TOPIC, "Token": token},
        "SubscribeURL's query",
    )
    return body


def subscriptions_listed():
    """ListSubscriptionsByTopic as endpoint -> SubscriptionArn."""
    listed = sns.list_subscriptions_by_topic(TopicArn=TOPIC)["Subscriptions"]
    for s in listed:
        eq((s["Protocol"], s["TopicArn"]), ("http", TOPIC), f"listed {s['Endpoint']}")
    return {s["Endpoint"]: s["SubscriptionArn"] for s in listed}


# What the checks learn and later checks use: tokens, SubscribeURLs, subscription ARNs.
STATE = {}


def check_subscribe_answers_pending_confirmation():
    eq(sns.create_topic(Name=TOPIC_NAME)["TopicArn"], TOPIC, "topic ARN")
    eq(
        sns.subscribe(TopicArn=TOPIC, Protocol="http", Endpoint=HOOK)["SubscriptionArn"],
        "pending confirmation",
        "Subscribe without ReturnSubscriptionArn",
    )
    body = confirmation_of(next_request(what="the SubscriptionConfirmation"), "/hook")
    STATE["hook_token"] = body["Token"]


def check_subscribe_can_return_the_arn():
    arn = sns.subscribe(
        TopicArn=TOPIC, Protocol="http", Endpoint=OTHER, ReturnSubscriptionArn=True
    )["SubscriptionArn"]
    assert SUBSCRIPTION_ARN.fullmatch(arn), f"SubscriptionArn {arn!r}"
    body = confirmation_of(next_request(what="the SubscriptionConfirmation"), "/other")
    STATE["other_arn"] = arn
    STATE["other_subscribe_url"] = body["SubscribeURL"]
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    eq(attrs["PendingConfirmation"], "true", "PendingConfirmation")
    eq(attrs["Protocol"], "http", "Protocol")
    eq(attrs["Endpoint"], OTHER, "Endpoint")
    eq(attrs["TopicArn"], TOPIC, "TopicArn")


def check_pending_subscriptions_are_listed_and_get_nothing():
    eq(
        subscriptions_listed(),
        {HOOK: "PendingConfirmation", OTHER: "PendingConfirmation"},
        "ListSubscriptionsByTopic while pending",
    )
    # Whether this reaches an endpoint shows in the checks after confirming: every
    # request they take is matched to what they published.
    sns.publish(TopicArn=TOPIC, Message="too early")


def check_confirm_subscription():
    eq(
        error_of(sns.confirm_subscription, TopicArn=TOPIC, Token="wrong-" + STATE["hook_token"]),
        ("InvalidParameter", 400),
        "a wrong token",
    )
    arn = sns.confirm_subscription(TopicArn=TOPIC, Token=STATE["hook_token"])["SubscriptionArn"]
    assert SUBSCRIPTION_ARN.fullmatch(arn), f"SubscriptionArn {arn!r}"
    STATE["hook_arn"] = arn
    eq(
        sns.confirm_subscription(TopicArn=TOPIC, Token=STATE["hook_token"])["SubscriptionArn"],
        arn,
        "confirming again",
    )
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    eq(attrs["PendingConfirmation"], "false", "PendingConfirmation")
    eq(attrs["Protocol"], "http", "Protocol")
    eq(attrs["Endpoint"], HOOK, "Endpoint")
    eq(attrs["TopicArn"], TOPIC, "TopicArn")
    eq(attrs["RawMessageDelivery"], "false", "RawMessageDelivery")
    eq(
        subscriptions_listed(),
        {HOOK: arn, OTHER: "PendingConfirmation"},
        "ListSubscriptionsByTopic after confirming one",
    )


def check_notifications_after_confirmation():
    hello = sns.publish(
        TopicArn=TOPIC,
        Message="hello http",
        Subject="greeting",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "a"}},
    )["MessageId"]
    second = sns.publish(TopicArn=TOPIC, Message="second")["MessageId"]
    got = {}
    for req in notifications(2):
        body = sns_post(req, "/hook", "Notification")
        assert body.get("Message") != "too early", "a message published before confirming came"
        got[body["MessageId"]] = (req, body)
    eq(sorted(got), sorted([hello, second]), "the notifications are the two publishes")

    req, body = got[hello]
    eq(req.headers.get("x-amz-sns-subscription-arn"), STATE["hook_arn"], "subscription header")
    eq(body["Message"], "hello http", "Message")
    eq(body.get("Subject"), "greeting", "Subject")
    eq(body.get("MessageAttributes"), {"kind": {"Type": "String", "Value": "a"}}, "attributes")
    eq(
        query_of(body.get("UnsubscribeURL", "")),
        {"Action": "Unsubscribe", "SubscriptionArn": STATE["hook_arn"]},
        "UnsubscribeURL's query",
    )
    eq(got[second][1]["Message"], "second", "second Message")


def check_raw_message_delivery():
    arn = STATE["hook_arn"]
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="RawMessageDelivery", AttributeValue="true"
    )
    eq(
        sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]["RawMessageDelivery"],
        "true",
        "RawMessageDelivery",
    )
    text = "raw \u2713 text"
    sns.publish(TopicArn=TOPIC, Message=text)
    req = next_request(what="the raw delivery")
    eq((req.method, req.path), ("POST", "/hook"), "raw delivery: request")
    eq(req.body, text.encode("utf-8"), "the body is the message itself")
    eq(req.headers.get("x-amz-sns-rawdelivery"), "true", "rawdelivery header")


def check_filter_policy():
    arn = STATE["hook_arn"]
    policy = {"kind": ["b"]}
    sns.set_subscription_attributes(
        SubscriptionArn=arn, AttributeName="FilterPolicy", AttributeValue=json.dumps(policy)
    )
    attrs = sns.get_subscription_attributes(SubscriptionArn=arn)["Attributes"]
    eq(json.loads(attrs["FilterPolicy"]), policy, "FilterPolicy")
    for kind in ["a", "b"]:
        sns.publish(
            TopicArn=TOPIC,
            Message=f"kind {kind}",
            MessageAttributes={"kind": {"DataType": "String", "StringValue": kind}},
        )
    req = next_request(what="the matching publish")
    eq((req.path, req.body), ("/hook", b"kind b"), "only the matching publish")


def check_confirm_by_visiting_the_subscribe_url():
    with urllib.request.urlopen(STATE["other_subscribe_url"], timeout=10) as res:
        eq(res.status, 200, "SubscribeURL status")
        root = ET.fromstring(res.read())
    arn = root.find("{*}ConfirmSubscriptionResult/{*}SubscriptionArn")
    assert arn is not None, f"no ConfirmSubscriptionResult/SubscriptionArn in {ET.tostring(root)!r}"
    eq(arn.text, STATE["other_arn"], "the ARN Subscribe answered")
    attrs = sns.get_subscription_attributes(SubscriptionArn=STATE["other_arn"])["Attributes"]
    eq(attrs["PendingConfirmation"], "false", "PendingConfirmation")
    eq(
        subscriptions_listed(),
        {HOOK: STATE["hook_arn"], OTHER: STATE["other_arn"]},
        "ListSubscriptionsByTopic with both confirmed",
    )


def unsubscribed_told(arn, path):
    """Unsubscribes `arn` and checks the UnsubscribeConfirmation its endpoint is sent;
    its body."""
    sns.unsubscribe(SubscriptionArn=arn)
    req = next_request(what="the UnsubscribeConfirmation")
    body = sns_post(req, path, "UnsubscribeConfirmation")
    eq(req.headers.get("x-amz-sns-subscription-arn"), arn, "subscription header")
    assert arn in body.get("Message", ""), f"the Message names the subscription: {body}"
    token = body.get("Token")
    assert isinstance(token, str) and token, f"Token in {body}"
    eq(
        query_of(body.get("SubscribeURL", "")),
        {"Action": "ConfirmSubscription", "TopicArn": TOPIC, "Token": token},
        "SubscribeURL's query",
    )
    eq(
        error_of(sns.get_subscription_attributes, SubscriptionArn=arn),
        ("NotFound", 404),
        "unsubscribed",
    )
    return body


def check_unsubscribe_and_restore_with_the_subscribe_url():
    arn = STATE["hook_arn"]
    told = unsubscribed_told(arn, "/hook")
    eq(subscriptions_listed(), {OTHER: STATE["other_arn"]}, "ListSubscriptionsByTopic")
    # Visiting the SubscribeURL it was sent restores the subscription as it was.
    with urllib.request.urlopen(told["SubscribeURL"], timeout=10) as res:
        eq(res.status, 200, "SubscribeURL status")
        root = ET.fromstring(res.read())
    eq(root.find("{*}ConfirmSubscriptionResult/{*}SubscriptionArn").text, arn, "restored ARN")
    eq(
        subscriptions_listed(),
        {HOOK: arn, OTHER: STATE["other_arn"]},
        "ListSubscriptionsByTopic after restoring",
    )
    sent = sns.publish(
        TopicArn=TOPIC,
        Message="restored",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "b"}},
    )["MessageId"]
    got = {r.path: r for r in notifications(2)}
    eq(sorted(got), ["/hook", "/other"], "both endpoints get the publish")
    eq(got["/hook"].body, b"restored", "the restored subscription is raw, as it was")
    eq(body_of(got["/other"])["MessageId"], sent, "the other endpoint")


def check_unsubscribe():
    unsubscribed_told(STATE["hook_arn"], "/hook")
    eq(subscriptions_listed(), {OTHER: STATE["other_arn"]}, "ListSubscriptionsByTopic")
    sent = sns.publish(TopicArn=TOPIC, Message="after unsubscribe")["MessageId"]
    req = next_request(what="the publish after unsubscribing")
    body = sns_post(req, "/other", "Notification")
    eq((body["MessageId"], body["Message"]), (sent, "after unsubscribe"), "the publish")
    eq(req.headers.get("x-amz-sns-subscription-arn"), STATE["other_arn"], "subscription header")


def check_errors():
    eq(
        error_of(sns.subscribe, TopicArn=TOPIC, Protocol="https", Endpoint=HOOK),
        ("InvalidParameter", 400),
        "https with an http:// endpoint",
    )
    eq(
        error_of(sns.subscribe, TopicArn=TOPIC, Protocol="http", Endpoint="not a url"),
        ("InvalidParameter", 400),
        "http with an endpoint that is no URL",
    )


def check_nothing_else_arrived():
    # Deliveries for one publish leave together, so anything owed (a message published
    # before confirming, one the filter kept away, one for the unsubscribed endpoint)
    # has had its time by now; a second more shows it.
    stray = request_within(1)
    assert stray is None, f"unexpected request: {described(stray)}"


CHECKS = [
    check_subscribe_answers_pending_confirmation,
    check_subscribe_can_return_the_arn,
    check_pending_subscriptions_are_listed_and_get_nothing,
    check_confirm_subscription,
    check_notifications_after_confirmation,
    check_raw_message_delivery,
    check_filter_policy,
    check_confirm_by_visiting_the_subscribe_url,
    check_unsubscribe_and_restore_with_the_subscribe_url,
    check_unsubscribe,
    check_errors,
    check_nothing_else_arrived,
]

run(CHECKS)

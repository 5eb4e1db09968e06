"""SQS through boto3 against a running Switchyard:
python sqs_boto3.py BASE_URL [PROTOCOL], PROTOCOL being what this boto3 must speak
(`json` for current ones, `query` for those from before 2024).

Each check is a function; the script runs them all and exits non-zero on the first
failure, naming it. MD5s are computed here, independently of the server, as AWS
documents them.
"""

import hashlib
import json
import struct
import sys
import time

import boto3
import botocore.config
import botocore.exceptions

from checks import eq, run, v1_at

BASE = sys.argv[1]
REGION = "eu-west-1"
sqs = boto3.client(
    "sqs",
    endpoint_url=BASE,
    region_name=REGION,
    aws_access_key_id="test",
    aws_secret_access_key="test",
    config=botocore.config.Config(retries={"max_attempts": 1}),
)
PROTOCOL = sqs.meta.service_model.protocol
if len(sys.argv) > 2:
    assert PROTOCOL == sys.argv[2], f"this boto3 speaks {PROTOCOL}, not {sys.argv[2]}"
print(f"boto3 {boto3.__version__} speaks SQS's {PROTOCOL} protocol")
# Clients from before MessageSystemAttributeNames asked with AttributeNames.
RECEIVE_INPUT = sqs.meta.service_model.operation_model("ReceiveMessage").input_shape.members
ALL_SYSTEM_ATTRIBUTES = (
    {"MessageSystemAttributeNames": ["All"]}
    if "MessageSystemAttributeNames" in RECEIVE_INPUT
    else {"AttributeNames": ["All"]}
)


v1 = v1_at(BASE)


def md5(text):
    return hashlib.md5(text.encode()).hexdigest()


def attributes_md5(attributes):
    """MD5OfMessageAttributes as AWS documents it."""
    out = b""
    for name in sorted(attributes):
        a = attributes[name]
        for field in (name, a["DataType"]):
            raw = field.encode()
            out += struct.pack(">I", len(raw)) + raw
        if "BinaryValue" in a:
            value = a["BinaryValue"]
            out += b"\x02" + struct.pack(">I", len(value)) + value
        else:
            value = a["StringValue"].encode()
            out += b"\x01" + struct.pack(">I", len(value)) + value
    return hashlib.md5(out).hexdigest()


def error_code(call, *args, **kwargs):
    try:
        call(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"]
    raise AssertionError(f"{call.__name__} succeeded; an error was expected")


def receive(url, **kwargs):
    return sqs.receive_message(QueueUrl=url, **kwargs).get("Messages", [])


def check_queue_lifecycle():
    url = sqs.create_queue(QueueName="orders")["QueueUrl"]
    eq(url, f"{BASE}/000000000000/orders", "queue URL")
    eq(sqs.get_queue_url(QueueName="orders")["QueueUrl"], url, "GetQueueUrl")
    assert url in sqs.list_queues()["QueueUrls"], "ListQueues lists it"
    eq(sqs.list_queues(QueueNamePrefix="ord")["QueueUrls"], [url], "prefix")
    assert "QueueUrls" not in sqs.list_queues(QueueNamePrefix="zzz"), "no match"
    # Creating it again with the same attributes is fine, with others it is not.
    eq(sqs.create_queue(QueueName="orders")["QueueUrl"], url, "create again")
    eq(
        error_code(
            sqs.create_queue,
            QueueName="orders",
            Attributes={"VisibilityTimeout": "99"},
        ),
        "QueueAlreadyExists",
        "create with other attributes",
    )
    # /v1 sees the queue SQS made.
    eq(v1("GET", "/v1/queues/orders")["visibility_timeout_s"], 30, "/v1 view")


def check_attributes():
    dlq = sqs.create_queue(QueueName="orders-dlq")["QueueUrl"]
    url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    eq(dlq_arn, f"arn:aws:sqs:{REGION}:000000000000:orders-dlq", "QueueArn")
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "4"})
    sqs.set_queue_attributes(
        QueueUrl=url,
        Attributes={"VisibilityTimeout": "45", "RedrivePolicy": policy},
    )
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    eq(attrs["VisibilityTimeout"], "45", "VisibilityTimeout")
    eq(attrs["DelaySeconds"], "0", "DelaySeconds")
    eq(attrs["MessageRetentionPeriod"], "345600", "MessageRetentionPeriod")
    eq(attrs["MaximumMessageSize"], "262144", "MaximumMessageSize")
    eq(attrs["ApproximateNumberOfMessages"], "0", "ApproximateNumberOfMessages")
    # Epoch seconds: created before this check's change, changed by it.
    now = time.time()
    created, modified = int(attrs["CreatedTimestamp"]), int(attrs["LastModifiedTimestamp"])
    assert now - 300 < created <= modified <= now + 1, (created, modified, now)
    eq(
        json.loads(attrs["RedrivePolicy"]),
        {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 4},
        "RedrivePolicy",
    )
    eq(
        v1("GET", "/v1/queues/orders")["redrive_policy"],
        {"dead_letter_queue": "orders-dlq", "max_receive_count": 4},
        "/v1 sees the redrive policy",
    )
    eq(
        error_code(
            sqs.set_queue_attributes, QueueUrl=url, Attributes={"Colour": "red"}
        ),
        "InvalidAttributeName",
        "unknown attribute",
    )
    eq(
        error_code(
            sqs.set_queue_attributes,
            QueueUrl=url,
            Attributes={"VisibilityTimeout": "99999"},
        ),
        "InvalidAttributeValue",
        "out of range",
    )
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"RedrivePolicy": ""})


def check_send_receive_delete():
    url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
    # Text that looks like JSON, quotes, escapes and non-ASCII come back byte for byte.
    body = '{"id": 7,  "note": "caf\u00e9 \\"quoted\\"\\n"}\t\u2603'
    attributes = {
        "colour": {"DataType": "String", "StringValue": "red"},
        "price": {"DataType": "Number", "StringValue": "1.50"},
        "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xfe"},
    }
    sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes=attributes)
    eq(sent["MD5OfMessageBody"], md5(body), "MD5OfMessageBody")
    eq(sent["MD5OfMessageAttributes"], attributes_md5(attributes), "attributes MD5")
    plain = sqs.send_message(QueueUrl=url, MessageBody="plain")
    assert "MD5OfMessageAttributes" not in plain, "no attribute MD5 without attributes"

    got = receive(
        url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        **ALL_SYSTEM_ATTRIBUTES,
    )
    eq(len(got), 2, "two messages")
    first = next(m for m in got if m["MessageId"] == sent["MessageId"])
    eq(first["Body"], body, "body")
    eq(first["MD5OfBody"], md5(body), "MD5OfBody")
    eq(first["MessageAttributes"], attributes, "message attributes")
    eq(first["MD5OfMessageAttributes"], attributes_md5(attributes), "received MD5")
    eq(first["Attributes"]["ApproximateReceiveCount"], "1", "receive count")
    sent_at = int(first["Attributes"]["SentTimestamp"])
    assert sent_at > 1_700_000_000_000, "SentTimestamp"
    first_receive = int(first["Attributes"]["ApproximateFirstReceiveTimestamp"])
    assert sent_at <= first_receive <= time.time() * 1000 + 1, "ApproximateFirstReceiveTimestamp"
    assert "MessageDeduplicationId" not in first["Attributes"], "no dedup id outside FIFO"
    # Only the attributes asked for.
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=first["ReceiptHandle"], VisibilityTimeout=0
    )
    again = receive(url, MessageAttributeNames=["col.*", "price"], AttributeNames=["ApproximateReceiveCount"])
    eq(len(again), 1, "visible again")
    eq(sorted(again[0]["MessageAttributes"]), ["price"], "attributes by name")
    eq(again[0]["Attributes"], {"ApproximateReceiveCount": "2"}, "receive count 2")
    sqs.change_message_visibility(
        QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"], VisibilityTimeout=0
    )
    again = receive(url, AttributeNames=["ApproximateFirstReceiveTimestamp"])
    eq(
        again[0]["Attributes"],
        {"ApproximateFirstReceiveTimestamp": str(first_receive)},
        "the first receive's time, received again",
    )

    for m in got:
        sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])
    eq(receive(url, WaitTimeSeconds=1), [], "empty after delete")
    eq(
        error_code(sqs.delete_message, QueueUrl=url, ReceiptHandle="not-a-receipt"),
        "ReceiptHandleIsInvalid",
        "malformed receipt",
    )


def check_batches():
    url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
    out = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "a", "MessageBody": "one"},
            {"Id": "b", "MessageBody": "x" * 300_000},
            {"Id": "c", "MessageBody": "three", "DelaySeconds": 0},
        ],
    )
    eq(sorted(s["Id"] for s in out["Successful"]), ["a", "c"], "batch successes")
    eq([f["Id"] for f in out["Failed"]], ["b"], "batch failures")
    assert out["Failed"][0]["SenderFault"], "the sender's fault"
    for s in out["Successful"]:
        eq(s["MD5OfMessageBody"], md5({"a": "one", "c": "three"}[s["Id"]]), "batch MD5")
    eq(
        error_code(
            sqs.send_message_batch,
            QueueUrl=url,
            Entries=[{"Id": "a", "MessageBody": "1"}, {"Id": "a", "MessageBody": "2"}],
        ),
        "AWS.SimpleQueueService.BatchEntryIdsNotDistinct",
        "repeated ids",
    )
    eq(
        error_code(
            sqs.send_message_batch,
            QueueUrl=url,
            Entries=[{"Id": f"e{i}", "MessageBody": "x"} for i in range(11)],
        ),
        "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
        "eleven entries",
    )
    got = receive(url, MaxNumberOfMessages=10)
    eq(sorted(m["Body"] for m in got), ["one", "three"], "batch received")
    changed = sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": "v1", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 60},
            {"Id": "v2", "ReceiptHandle": "bogus", "VisibilityTimeout": 60},
        ],
    )
    eq([s["Id"] for s in changed["Successful"]], ["v1"], "visibility batch")
    eq(changed["Failed"][0]["Code"], "ReceiptHandleIsInvalid", "visibility failure")
    deleted = sqs.delete_message_batch(
        QueueUrl=url,
        Entries=[{"Id": f"d{i}", "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
        + [{"Id": "bad", "ReceiptHandle": "bogus"}],
    )
    eq(len(deleted["Successful"]), 2, "deleted")
    eq(deleted["Failed"][0]["Id"], "bad", "bad receipt")
    eq(deleted["Failed"][0]["Code"], "ReceiptHandleIsInvalid", "bad receipt code")


def check_fifo():
    url = sqs.create_queue(
        QueueName="jobs.fifo",
        Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"},
    )["QueueUrl"]
    ids, sequences = [], []
    for n in range(2):
        sent = sqs.send_message(QueueUrl=url, MessageBody=f"job {n}", MessageGroupId="g")
        ids.append(sent["MessageId"])
        sequences.append(sent["SequenceNumber"])
    # A content-based id is the SHA-256 of the body, as SQS derives it; one given is kept.
    dedup_ids = [hashlib.sha256(f"job {n}".encode()).hexdigest() for n in range(2)] + ["given-2"]
    batch = sqs.send_message_batch(
        QueueUrl=url,
        Entries=[
            {
                "Id": "b",
                "MessageBody": "job 2",
                "MessageGroupId": "g",
                "MessageDeduplicationId": "given-2",
            }
        ],
    )["Successful"][0]
    ids.append(batch["MessageId"])
    sequences.append(batch["SequenceNumber"])
    # Decimal, increasing in the order sent, and sorting as text as they do as numbers.
    assert all(s.isdigit() for s in sequences), sequences
    eq(sorted(sequences), sequences, "sequence numbers increase")
    eq(len(set(sequences)), 3, "sequence numbers are distinct")
    # The same body again is a duplicate: accepted, answered with the original's id.
    dup = sqs.send_message(QueueUrl=url, MessageBody="job 0", MessageGroupId="g")
    eq(dup["MessageId"], ids[0], "content-based dedup")
    bodies, received_sequences, received_dedup_ids = [], [], []
    while True:
        got = receive(url, MaxNumberOfMessages=10, **ALL_SYSTEM_ATTRIBUTES)
        if not got:
            break
        for m in got:
            eq(m["Attributes"]["MessageGroupId"], "g", "MessageGroupId")
            bodies.append(m["Body"])
            received_sequences.append(m["Attributes"]["SequenceNumber"])
            received_dedup_ids.append(m["Attributes"]["MessageDeduplicationId"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    eq(bodies, ["job 0", "job 1", "job 2"], "FIFO order")
    eq(received_sequences, sequences, "a received message's sequence number is its send's")
    eq(received_dedup_ids, dedup_ids, "MessageDeduplicationId")
    eq(
        error_code(sqs.send_message, QueueUrl=url, MessageBody="no group"),
        "InvalidParameterValue",
        "a FIFO send needs a group",
    )


def check_v1_messages_through_sqs():
    v1("PUT", "/v1/queues/mixed", {})
    v1("POST", "/v1/queues/mixed/messages", {"message": {"a": [1, 2]}})
    v1("POST", "/v1/queues/mixed/messages", {"message": "just text"})
    url = sqs.get_queue_url(QueueName="mixed")["QueueUrl"]
    got = receive(url, MaxNumberOfMessages=10)
    # A JSON message is its text as it was sent (json.dumps spaces it so).
    eq(sorted(m["Body"] for m in got), ["just text", '{"a": [1, 2]}'], "bodies")
    sqs.send_message(QueueUrl=url, MessageBody="from sqs")
    sent = v1("POST", "/v1/queues/mixed/receive", {"max_messages": 10})
    eq([m["message"] for m in sent["messages"]], ["from sqs"], "/v1 reads a string")


def check_errors():
    eq(
        error_code(sqs.get_queue_url, QueueName="nope"),
        "AWS.SimpleQueueService.NonExistentQueue",
        "missing queue",
    )
    try:
        sqs.get_queue_url(QueueName="nope")
    except sqs.exceptions.QueueDoesNotExist:
        pass
    eq(
        error_code(
            sqs.send_message,
            QueueUrl=f"{BASE}/000000000000/nope",
            MessageBody="x",
        ),
        "AWS.SimpleQueueService.NonExistentQueue",
        "send to a missing queue",
    )
    eq(
        error_code(sqs.receive_message, QueueUrl=f"{BASE}/000000000000/orders", MaxNumberOfMessages=11),
        "InvalidParameterValue",
        "eleven messages",
    )


def check_purge_and_delete():
    url = sqs.get_queue_url(QueueName="orders")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="gone soon")
    sqs.purge_queue(QueueUrl=url)
    eq(receive(url), [], "purged")
    sqs.delete_queue(QueueUrl=url)
    eq(
        error_code(sqs.get_queue_url, QueueName="orders"),
        "AWS.SimpleQueueService.NonExistentQueue",
        "deleted",
    )


def check_tags_and_dead_letter_sources():
    url = sqs.create_queue(QueueName="tagged", tags={"team": "billing", "env": "dev"})["QueueUrl"]
    eq(sqs.list_queue_tags(QueueUrl=url)["Tags"], {"team": "billing", "env": "dev"}, "tags at create")
    sqs.tag_queue(QueueUrl=url, Tags={"env": "prod", "cost": "42 & <more>"})
    sqs.untag_queue(QueueUrl=url, TagKeys=["team"])
    eq(
        sqs.list_queue_tags(QueueUrl=url)["Tags"],
        {"env": "prod", "cost": "42 & <more>"},
        "tags after tag and untag",
    )
    eq(v1("GET", "/v1/queues/tagged")["tags"], {"env": "prod", "cost": "42 & <more>"}, "/v1 tags")
    # Creating it again, without tags, keeps them.
    sqs.create_queue(QueueName="tagged")
    eq(len(sqs.list_queue_tags(QueueUrl=url)["Tags"]), 2, "tags kept")
    eq(
        error_code(sqs.tag_queue, QueueUrl=url, Tags={"aws:reserved": "x"}),
        "InvalidAttributeValue",
        "reserved tag key",
    )

    dlq = sqs.create_queue(QueueName="graveyard")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "3"})
    for name in ["src-b", "src-a"]:
        sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})
    sources = sqs.list_dead_letter_source_queues(QueueUrl=dlq)["queueUrls"]
    eq(sources, [f"{BASE}/000000000000/src-a", f"{BASE}/000000000000/src-b"], "sources")
    eq(sqs.list_dead_letter_source_queues(QueueUrl=url).get("queueUrls", []), [], "no sources")
    for name in ["src-a", "src-b", "graveyard", "tagged"]:
        sqs.delete_queue(QueueUrl=f"{BASE}/000000000000/{name}")


def queue_arn(url):
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]


def visible(url):
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])
    return int(attrs["Attributes"]["ApproximateNumberOfMessages"])


def task_ended(source_arn, handle=None):
    """The newest move task of `source_arn` once it has ended (a bounded wait)."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        task = sqs.list_message_move_tasks(SourceArn=source_arn)["Results"][0]
        if task["Status"] not in ("RUNNING", "CANCELLING"):
            return task
        time.sleep(0.05)
    raise AssertionError(f"the move task of {source_arn} did not end: {task}")


def check_message_move_tasks():
    dlq = sqs.create_queue(QueueName="mv-dlq")["QueueUrl"]
    dlq_arn = queue_arn(dlq)
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "1"})
    src = sqs.create_queue(QueueName="mv-src", Attributes={"RedrivePolicy": policy})["QueueUrl"]
    other = sqs.create_queue(QueueName="mv-other")["QueueUrl"]
    for i in range(3):
        sqs.send_message(QueueUrl=src, MessageBody=f"dead {i}")
    # Received once, then once more: past maxReceiveCount, the second receive moves them.
    eq(len(receive(src, MaxNumberOfMessages=10, VisibilityTimeout=0)), 3, "first receive")
    eq(receive(src, MaxNumberOfMessages=10, VisibilityTimeout=0), [], "second receive")
    eq(visible(dlq), 3, "dead letters")

    handle = sqs.start_message_move_task(SourceArn=dlq_arn)["TaskHandle"]
    assert handle, "a task handle"
    task = task_ended(dlq_arn)
    eq(task["Status"], "COMPLETED", "status")
    eq(task["ApproximateNumberOfMessagesMoved"], 3, "moved")
    eq(task["ApproximateNumberOfMessagesToMove"], 3, "to move")
    eq(task["SourceArn"], dlq_arn, "source")
    assert "TaskHandle" not in task, task
    eq(sorted(m["Body"] for m in receive(src, MaxNumberOfMessages=10)), ["dead 0", "dead 1", "dead 2"], "back home")
    eq(visible(dlq), 0, "dead-letter queue emptied")

    # To a destination of its own, at a bounded rate.
    for i in range(2):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"direct {i}")
    sqs.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=queue_arn(other), MaxNumberOfMessagesPerSecond=100
    )
    task = task_ended(dlq_arn)
    eq((task["Status"], task["ApproximateNumberOfMessagesMoved"]), ("COMPLETED", 2), "moved to other")
    eq(task["DestinationArn"], queue_arn(other), "destination")
    eq(task["MaxNumberOfMessagesPerSecond"], 100, "rate")
    eq(sorted(m["Body"] for m in receive(other, MaxNumberOfMessages=10)), ["direct 0", "direct 1"], "at the destination")

    # One a second: cancelled at once, most stay.
    for i in range(5):
        sqs.send_message(QueueUrl=dlq, MessageBody=f"slow {i}")
    handle = sqs.start_message_move_task(
        SourceArn=dlq_arn, DestinationArn=queue_arn(other), MaxNumberOfMessagesPerSecond=1
    )["TaskHandle"]
    eq(
        error_code(sqs.start_message_move_task, SourceArn=dlq_arn),
        "AWS.SimpleQueueService.UnsupportedOperation",
        "a second task on the same source",
    )
    moved = sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
    assert moved <= 1, moved
    task = task_ended(dlq_arn)
    eq(task["Status"], "CANCELLED", "cancelled")
    assert visible(dlq) >= 4, "a cancelled task leaves the rest"
    assert task["ApproximateNumberOfMessagesMoved"] <= 1, task

    eq(
        error_code(sqs.cancel_message_move_task, TaskHandle=handle),
        "AWS.SimpleQueueService.UnsupportedOperation",
        "cancelling an ended task",
    )
    eq(
        error_code(sqs.cancel_message_move_task, TaskHandle="no-such-task"),
        "ResourceNotFoundException",
        "an unknown task",
    )
    eq(
        error_code(sqs.start_message_move_task, SourceArn=queue_arn(other)),
        "AWS.SimpleQueueService.UnsupportedOperation",
        "a queue that is no dead-letter queue",
    )
    for url in [src, dlq, other]:
        sqs.delete_queue(QueueUrl=url)


CHECKS = [
    check_queue_lifecycle,
    check_message_move_tasks,
    check_tags_and_dead_letter_sources,
    check_attributes,
    check_send_receive_delete,
    check_batches,
    check_fifo,
    check_v1_messages_through_sqs,
    check_errors,
    check_purge_and_delete,
]

run(CHECKS)

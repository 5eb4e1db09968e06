"""SNS through boto3 against a running Switchyard: python sns_boto3.py BASE_URL.

SNS answers in XML over the query protocol; these checks go through boto3's own parser,
and through SQS (over its JSON protocol) for what subscribers receive. Each check is a
function; the script runs them all and exits non-zero on the first failure, naming it.
"""

import json
import sys

from checks import client_at, eq, error_of, run, v1_at

BASE = sys.argv[1]
REGION = "eu-west-1"
ACCOUNT = "000000000000"


client = client_at(BASE, REGION)
sns = client("sns")
sqs = client("sqs")


v1 = v1_at(BASE)


def queue(name, **attributes):
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def drain(url, want):
    """Receives until `want` messages came (long polls, bounded), deleting each."""
    got = []
    for _ in range(10):
        if len(got) >= want:
            break
        out = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            MessageAttributeNames=["All"],
        )
        for m in out.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    return got


def check_topic_lifecycle():
    arn = sns.create_topic(Name="orders", Attributes={"DisplayName": "Orders"})["TopicArn"]
    eq(arn, f"arn:aws:sns:{REGION}:{ACCOUNT}:orders", "topic ARN")
    eq(sns.create_topic(Name="orders")["TopicArn"], arn, "CreateTopic again")
    topics = [t["TopicArn"] for t in sns.list_topics()["Topics"]]
    assert arn in topics, topics
    attrs = sns.get_topic_attributes(TopicArn=arn)["Attributes"]
    eq(attrs["TopicArn"], arn, "TopicArn attribute")
    eq(attrs["DisplayName"], "Orders", "DisplayName")
    eq(attrs["SubscriptionsConfirmed"], "0", "no subscriptions")
    sns.set_topic_attributes(TopicArn=arn, AttributeName="DisplayName", AttributeValue="O & <P>")
    eq(
        sns.get_topic_attributes(TopicArn=arn)["Attributes"]["DisplayName"],
        "O & <P>",
        "DisplayName set, escaped and read back",
    )
    # The same topic through /v1.
    eq(v1("GET", "/v1/topics/orders")["display_name"], "O & <P>", "/v1 sees it")
    fifo = sns.create_topic(
        Name="ledger.fifo",
        Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"},
    )["TopicArn"]
    fattrs = sns.get_topic_attributes(TopicArn=fifo)["Attributes"]
    eq(fattrs["FifoTopic"], "true", "FifoTopic")
    eq(fattrs["ContentBasedDeduplication"], "true", "ContentBasedDeduplication")
    eq(
        error_of(sns.create_topic, Name="ledger.fifo", Attributes={"FifoTopic": "true"})[0],
        "InvalidParameter",
        "CreateTopic with other attributes",
    )
    sns.delete_topic(TopicArn=fifo)
    sns.delete_topic(TopicArn=fifo)  # deleting what is gone succeeds, as in SNS
    eq(
        error_of(sns.get_topic_attributes, TopicArn=fifo),
        ("NotFound", 404),
        "deleted topic",
    )


def check_fanout_with_filters_and_raw_delivery():
    topic = sns.create_topic(Name="shop")["TopicArn"]
    all_url, all_arn = queue("shop-all")
    big_url, big_arn = queue("shop-big")
    raw_url, raw_arn = queue("shop-raw")
    sub_all = sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=all_arn)["SubscriptionArn"]
    assert sub_all.startswith(topic + ":"), sub_all
    eq(
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=all_arn)["SubscriptionArn"],
        sub_all,
        "subscribing again answers the same subscription",
    )
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=big_arn,
        Attributes={
            "FilterPolicy": json.dumps({"total": [{"numeric": [">", 100]}]}),
            "FilterPolicyScope": "MessageBody",
        },
        ReturnSubscriptionArn=True,
    )
    raw_sub = sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=raw_arn,
        Attributes={
            "RawMessageDelivery": "true",
            "FilterPolicy": json.dumps({"kind": ["gift"]}),
        },
    )["SubscriptionArn"]
    attrs = sns.get_subscription_attributes(SubscriptionArn=raw_sub)["Attributes"]
    eq(attrs["RawMessageDelivery"], "true", "RawMessageDelivery")
    eq(json.loads(attrs["FilterPolicy"]), {"kind": ["gift"]}, "FilterPolicy")
    eq(attrs["FilterPolicyScope"], "MessageAttributes", "FilterPolicyScope")
    eq(attrs["Endpoint"], raw_arn, "Endpoint")
    eq(attrs["Protocol"], "sqs", "Protocol")
    listed = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    eq(len(listed), 3, "three subscriptions")
    assert {s["Endpoint"] for s in listed} == {all_arn, big_arn, raw_arn}, listed

    small = json.dumps({"order": "o-1", "total": 5})
    big = '{"order": "o-2", "total": 500}'
    text = "plain text, not JSON: \u00e9 \u2603 <&>"
    r1 = sns.publish(TopicArn=topic, Message=small, Subject="Order o-1")
    r2 = sns.publish(TopicArn=topic, Message=big)
    r3 = sns.publish(
        TopicArn=topic,
        Message=text,
        MessageAttributes={
            "kind": {"DataType": "String", "StringValue": "gift"},
            "n": {"DataType": "Number", "StringValue": "7"},
            "b": {"DataType": "Binary", "BinaryValue": b"\x00\x01\xff"},
        },
    )

    everything = drain(all_url, 3)
    eq(len(everything), 3, "the unfiltered queue gets all three")
    notes = {json.loads(m["Body"])["MessageId"]: json.loads(m["Body"]) for m in everything}
    n1 = notes[r1["MessageId"]]
    eq(n1["Type"], "Notification", "Type")
    eq(n1["TopicArn"], topic, "TopicArn")
    eq(n1["Message"], small, "Message is the published text")
    eq(n1["Subject"], "Order o-1", "Subject")
    assert "Timestamp" in n1 and n1["Timestamp"].endswith("Z"), n1
    assert "MessageAttributes" not in n1, n1
    eq(notes[r2["MessageId"]]["Message"], big, "JSON text comes back byte for byte")
    n3 = notes[r3["MessageId"]]
    eq(n3["Message"], text, "plain text comes back byte for byte")
    eq(n3["MessageAttributes"]["kind"], {"Type": "String", "Value": "gift"}, "attributes")
    eq(n3["MessageAttributes"]["n"], {"Type": "Number", "Value": "7"}, "number attribute")
    eq(n3["MessageAttributes"]["b"]["Type"], "Binary", "binary attribute")

    bigs = drain(big_url, 1)
    eq([json.loads(m["Body"])["MessageId"] for m in bigs], [r2["MessageId"]], "body filter")

    raws = drain(raw_url, 1)
    eq(len(raws), 1, "attribute filter")
    eq(raws[0]["Body"], text, "raw delivery is the message itself")
    eq(
        raws[0]["MessageAttributes"]["kind"],
        {"DataType": "String", "StringValue": "gift"},
        "raw delivery carries attributes",
    )
    eq(raws[0]["MessageAttributes"]["b"]["BinaryValue"], b"\x00\x01\xff", "binary attribute")

    # Changing the filter takes effect for the next publish.
    sns.set_subscription_attributes(
        SubscriptionArn=raw_sub,
        AttributeName="FilterPolicy",
        AttributeValue=json.dumps({"kind": ["toy"]}),
    )
    sns.publish(
        TopicArn=topic,
        Message="toy",
        MessageAttributes={"kind": {"DataType": "String", "StringValue": "toy"}},
    )
    eq([m["Body"] for m in drain(raw_url, 1)], ["toy"], "new filter")
    sns.unsubscribe(SubscriptionArn=raw_sub)
    eq(
        error_of(sns.get_subscription_attributes, SubscriptionArn=raw_sub),
        ("NotFound", 404),
        "unsubscribed",
    )
    eq(len(sns.list_subscriptions()["Subscriptions"]), 2, "ListSubscriptions")
    drain(all_url, 1)


def check_message_structure():
    topic = sns.create_topic(Name="structured")["TopicArn"]
    note_url, note_arn = queue("structured-notes")
    raw_url, raw_arn = queue("structured-raw")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=note_arn)
    sns.subscribe(
        TopicArn=topic, Protocol="sqs", Endpoint=raw_arn, Attributes={"RawMessageDelivery": "true"}
    )
    v1("PUT", "/v1/queues/structured-v1", {})
    v1(
        "PUT",
        "/v1/topics/structured/subscriptions/v1-view",
        {"endpoint": {"queue": "structured-v1"}, "raw_message_delivery": True},
    )
    sns.publish(
        TopicArn=topic,
        Message=json.dumps({"default": "for everyone", "sqs": "for queues", "email": "for mail"}),
        MessageStructure="json",
    )
    eq(json.loads(drain(note_url, 1)[0]["Body"])["Message"], "for queues", "notification")
    eq([m["Body"] for m in drain(raw_url, 1)], ["for queues"], "raw")
    got = v1("POST", "/v1/queues/structured-v1/receive", {"max_messages": 1})
    eq(got["messages"][0]["message"], "for queues", "a /v1 queue is an sqs endpoint too")
    sns.publish(
        TopicArn=topic, Message=json.dumps({"default": "only default"}), MessageStructure="json"
    )
    eq(json.loads(drain(note_url, 1)[0]["Body"])["Message"], "only default", "default")


def check_publish_batch():
    topic = sns.create_topic(Name="batch")["TopicArn"]
    url, arn = queue("batch-q")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes={"RawMessageDelivery": "true"})
    out = sns.publish_batch(
        TopicArn=topic,
        PublishBatchRequestEntries=[
            {"Id": "a", "Message": "one"},
            {"Id": "b", "Message": "two", "Subject": "s"},
            {"Id": "bad", "Message": "three", "Subject": "line\nbreak"},
        ],
    )
    eq(sorted(s["Id"] for s in out["Successful"]), ["a", "b"], "successful entries")
    eq([f["Id"] for f in out["Failed"]], ["bad"], "failed entry")
    eq(out["Failed"][0]["Code"], "InvalidParameter", "failed entry's code")
    eq(out["Failed"][0]["SenderFault"], True, "sender's fault")
    eq(sorted(m["Body"] for m in drain(url, 2)), ["one", "two"], "batch delivered")
    eq(
        error_of(
            sns.publish_batch,
            TopicArn=topic,
            PublishBatchRequestEntries=[{"Id": "x", "Message": "1"}, {"Id": "x", "Message": "2"}],
        )[0],
        "BatchEntryIdsNotDistinct",
        "duplicate ids",
    )
    eq(
        error_of(
            sns.publish_batch,
            TopicArn=topic,
            PublishBatchRequestEntries=[{"Id": str(i), "Message": "m"} for i in range(11)],
        )[0],
        "TooManyEntriesInBatchRequest",
        "eleven entries",
    )


def check_fifo_order_and_dedup():
    topic = sns.create_topic(
        Name="ledger.fifo", Attributes={"FifoTopic": "true", "ContentBasedDeduplication": "true"}
    )["TopicArn"]
    url, arn = queue("ledger.fifo", FifoQueue="true")
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    ids = []
    for n in range(5):
        ids.append(sns.publish(TopicArn=topic, Message=f"entry {n}", MessageGroupId="acct-1")["MessageId"])
    again = sns.publish(TopicArn=topic, Message="entry 0", MessageGroupId="acct-1")["MessageId"]
    eq(again, ids[0], "a duplicate answers the original's id")
    got = drain(url, 5)
    eq([json.loads(m["Body"])["Message"] for m in got], [f"entry {n}" for n in range(5)], "order")
    eq(
        error_of(sns.publish, TopicArn=topic, Message="no group")[0],
        "InvalidParameter",
        "FIFO publish without a group",
    )


def check_v1_and_sns_see_one_topic():
    v1("PUT", "/v1/topics/made-by-v1", {})
    url, arn = queue("from-v1")
    topic = f"arn:aws:sns:{REGION}:{ACCOUNT}:made-by-v1"
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
    v1("POST", "/v1/topics/made-by-v1/publish", {"message": {"hello": "world"}})
    got = drain(url, 1)
    eq(json.loads(json.loads(got[0]["Body"])["Message"]), {"hello": "world"}, "a /v1 publish")
    subs = v1("GET", "/v1/topics/made-by-v1")["subscriptions"]
    eq(len(subs), 1, "/v1 lists the SNS subscription")


def check_errors():
    missing = f"arn:aws:sns:{REGION}:{ACCOUNT}:missing"
    eq(error_of(sns.publish, TopicArn=missing, Message="m"), ("NotFound", 404), "no topic")
    eq(error_of(sns.get_topic_attributes, TopicArn=missing), ("NotFound", 404), "no topic")
    topic = sns.create_topic(Name="errs")["TopicArn"]
    eq(error_of(sns.publish, TopicArn=topic, Message="")[0], "InvalidParameter", "empty message")
    eq(
        error_of(sns.publish, TopicArn=topic, Message="x" * (256 * 1024 + 1))[0],
        "InvalidParameter",
        "too long",
    )
    eq(
        error_of(sns.subscribe, TopicArn=topic, Protocol="sqs", Endpoint="not-an-arn")[0],
        "InvalidParameter",
        "bad endpoint",
    )
    eq(
        error_of(
            sns.subscribe,
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:no-such-queue",
        )[0],
        "InvalidParameter",
        "a queue that does not exist",
    )
    eq(
        error_of(
            sns.subscribe,
            TopicArn=topic,
            Protocol="sqs",
            Endpoint=f"arn:aws:sqs:{REGION}:{ACCOUNT}:errs-q",
            Attributes={"FilterPolicy": '{"a": "not a list"}'},
        )[0],
        "InvalidParameter",
        "bad filter policy",
    )
    eq(
        error_of(
            sns.subscribe,
            TopicArn=topic,
            Protocol="lambda",
            Endpoint=f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:no-such-function",
        )[0],
        "InvalidParameter",
        "a function that does not exist",
    )
    eq(
        error_of(sns.subscribe, TopicArn=topic, Protocol="email", Endpoint="someone@example.com")[0],
        "InvalidParameter",
        "email not served",
    )
    for message in [json.dumps({"sqs": "no default"}), "not json", json.dumps({"default": 1})]:
        eq(
            error_of(sns.publish, TopicArn=topic, Message=message, MessageStructure="json")[0],
            "InvalidParameter",
            f"MessageStructure json with {message}",
        )
    eq(
        error_of(sns.unsubscribe, SubscriptionArn=topic + ":nope"),
        ("NotFound", 404),
        "no subscription",
    )
    eq(
        error_of(sns.list_tags_for_resource, ResourceArn=missing),
        ("ResourceNotFound", 404),
        "tags of no topic",
    )


def check_tags():
    topic = sns.create_topic(Name="tagged", Tags=[{"Key": "team", "Value": "billing"}])["TopicArn"]
    eq(
        sns.list_tags_for_resource(ResourceArn=topic)["Tags"],
        [{"Key": "team", "Value": "billing"}],
        "tags at create",
    )
    sns.tag_resource(ResourceArn=topic, Tags=[{"Key": "env", "Value": "prod"}])
    sns.untag_resource(ResourceArn=topic, TagKeys=["team"])
    eq(
        sns.list_tags_for_resource(ResourceArn=topic)["Tags"],
        [{"Key": "env", "Value": "prod"}],
        "tags after tag and untag",
    )
    eq(v1("GET", "/v1/topics/tagged")["tags"], {"env": "prod"}, "/v1 sees the tags")


CHECKS = [
    check_topic_lifecycle,
    check_fanout_with_filters_and_raw_delivery,
    check_publish_batch,
    check_message_structure,
    check_fifo_order_and_dedup,
    check_v1_and_sns_see_one_topic,
    check_errors,
    check_tags,
]

run(CHECKS)

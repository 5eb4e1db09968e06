"""Lambda through boto3 against a running Switchyard:
python lambda_boto3.py BASE_URL PUBLISHER_WASM.

PUBLISHER_WASM is the test guest that publishes `count` events to topic `topic` (its
`env`), logs "published N of N", and fails when the payload asks (`"fail": true`). The
function is put through `/v1`; everything else goes through boto3's Lambda, SQS and
Kinesis clients. Each check is a function; the script runs them all and exits non-zero
on the first failure, naming it.
"""

import base64
import hashlib
import json
import sys

from checks import client_at, eq, error_of, run, v1_at

BASE = sys.argv[1]
WASM = sys.argv[2]
REGION = "eu-west-1"
ACCOUNT = "000000000000"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:lam-pub"


client = client_at(BASE, REGION)
lam = client("lambda")
sqs = client("sqs")
kinesis = client("kinesis")
v1 = v1_at(BASE)


def out_url():
    return sqs.get_queue_url(QueueName="lam-out")["QueueUrl"]


def drain(want):
    """Receives from lam-out until `want` messages came (long polls, bounded)."""
    got = []
    for _ in range(20):
        if len(got) >= want:
            break
        res = sqs.receive_message(QueueUrl=out_url(), MaxNumberOfMessages=10, WaitTimeSeconds=1)
        for m in res.get("Messages", []):
            got.append(m)
            sqs.delete_message(QueueUrl=out_url(), ReceiptHandle=m["ReceiptHandle"])
    eq(len(got), want, "messages the function published")
    return got


def check_setup():
    # What the function publishes lands in queue lam-out.
    v1("PUT", "/v1/queues/lam-out", {})
    v1("PUT", "/v1/topics/lam-topic", {})
    v1("PUT", "/v1/topics/lam-topic/subscriptions/out", {"endpoint": {"queue": "lam-out"}})
    v1("PUT", "/v1/functions/lam-pub", {"module": WASM, "env": {"topic": "lam-topic"}})


def check_get_and_list_functions():
    conf = lam.get_function(FunctionName="lam-pub")["Configuration"]
    eq(conf["FunctionName"], "lam-pub", "name")
    eq(conf["FunctionArn"], FUNCTION_ARN, "ARN")
    eq(conf["State"], "Active", "state")
    eq(conf["Version"], "$LATEST", "version")
    eq(conf["Timeout"], 1, "timeout in seconds")
    eq(conf["MemorySize"], 64, "memory")
    eq(conf["Environment"]["Variables"], {"topic": "lam-topic"}, "environment")
    with open(WASM, "rb") as f:
        digest = base64.b64encode(hashlib.sha256(f.read()).digest()).decode()
    eq(conf["CodeSha256"], digest, "code digest")
    by_arn = lam.get_function_configuration(FunctionName=FUNCTION_ARN)
    eq(by_arn["FunctionArn"], FUNCTION_ARN, "configuration by ARN")
    names = [f["FunctionName"] for f in lam.list_functions()["Functions"]]
    assert "lam-pub" in names, names
    paged = lam.list_functions(MaxItems=1)
    eq(len(paged["Functions"]), 1, "a page of one")


def check_invoke_request_response():
    res = lam.invoke(
        FunctionName="lam-pub", Payload=json.dumps({"count": 2}).encode(), LogType="Tail"
    )
    eq(res["StatusCode"], 200, "status")
    assert "FunctionError" not in res, res
    eq(res["Payload"].read(), b"null", "a handler returns no value")
    eq(res["ExecutedVersion"], "$LATEST", "executed version")
    log = base64.b64decode(res["LogResult"]).decode()
    assert "published 2 of 2" in log, log
    bodies = sorted(json.loads(m["Body"])["message"] for m in drain(2))
    assert all(b.endswith((":0", ":1")) for b in bodies), bodies


def check_a_failed_invocation_says_so():
    res = lam.invoke(FunctionName=FUNCTION_ARN, Payload=json.dumps({"fail": True}).encode())
    eq(res["StatusCode"], 200, "status")
    eq(res["FunctionError"], "Unhandled", "function error")
    payload = json.loads(res["Payload"].read())
    assert "asked to fail" in payload["errorMessage"], payload
    # A failed invocation publishes nothing.
    got = sqs.receive_message(QueueUrl=out_url(), WaitTimeSeconds=1).get("Messages", [])
    eq(got, [], "publishes of a failed invocation")


def check_dry_run_and_event():
    eq(lam.invoke(FunctionName="lam-pub", InvocationType="DryRun")["StatusCode"], 204, "dry run")
    res = lam.invoke(
        FunctionName="lam-pub", InvocationType="Event", Payload=json.dumps({"count": 1}).encode()
    )
    eq(res["StatusCode"], 202, "event")
    # The function is handed the event under the id the invocation was answered with.
    body = json.loads(drain(1)[0]["Body"])["message"]
    eq(body, res["ResponseMetadata"]["RequestId"] + ":0", "the event's id")


def receive_one(queue):
    """The one record `queue` receives (long polls, bounded), as JSON."""
    url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
    for _ in range(20):
        res = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)
        for m in res.get("Messages", []):
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
            return json.loads(m["Body"])
    raise AssertionError(f"no record reached {queue}")


def check_event_invoke_config():
    v1("PUT", "/v1/queues/lam-ok", {})
    v1("PUT", "/v1/queues/lam-failed", {})
    ok_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:lam-ok"
    failed_arn = f"arn:aws:sqs:{REGION}:{ACCOUNT}:lam-failed"
    eq(
        error_of(lam.get_function_event_invoke_config, FunctionName="lam-pub"),
        ("ResourceNotFoundException", 404),
        "no config yet",
    )
    conf = lam.put_function_event_invoke_config(
        FunctionName="lam-pub",
        MaximumRetryAttempts=0,
        DestinationConfig={
            "OnSuccess": {"Destination": ok_arn},
            "OnFailure": {"Destination": failed_arn},
        },
    )
    eq(conf["FunctionArn"], FUNCTION_ARN + ":$LATEST", "config's function")
    eq(conf["MaximumRetryAttempts"], 0, "retries")
    eq(conf["MaximumEventAgeInSeconds"], 21600, "default age")
    eq(conf["DestinationConfig"]["OnSuccess"], {"Destination": ok_arn}, "on success")
    eq(conf["DestinationConfig"]["OnFailure"], {"Destination": failed_arn}, "on failure")
    got = lam.get_function_event_invoke_config(FunctionName=FUNCTION_ARN)
    eq(got["DestinationConfig"], conf["DestinationConfig"], "read back by ARN")
    # /v1 shows the same settings.
    spec = v1("GET", "/v1/functions/lam-pub")["asynchronous"]
    eq(spec["max_retries"], 0, "/v1 retries")
    eq(spec["on_failure"], {"queue": "lam-failed"}, "/v1 on failure")

    ok = lam.invoke(
        FunctionName="lam-pub", InvocationType="Event", Payload=json.dumps({"count": 0}).encode()
    )
    record = receive_one("lam-ok")
    eq(record["requestContext"]["requestId"], ok["ResponseMetadata"]["RequestId"], "request id")
    eq(record["requestContext"]["condition"], "Success", "condition")
    eq(record["requestContext"]["functionArn"], FUNCTION_ARN + ":$LATEST", "function ARN")
    eq(record["requestContext"]["approximateInvokeCount"], 1, "invocations")
    eq(record["requestPayload"], {"count": 0}, "request payload")
    eq(record["responseContext"]["statusCode"], 200, "response status")
    eq(record["responsePayload"], None, "a handler returns no value")

    failed = lam.invoke(
        FunctionName="lam-pub",
        InvocationType="Event",
        Payload=json.dumps({"count": 1, "fail": True}).encode(),
    )
    record = receive_one("lam-failed")
    eq(record["requestContext"]["requestId"], failed["ResponseMetadata"]["RequestId"], "failed id")
    eq(record["requestContext"]["condition"], "RetriesExhausted", "failed condition")
    eq(record["requestContext"]["approximateInvokeCount"], 1, "no retries")
    eq(record["requestPayload"], {"count": 1, "fail": True}, "failed payload")
    eq(record["responseContext"]["functionError"], "Unhandled", "function error")
    assert "errorMessage" in record["responsePayload"], record

    # An update keeps what it does not name; a put replaces the whole config.
    updated = lam.update_function_event_invoke_config(
        FunctionName="lam-pub", MaximumEventAgeInSeconds=120
    )
    eq((updated["MaximumEventAgeInSeconds"], updated["MaximumRetryAttempts"]), (120, 0), "update")
    eq(updated["DestinationConfig"]["OnFailure"], {"Destination": failed_arn}, "kept")
    listed = lam.list_function_event_invoke_configs(FunctionName="lam-pub")
    eq(len(listed["FunctionEventInvokeConfigs"]), 1, "listed")
    replaced = lam.put_function_event_invoke_config(FunctionName="lam-pub", MaximumRetryAttempts=1)
    eq(replaced["DestinationConfig"]["OnFailure"], {}, "replaced")
    eq(replaced["MaximumEventAgeInSeconds"], 21600, "replaced age")

    for bad, why in [
        ({"MaximumRetryAttempts": 3}, "too many retries"),
        ({"MaximumEventAgeInSeconds": 21601}, "too old"),
        (
            {"DestinationConfig": {"OnFailure": {"Destination": FUNCTION_ARN}}},
            "a function as destination",
        ),
        (
            {"DestinationConfig": {"OnSuccess": {"Destination": ok_arn + "-missing"}}},
            "a missing queue",
        ),
    ]:
        eq(
            error_of(lam.put_function_event_invoke_config, FunctionName="lam-pub", **bad),
            ("InvalidParameterValueException", 400),
            why,
        )
    eq(
        error_of(lam.put_function_event_invoke_config, FunctionName="nope"),
        ("ResourceNotFoundException", 404),
        "a missing function",
    )
    lam.delete_function_event_invoke_config(FunctionName="lam-pub")
    eq(
        error_of(lam.delete_function_event_invoke_config, FunctionName="lam-pub"),
        ("ResourceNotFoundException", 404),
        "deleted",
    )
    eq(lam.list_function_event_invoke_configs(FunctionName="lam-pub")["FunctionEventInvokeConfigs"], [], "none")


def check_invoke_errors():
    eq(error_of(lam.invoke, FunctionName="nope"), ("ResourceNotFoundException", 404), "missing")
    eq(
        error_of(lam.get_function, FunctionName="nope"),
        ("ResourceNotFoundException", 404),
        "get missing",
    )
    eq(
        error_of(lam.invoke, FunctionName="lam-pub:7"),
        ("InvalidParameterValueException", 400),
        "a version",
    )


def check_a_queue_event_source_mapping():
    url = sqs.create_queue(QueueName="lam-in")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    m = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="lam-pub",
        BatchSize=5,
        MaximumBatchingWindowInSeconds=0,
        FunctionResponseTypes=["ReportBatchItemFailures"],
        ScalingConfig={"MaximumConcurrency": 4},
    )
    eq(m["ResponseMetadata"]["HTTPStatusCode"], 202, "status")
    eq(m["ScalingConfig"], {"MaximumConcurrency": 4}, "scaling")
    eq(m["State"], "Enabled", "state")
    eq(m["EventSourceArn"], arn, "source")
    eq(m["FunctionArn"], FUNCTION_ARN, "function")
    eq(m["BatchSize"], 5, "batch size")
    uuid = m["UUID"]
    eq(lam.get_event_source_mapping(UUID=uuid)["EventSourceArn"], arn, "get")
    listed = lam.list_event_source_mappings(FunctionName="lam-pub")["EventSourceMappings"]
    eq([x["UUID"] for x in listed], [uuid], "listed by function")
    by_source = lam.list_event_source_mappings(EventSourceArn=arn)["EventSourceMappings"]
    eq([x["UUID"] for x in by_source], [uuid], "listed by source")
    sources = v1("GET", "/v1/functions/lam-pub")["sources"]
    eq(
        sources,
        [{"queue": "lam-in", "batch_size": 5, "batch_window_ms": 0, "max_concurrency": 4}],
        "/v1 sources",
    )
    eq(
        error_of(lam.create_event_source_mapping, EventSourceArn=arn, FunctionName="lam-pub"),
        ("ResourceConflictException", 409),
        "a second mapping of the same source",
    )
    updated = lam.update_event_source_mapping(
        UUID=uuid, BatchSize=7, MaximumBatchingWindowInSeconds=1, ScalingConfig={}
    )
    eq((updated["UUID"], updated["BatchSize"]), (uuid, 7), "updated")
    eq(updated["MaximumBatchingWindowInSeconds"], 1, "updated window")
    eq("ScalingConfig" in updated, False, "an empty scaling config lifts the limit")
    eq(
        v1("GET", "/v1/functions/lam-pub")["sources"],
        [{"queue": "lam-in", "batch_size": 7, "batch_window_ms": 1000}],
        "/v1 sources after update",
    )
    eq(
        error_of(lam.update_event_source_mapping, UUID=uuid, BatchSize=100000),
        ("InvalidParameterValueException", 400),
        "a batch too large",
    )
    # The function consumes the queue.
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"count": 1}))
    drain(1)
    deleted = lam.delete_event_source_mapping(UUID=uuid)
    eq(deleted["State"], "Deleting", "deleted")
    eq(
        error_of(lam.get_event_source_mapping, UUID=uuid),
        ("ResourceNotFoundException", 404),
        "gone",
    )
    eq(v1("GET", "/v1/functions/lam-pub")["sources"], [], "/v1 sources after delete")


def check_a_stream_event_source_mapping():
    kinesis.create_stream(StreamName="lam-stream", ShardCount=1)
    arn = kinesis.describe_stream_summary(StreamName="lam-stream")["StreamDescriptionSummary"][
        "StreamARN"
    ]
    eq(
        error_of(lam.create_event_source_mapping, EventSourceArn=arn, FunctionName="lam-pub"),
        ("InvalidParameterValueException", 400),
        "a stream source needs a starting position",
    )
    failed_url = sqs.create_queue(QueueName="lam-failed")["QueueUrl"]
    failed_arn = sqs.get_queue_attributes(QueueUrl=failed_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    m = lam.create_event_source_mapping(
        EventSourceArn=arn,
        FunctionName="lam-pub",
        StartingPosition="TRIM_HORIZON",
        BatchSize=10,
        ParallelizationFactor=3,
        MaximumRetryAttempts=2,
        BisectBatchOnFunctionError=True,
        DestinationConfig={"OnFailure": {"Destination": failed_arn}},
    )
    eq(m["StartingPosition"], "TRIM_HORIZON", "starting position")
    eq(m["ParallelizationFactor"], 3, "parallelization factor")
    eq(m["MaximumRetryAttempts"], 2, "retry attempts")
    eq(m["MaximumRecordAgeInSeconds"], -1, "no record age limit")
    eq(m["BisectBatchOnFunctionError"], True, "bisect")
    eq(m["DestinationConfig"]["OnFailure"]["Destination"], failed_arn, "on failure")
    eq(
        v1("GET", "/v1/functions/lam-pub")["sources"][0]["on_failure"],
        {"queue": "lam-failed"},
        "/v1 on_failure",
    )
    eq(
        error_of(lam.update_event_source_mapping, UUID=m["UUID"], ParallelizationFactor=11),
        ("InvalidParameterValueException", 400),
        "a factor above 10",
    )
    kinesis.put_record(StreamName="lam-stream", PartitionKey="k", Data=json.dumps({"count": 1}))
    drain(1)
    lam.delete_event_source_mapping(UUID=m["UUID"])


def check_mapping_errors():
    eq(
        error_of(
            lam.create_event_source_mapping,
            EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:no-such-queue",
            FunctionName="lam-pub",
        ),
        ("InvalidParameterValueException", 400),
        "a missing queue",
    )
    eq(
        error_of(
            lam.create_event_source_mapping,
            EventSourceArn=f"arn:aws:sqs:{REGION}:{ACCOUNT}:lam-in",
            FunctionName="nope",
        ),
        ("ResourceNotFoundException", 404),
        "a missing function",
    )
    eq(
        error_of(lam.get_event_source_mapping, UUID="00000000-0000-0000-0000-000000000000"),
        ("ResourceNotFoundException", 404),
        "a missing mapping",
    )


run(
    [
        check_setup,
        check_get_and_list_functions,
        check_invoke_request_response,
        check_a_failed_invocation_says_so,
        check_dry_run_and_event,
        check_event_invoke_config,
        check_invoke_errors,
        check_a_queue_event_source_mapping,
        check_a_stream_event_source_mapping,
        check_mapping_errors,
    ]
)

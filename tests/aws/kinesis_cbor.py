"""Kinesis over CBOR, as the AWS SDKs for Java send it, against a running Switchyard:
python kinesis_cbor.py BASE_URL.

The Java SDKs (v1 and v2, and so the KCL) call Kinesis's JSON 1.1 operations with CBOR
bodies, Content-Type application/x-amz-cbor-1.1. Data is a CBOR byte string. A timestamp
is tag 1 around an integer of epoch *milliseconds* (not the seconds RFC 8949 gives tag 1),
in requests and in answers alike: the SDKs read the number as a long of milliseconds.
Requests here are encoded as the SDKs' Jackson generator writes them (maps and arrays of
indefinite length) and signed with SigV4; answers are decoded with cbor2. Each check is a
function; the script runs them all and exits non-zero on the first failure, naming it.
"""

import sys
import time

import cbor2

import checks
from checks import eq, run

BASE = sys.argv[1]
REGION = "eu-west-1"
ACCOUNT = "000000000000"
STREAM = "kc-events"
CBOR = "application/x-amz-cbor-1.1"
TOP = 2**128 - 1


class Millis(int):
    """A timestamp as the Java SDKs write one: tag 1 around epoch milliseconds."""


class Tagged:
    """A tag-1 value kept as it came, not read as RFC 8949's seconds."""

    def __init__(self, value):
        self.value = value


def head(major, n):
    if n < 24:
        return bytes([major << 5 | n])
    for extra, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if n < 1 << (8 * size):
            return bytes([major << 5 | extra]) + n.to_bytes(size, "big")
    raise ValueError(f"{n} does not fit 64 bits")


def jackson(value):
    """CBOR as Jackson's generator writes it for the SDKs: shortest heads, and maps and
    arrays of indefinite length (the SDKs never say how many members follow)."""
    if isinstance(value, Millis):
        return b"\xc1" + head(0, int(value))
    if isinstance(value, bool):
        return b"\xf5" if value else b"\xf4"
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        return head(3, len(raw)) + raw
    if isinstance(value, list):
        return b"\x9f" + b"".join(jackson(v) for v in value) + b"\xff"
    if isinstance(value, dict):
        return b"\xbf" + b"".join(jackson(k) + jackson(v) for k, v in value.items()) + b"\xff"
    raise TypeError(f"no CBOR for {value!r}")


def definite(value):
    """CBOR with every length given up front, as other encoders write it."""

    def tagged(v):
        if isinstance(v, Millis):
            return cbor2.CBORTag(1, int(v))
        if isinstance(v, dict):
            return {k: tagged(x) for k, x in v.items()}
        if isinstance(v, list):
            return [tagged(x) for x in v]
        return v

    return cbor2.dumps(tagged(value))


def signed_post(target, body, content_type):
    return checks.signed_post(BASE, REGION, "kinesis", target, body, content_type)


def call(operation, payload, encode=jackson):
    """(status, answer): the answer decoded from CBOR, None when the body is empty."""
    status, headers, body = signed_post(f"Kinesis_20131202.{operation}", encode(payload), CBOR)
    if not body:
        return status, None
    content_type = headers.get("Content-Type", "")
    assert content_type.startswith(CBOR), f"{operation}: answered in {content_type!r}, not CBOR"
    return status, cbor2.loads(body, semantic_decoders={1: lambda value, immutable: Tagged(value)})


def ok(operation, payload, encode=jackson):
    status, answer = call(operation, payload, encode)
    eq(status, 200, f"{operation}: status (answer {answer!r})")
    return answer if answer is not None else {}


def failure(operation, payload, encode=jackson):
    """(status, code, message) of a call that must fail, read from its CBOR body."""
    status, answer = call(operation, payload, encode)
    assert status != 200, f"{operation} succeeded; an error was expected"
    assert isinstance(answer, dict), f"{operation}: error body {answer!r}"
    message = answer.get("message", answer.get("Message"))
    return status, answer["__type"].rsplit("#", 1)[-1], message


def refused(what, operation, payload, code):
    """Checks that a call fails with status 400 and `code`, saying why."""
    status, got, message = failure(operation, payload)
    eq((status, got), (400, code), what)
    assert isinstance(message, str) and message, f"{what}: no message"


def millis(value, what):
    """The epoch milliseconds of a timestamp from an answer, checked to be about now."""
    raw = value.value if isinstance(value, Tagged) else value
    assert isinstance(raw, int) and not isinstance(raw, bool), (
        f"{what}: {raw!r} is not an integer of epoch milliseconds"
    )
    now = time.time() * 1000
    assert abs(raw - now) < 300_000, f"{what}: {raw} ms is not about now ({now:.0f})"
    return raw


PUT = {}  # shard id -> [(sequence, partition key, data)] in the order put
SHARDS = []


def note(result, pk, data):
    seq = result["SequenceNumber"]
    assert isinstance(seq, str) and seq.isdigit(), f"sequence number {seq!r}"
    PUT.setdefault(result["ShardId"], []).append((seq, pk, data))


def shard_iterator(shard_id, kind, **extra):
    out = ok(
        "GetShardIterator",
        {"StreamName": STREAM, "ShardId": shard_id, "ShardIteratorType": kind, **extra},
    )
    assert isinstance(out["ShardIterator"], str), out
    return out["ShardIterator"]


def read(it):
    got = []
    for _ in range(50):
        page = ok("GetRecords", {"ShardIterator": it})
        got += page["Records"]
        it = page["NextShardIterator"]
        if not page["Records"]:
            eq(page["MillisBehindLatest"], 0, "MillisBehindLatest at the tip")
            return got
    raise AssertionError("still reading records after 50 pages")


def check_create_and_describe():
    ok("CreateStream", {"StreamName": STREAM, "ShardCount": 2})
    summary = ok("DescribeStreamSummary", {"StreamName": STREAM})["StreamDescriptionSummary"]
    eq(summary["StreamName"], STREAM, "StreamName")
    eq(summary["StreamARN"], f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{STREAM}", "StreamARN")
    eq(summary["StreamStatus"], "ACTIVE", "StreamStatus")
    eq(summary["RetentionPeriodHours"], 24, "RetentionPeriodHours")
    eq(summary["OpenShardCount"], 2, "OpenShardCount")
    millis(summary["StreamCreationTimestamp"], "StreamCreationTimestamp")
    shards = ok("ListShards", {"StreamName": STREAM})["Shards"]
    SHARDS.extend(s["ShardId"] for s in shards)
    eq(len(SHARDS), 2, "two shards")
    ranges = [
        (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
        for s in shards
    ]
    eq(ranges[0][0], 0, "the first shard starts at hash key 0")
    eq(ranges[0][1] + 1, ranges[1][0], "the hash-key ranges are contiguous")
    eq(ranges[1][1], TOP, "the last shard ends at 2^128-1")


ALL_BYTES = bytes(range(256))
NOT_UTF8 = b"\xc3\x28\xff\xfe\x00 not UTF-8 \x80"


def check_put_record_and_put_records():
    first, last = "0", str(TOP)
    out = ok(
        "PutRecord",
        {"StreamName": STREAM, "Data": ALL_BYTES, "PartitionKey": "a", "ExplicitHashKey": first},
    )
    eq(out["ShardId"], SHARDS[0], "ExplicitHashKey 0 is the first shard's")
    note(out, "a", ALL_BYTES)
    # The same request with definite lengths, as encoders other than Jackson write it.
    out = ok(
        "PutRecord",
        {"StreamName": STREAM, "Data": NOT_UTF8, "PartitionKey": "b", "ExplicitHashKey": last},
        encode=definite,
    )
    eq(out["ShardId"], SHARDS[1], "ExplicitHashKey 2^128-1 is the last shard's")
    note(out, "b", NOT_UTF8)

    records = [
        {
            "Data": bytes([i, 0xFF, 0x00, 0x80 + i]) + f" record {i}".encode(),
            "PartitionKey": f"p{i}",
            "ExplicitHashKey": first if i % 2 == 0 else last,
        }
        for i in range(6)
    ]
    out = ok("PutRecords", {"StreamName": STREAM, "Records": records})
    eq(out["FailedRecordCount"], 0, "FailedRecordCount")
    eq(len(out["Records"]), 6, "a result per record")
    for i, (record, result) in enumerate(zip(records, out["Records"])):
        eq(result["ShardId"], SHARDS[i % 2], f"record {i}'s shard")
        note(result, record["PartitionKey"], record["Data"])


def check_get_records_from_trim_horizon():
    for shard_id in SHARDS:
        got = read(shard_iterator(shard_id, "TRIM_HORIZON"))
        for r in got:
            assert isinstance(r["Data"], bytes), f"Data is a CBOR byte string: {r['Data']!r}"
            millis(r["ApproximateArrivalTimestamp"], "ApproximateArrivalTimestamp")
        want = sorted(PUT[shard_id], key=lambda r: int(r[0]))
        eq(
            [(r["SequenceNumber"], r["PartitionKey"], r["Data"]) for r in got],
            want,
            f"{shard_id} from TRIM_HORIZON",
        )


def check_at_timestamp():
    for shard_id in SHARDS:
        got = read(shard_iterator(shard_id, "TRIM_HORIZON"))
        stamps = [millis(r["ApproximateArrivalTimestamp"], "arrival") for r in got]
        eq(stamps, sorted(stamps), "arrival times do not go back")
        k = len(got) // 2
        # Records may share a millisecond: what to expect comes from the read-back.
        want = [r["SequenceNumber"] for r, t in zip(got, stamps) if t >= stamps[k]]
        it = shard_iterator(shard_id, "AT_TIMESTAMP", Timestamp=Millis(stamps[k]))
        eq([r["SequenceNumber"] for r in read(it)], want, f"{shard_id} AT_TIMESTAMP")
        long_ago = Millis(978_307_200_000)  # 2001-01-01
        it = shard_iterator(shard_id, "AT_TIMESTAMP", Timestamp=long_ago)
        eq(
            [r["SequenceNumber"] for r in read(it)],
            [r["SequenceNumber"] for r in got],
            f"{shard_id} AT_TIMESTAMP 2001 reads every record",
        )


def check_the_json_protocol_reads_the_same_records():
    # One stream behind both protocols: seconds in JSON, milliseconds in CBOR.
    kinesis = checks.client_at(BASE, REGION)("kinesis")
    for shard_id in SHARDS:
        it = kinesis.get_shard_iterator(
            StreamName=STREAM, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        as_json = kinesis.get_records(ShardIterator=it)["Records"]
        as_cbor = read(shard_iterator(shard_id, "TRIM_HORIZON"))
        eq(
            [(r["SequenceNumber"], r["Data"]) for r in as_json],
            [(r["SequenceNumber"], r["Data"]) for r in as_cbor],
            f"{shard_id} over JSON and CBOR",
        )
        eq(
            [round(r["ApproximateArrivalTimestamp"].timestamp() * 1000) for r in as_json],
            [millis(r["ApproximateArrivalTimestamp"], "arrival") for r in as_cbor],
            "the same arrival times",
        )


def check_errors():
    refused(
        "a missing stream",
        "DescribeStreamSummary",
        {"StreamName": "kc-missing"},
        "ResourceNotFoundException",
    )
    refused(
        "a garbage iterator",
        "GetRecords",
        {"ShardIterator": "bm90IGFuIGl0ZXJhdG9y"},
        "InvalidArgumentException",
    )
    # AWS names the unknown operation and says no more.
    status, code, _ = failure("NoSuchThing", {})
    eq((status, code), (400, "UnknownOperationException"), "an unknown operation")
    status, _, _ = signed_post("Kinesis_20131202.DescribeStreamSummary", b"\xbf\x6aStreamN", CBOR)
    eq(status, 400, "a truncated CBOR body")


def check_delete_stream():
    ok("DeleteStream", {"StreamName": STREAM})
    refused(
        "a deleted stream",
        "DescribeStreamSummary",
        {"StreamName": STREAM},
        "ResourceNotFoundException",
    )


CHECKS = [
    check_create_and_describe,
    check_put_record_and_put_records,
    check_get_records_from_trim_horizon,
    check_at_timestamp,
    check_the_json_protocol_reads_the_same_records,
    check_errors,
    check_delete_stream,
]

run(CHECKS)

"""Kinesis Data Streams through boto3 against a running Switchyard:
python kinesis_boto3.py BASE_URL.

boto3 speaks Kinesis's JSON 1.1 protocol, in which Data travels base64-encoded. Where a
record lands is checked against AWS's rule, computed here and not taken from the server:
the shard whose hash-key range holds the MD5 of the partition key (read as a 128-bit
big-endian number), or the ExplicitHashKey when one is given. Each check is a function;
the script runs them all and exits non-zero on the first failure, naming it.
"""

import base64
import datetime
import hashlib
import json
import sys
import urllib.error
import urllib.request

import botocore.exceptions

import checks
from checks import client_at, eq, run, v1_at

BASE = sys.argv[1]
REGION = "eu-west-1"
ACCOUNT = "000000000000"
STREAM = "kb-orders"
ARN = f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{STREAM}"
TOP = 2**128 - 1


client = client_at(BASE, REGION)
kinesis = client("kinesis")
# For requests that boto3 would refuse before sending: what the server says of them is
# what is checked.
unchecked = client("kinesis", parameter_validation=False)
v1 = v1_at(BASE)

# What the checks put, in the order they put it: dicts of shard, seq, pk and data.
PUT = []
SHARD_IDS = []
RANGES = []


def error_of(call, **kwargs):
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as e:
        err = e.response["Error"]
        return err["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"], err.get("Message", "")
    raise AssertionError(f"{call.__name__} succeeded; an error was expected")


def refused(what, call, codes, **kwargs):
    """Checks that a call fails with status 400 and one of `codes`; its message."""
    code, status, message = error_of(call, **kwargs)
    assert code in codes, f"{what}: code {code!r}, want one of {codes}"
    eq(status, 400, f"{what}: status")
    return message


def hash_of(partition_key):
    return int.from_bytes(hashlib.md5(partition_key.encode()).digest(), "big")


def shard_for(hash_key):
    for shard_id, (lo, hi) in zip(SHARD_IDS, RANGES):
        if lo <= hash_key <= hi:
            return shard_id
    raise AssertionError(f"no shard holds hash key {hash_key}")


def expected(shard_id):
    """What was put on a shard, in the order of its sequence numbers."""
    records = [r for r in PUT if r["shard"] == shard_id]
    return sorted(records, key=lambda r: int(r["seq"]))


def placed(result, pk, data, what):
    """Notes a put record in PUT, once its sequence number is seen to be decimal."""
    seq = result["SequenceNumber"]
    assert seq.isdigit(), f"{what}: sequence number {seq!r} is not decimal digits"
    PUT.append({"shard": result["ShardId"], "seq": seq, "pk": pk, "data": data})


def iterator(shard_id, kind, stream=STREAM, **kwargs):
    return kinesis.get_shard_iterator(
        StreamName=stream, ShardId=shard_id, ShardIteratorType=kind, **kwargs
    )["ShardIterator"]


def read(it, limit=None):
    """Every record from an iterator up to the tip, following NextShardIterator."""
    got = []
    for _ in range(50):
        args = {"ShardIterator": it} | ({"Limit": limit} if limit else {})
        page = kinesis.get_records(**args)
        got += page["Records"]
        it = page["NextShardIterator"]
        if not page["Records"]:
            eq(page["MillisBehindLatest"], 0, "MillisBehindLatest at the tip")
            return got
    raise AssertionError("still reading records after 50 pages")


def as_put(records):
    return [
        {"seq": r["SequenceNumber"], "pk": r["PartitionKey"], "data": r["Data"]} for r in records
    ]


def strip(records):
    return [{k: r[k] for k in ("seq", "pk", "data")} for r in records]


def signed_post(target, body):
    return checks.signed_post(BASE, REGION, "kinesis", target, body, "application/x-amz-json-1.1")


def v1_text(method, path, text):
    """A `/v1` call with `text` as the body exactly (json.dumps would add spaces)."""
    req = urllib.request.Request(BASE + path, data=text.encode(), method=method)
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req) as res:
        return json.loads(res.read())


def check_create_and_describe():
    kinesis.create_stream(StreamName=STREAM, ShardCount=2)
    desc = kinesis.describe_stream(StreamName=STREAM)["StreamDescription"]
    eq(desc["StreamName"], STREAM, "StreamName")
    eq(desc["StreamARN"], ARN, "StreamARN")
    eq(desc["StreamStatus"], "ACTIVE", "a new stream is ACTIVE at once")
    eq(desc["RetentionPeriodHours"], 24, "RetentionPeriodHours")
    eq(desc["HasMoreShards"], False, "HasMoreShards")
    assert isinstance(desc["StreamCreationTimestamp"], datetime.datetime), desc
    shards = desc["Shards"]
    eq([s["ShardId"] for s in shards], ["shardId-000000000000", "shardId-000000000001"], "ids")
    for s in shards:
        SHARD_IDS.append(s["ShardId"])
        r = s["HashKeyRange"]
        RANGES.append((int(r["StartingHashKey"]), int(r["EndingHashKey"])))
        assert s["SequenceNumberRange"]["StartingSequenceNumber"].isdigit(), s
        assert "EndingSequenceNumber" not in s["SequenceNumberRange"], "an open shard has no end"
    eq(RANGES[0][0], 0, "the first shard starts at hash key 0")
    eq(RANGES[0][1] + 1, RANGES[1][0], "the hash-key ranges are contiguous")
    eq(RANGES[1][1], TOP, "the last shard ends at 2^128-1")

    summary = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
    eq(summary["StreamName"], STREAM, "summary StreamName")
    eq(summary["StreamARN"], ARN, "summary StreamARN")
    eq(summary["StreamStatus"], "ACTIVE", "summary StreamStatus")
    eq(summary["RetentionPeriodHours"], 24, "summary RetentionPeriodHours")
    eq(summary["OpenShardCount"], 2, "OpenShardCount")
    eq(summary["StreamCreationTimestamp"], desc["StreamCreationTimestamp"], "created at")
    # Current SDKs may name a stream by its ARN instead of its name.
    by_arn = kinesis.describe_stream_summary(StreamARN=ARN)["StreamDescriptionSummary"]
    eq(by_arn["StreamName"], STREAM, "a stream named by its ARN")

    got = v1("GET", f"/v1/streams/{STREAM}")
    eq((got["name"], got["shards"], got["retention_hours"]), (STREAM, 2, 24), "/v1 view")


def check_list_streams():
    names = ["kb-list-1", "kb-list-2", "kb-list-3"]
    for name in names:
        kinesis.create_stream(StreamName=name, ShardCount=1)
    out = kinesis.list_streams()
    for name in names + [STREAM]:
        assert name in out["StreamNames"], f"ListStreams lists {name}: {out['StreamNames']}"
    eq(out["HasMoreStreams"], False, "HasMoreStreams without a limit")
    summaries = {s["StreamName"]: s for s in out["StreamSummaries"]}
    eq(sorted(summaries), sorted(out["StreamNames"]), "a summary per stream")
    eq(
        summaries["kb-list-2"]["StreamARN"],
        f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/kb-list-2",
        "ARN",
    )
    eq(summaries["kb-list-2"]["StreamStatus"], "ACTIVE", "summary status")
    assert isinstance(summaries["kb-list-2"]["StreamCreationTimestamp"], datetime.datetime)

    # Names come in order, so a page starts right after the name given.
    page = kinesis.list_streams(Limit=2, ExclusiveStartStreamName="kb-list-1")
    eq(page["StreamNames"], names[1:], "the page after kb-list-1")
    eq(page["HasMoreStreams"], True, f"{STREAM} comes after them")
    eq([s["StreamName"] for s in page["StreamSummaries"]], names[1:], "its summaries")
    page = kinesis.list_streams(Limit=1, ExclusiveStartStreamName="kb-list-2")
    eq(page["StreamNames"], ["kb-list-3"], "a page of one after kb-list-2")
    # NextToken pages through every stream once, in order.
    seen, token = [], None
    for _ in range(100):
        page = kinesis.list_streams(Limit=2, **({"NextToken": token} if token else {}))
        assert len(page["StreamNames"]) <= 2, page
        seen += page["StreamNames"]
        if not page["HasMoreStreams"]:
            assert "NextToken" not in page, "the last page has no NextToken"
            break
        token = page["NextToken"]
    eq(seen, sorted(out["StreamNames"]), "NextToken pages through all, sorted, once each")
    for name in names:
        kinesis.delete_stream(StreamName=name)


def check_list_shards():
    shards = kinesis.list_shards(StreamName=STREAM)["Shards"]
    eq([s["ShardId"] for s in shards], SHARD_IDS, "ListShards")
    eq(
        [
            (int(s["HashKeyRange"]["StartingHashKey"]), int(s["HashKeyRange"]["EndingHashKey"]))
            for s in shards
        ],
        RANGES,
        "ListShards hash-key ranges",
    )
    first = kinesis.list_shards(StreamName=STREAM, MaxResults=1)
    eq([s["ShardId"] for s in first["Shards"]], SHARD_IDS[:1], "a page of one shard")
    # A NextToken names the stream by itself: AWS refuses StreamName beside it.
    rest = kinesis.list_shards(NextToken=first["NextToken"])
    eq([s["ShardId"] for s in rest["Shards"]], SHARD_IDS[1:], "the next page")
    assert "NextToken" not in rest, "the last page has no NextToken"
    eq(
        [s["ShardId"] for s in kinesis.list_shards(StreamARN=ARN)["Shards"]],
        SHARD_IDS,
        "ListShards by ARN",
    )


ALL_BYTES = bytes(range(256))
NOT_UTF8 = b"\xc3\x28 \xff\xfe\x00 not UTF-8 \x80\xbf"


def check_put_record():
    for pk, data in [("alpha", ALL_BYTES), ("beta", NOT_UTF8)]:
        out = kinesis.put_record(StreamName=STREAM, PartitionKey=pk, Data=data)
        eq(out["ShardId"], shard_for(hash_of(pk)), f"{pk} lands by the MD5 of its key")
        placed(out, pk, data, f"PutRecord {pk}")
    # An explicit hash key picks the shard instead of the partition key.
    out = kinesis.put_record(
        StreamName=STREAM, PartitionKey="alpha", Data=b"by hash key", ExplicitHashKey=str(TOP)
    )
    eq(out["ShardId"], SHARD_IDS[-1], "ExplicitHashKey 2^128-1")
    placed(out, "alpha", b"by hash key", "PutRecord with ExplicitHashKey")


def check_put_records():
    entries = []
    for i in range(10):
        data = f"order {i} ".encode() + bytes([i, 0xFF - i, 0x00, 0x80])
        entry = {"PartitionKey": f"order-{i}", "Data": data}
        if i == 0:
            entry["ExplicitHashKey"] = str(TOP)
        if i == 3:
            entry["ExplicitHashKey"] = "0"
        entries.append(entry)
    out = kinesis.put_records(StreamName=STREAM, Records=entries)
    eq(out["FailedRecordCount"], 0, "FailedRecordCount")
    eq(len(out["Records"]), 10, "a result per record")
    for entry, result in zip(entries, out["Records"]):
        assert "ErrorCode" not in result, result
        hash_key = int(entry.get("ExplicitHashKey", hash_of(entry["PartitionKey"])))
        eq(result["ShardId"], shard_for(hash_key), f"{entry['PartitionKey']}'s shard")
        placed(result, entry["PartitionKey"], entry["Data"], f"PutRecords {entry['PartitionKey']}")
    for shard_id in SHARD_IDS:
        seqs = [int(r["seq"]) for r in PUT if r["shard"] == shard_id]
        eq(len(set(seqs)), len(seqs), f"sequence numbers on {shard_id} are distinct")
        assert len(seqs) >= 3, f"this data puts at least three records on {shard_id}"
    # The PutRecord calls came first, so on each shard their numbers are below these.
    for shard_id in SHARD_IDS:
        singles = [int(r["seq"]) for r in PUT[:3] if r["shard"] == shard_id]
        batch = [int(r["seq"]) for r in PUT[3:] if r["shard"] == shard_id]
        assert max(singles) < min(batch), f"{shard_id}: {singles} then {batch}"


def check_a_malformed_put_records_is_refused_whole():
    # Kinesis reports per record only what throughput refused; input it cannot take
    # fails the whole request, and nothing of it is stored.
    kinesis.create_stream(StreamName="kb-refused", ShardCount=1)
    good = {"PartitionKey": "k", "Data": b"fine"}
    bad_entries = {
        "an ExplicitHashKey that is not a number": {
            "PartitionKey": "k",
            "Data": b"x",
            "ExplicitHashKey": "not-a-number",
        },
        "an ExplicitHashKey of 2^128": {
            "PartitionKey": "k",
            "Data": b"x",
            "ExplicitHashKey": str(2**128),
        },
        "a 257-character partition key": {"PartitionKey": "p" * 257, "Data": b"x"},
        "an empty partition key": {"PartitionKey": "", "Data": b"x"},
    }
    for what, bad in bad_entries.items():
        refused(
            what,
            unchecked.put_records,
            {"InvalidArgumentException", "ValidationException"},
            StreamName="kb-refused",
            Records=[good, bad, good],
        )
    refused(
        "PutRecord with an ExplicitHashKey of 2^128",
        unchecked.put_record,
        {"InvalidArgumentException", "ValidationException"},
        StreamName="kb-refused",
        PartitionKey="k",
        Data=b"x",
        ExplicitHashKey=str(2**128),
    )
    only = kinesis.list_shards(StreamName="kb-refused")["Shards"][0]["ShardId"]
    eq(read(iterator(only, "TRIM_HORIZON", stream="kb-refused")), [], "nothing was stored")
    kinesis.delete_stream(StreamName="kb-refused")


def check_get_records_from_trim_horizon():
    now = datetime.datetime.now(datetime.timezone.utc)
    for shard_id in SHARD_IDS:
        got = read(iterator(shard_id, "TRIM_HORIZON"))
        eq(as_put(got), strip(expected(shard_id)), f"{shard_id} from TRIM_HORIZON")
        stamps = [r["ApproximateArrivalTimestamp"] for r in got]
        for t in stamps:
            assert isinstance(t, datetime.datetime) and t.tzinfo is not None, t
            assert abs((now - t).total_seconds()) < 300, f"arrival {t} is not about now ({now})"
        eq(stamps, sorted(stamps), f"arrival times on {shard_id} do not go back")
    first = kinesis.get_records(ShardIterator=iterator(SHARD_IDS[0], "TRIM_HORIZON"))
    eq(first["MillisBehindLatest"], 0, "MillisBehindLatest of a page that reaches the tip")
    again = kinesis.get_records(ShardIterator=first["NextShardIterator"])
    eq(again["Records"], [], "nothing after the tip")
    assert again["NextShardIterator"], "an open shard always gives a NextShardIterator"


def check_a_stream_name_with_dots():
    name = "kb.orders.v2"
    kinesis.create_stream(StreamName=name, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=name)
    out = kinesis.put_record(StreamName=name, PartitionKey="k", Data=b"dotted")
    shard = kinesis.get_shard_iterator(
        StreamName=name, ShardId=out["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    got = kinesis.get_records(ShardIterator=shard)["Records"]
    eq([r["Data"] for r in got], [b"dotted"], "a record of a stream named with dots")
    assert name in kinesis.list_streams()["StreamNames"], "listed"
    kinesis.delete_stream(StreamName=name)


def check_get_records_limit():
    shard_id = SHARD_IDS[0]
    want = strip(expected(shard_id))
    page = kinesis.get_records(ShardIterator=iterator(shard_id, "TRIM_HORIZON"), Limit=2)
    eq(as_put(page["Records"]), want[:2], "Limit 2")
    rest = read(page["NextShardIterator"], limit=2)
    eq(as_put(rest), want[2:], "NextShardIterator continues where the page stopped")


def check_iterator_types():
    for shard_id in SHARD_IDS:
        want = strip(expected(shard_id))
        k = len(want) // 2
        at = iterator(shard_id, "AT_SEQUENCE_NUMBER", StartingSequenceNumber=want[k]["seq"])
        eq(as_put(read(at)), want[k:], f"{shard_id} AT_SEQUENCE_NUMBER")
        after = iterator(shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=want[k]["seq"])
        eq(as_put(read(after)), want[k + 1 :], f"{shard_id} AFTER_SEQUENCE_NUMBER")
        last = iterator(shard_id, "AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=want[-1]["seq"])
        eq(read(last), [], f"{shard_id} after its last record")

        # AT_TIMESTAMP starts at the first record that arrived at or after the time;
        # records may share a millisecond, so what to expect comes from the read-back.
        got = read(iterator(shard_id, "TRIM_HORIZON"))
        t = got[k]["ApproximateArrivalTimestamp"]
        from_t = [r for r in got if r["ApproximateArrivalTimestamp"] >= t]
        eq(
            as_put(read(iterator(shard_id, "AT_TIMESTAMP", Timestamp=t))),
            as_put(from_t),
            f"{shard_id} AT_TIMESTAMP",
        )
        long_ago = datetime.datetime(2001, 1, 1, tzinfo=datetime.timezone.utc)
        eq(
            as_put(read(iterator(shard_id, "AT_TIMESTAMP", Timestamp=long_ago))),
            want,
            f"{shard_id} AT_TIMESTAMP 2001",
        )

    # LATEST is the position when the iterator was made: what is put after it is read.
    shard_id = SHARD_IDS[-1]
    latest = iterator(shard_id, "LATEST")
    eq(kinesis.get_records(ShardIterator=latest)["Records"], [], "nothing yet from LATEST")
    out = kinesis.put_record(
        StreamName=STREAM, PartitionKey="late", Data=b"after LATEST", ExplicitHashKey=str(TOP)
    )
    placed(out, "late", b"after LATEST", "put after LATEST")
    eq(as_put(read(latest)), strip(PUT[-1:]), "LATEST reads what came after it")
    eq(as_put(read(iterator(shard_id, "LATEST"))), [], "a new LATEST is past it")


def check_retention():
    kinesis.increase_stream_retention_period(StreamName=STREAM, RetentionPeriodHours=48)
    summary = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
    eq(summary["RetentionPeriodHours"], 48, "increased")
    eq(v1("GET", f"/v1/streams/{STREAM}")["retention_hours"], 48, "/v1 sees the increase")
    refused(
        "increasing to less than it is",
        kinesis.increase_stream_retention_period,
        {"InvalidArgumentException"},
        StreamName=STREAM,
        RetentionPeriodHours=36,
    )
    refused(
        "decreasing to more than it is",
        kinesis.decrease_stream_retention_period,
        {"InvalidArgumentException"},
        StreamName=STREAM,
        RetentionPeriodHours=72,
    )
    refused(
        "below Kinesis's 24-hour floor",
        kinesis.decrease_stream_retention_period,
        {"InvalidArgumentException"},
        StreamName=STREAM,
        RetentionPeriodHours=12,
    )
    kinesis.decrease_stream_retention_period(StreamName=STREAM, RetentionPeriodHours=24)
    summary = kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"]
    eq(summary["RetentionPeriodHours"], 24, "decreased")
    eq(v1("GET", f"/v1/streams/{STREAM}")["retention_hours"], 24, "/v1 sees the decrease")


def check_tags():
    def tags():
        out = kinesis.list_tags_for_stream(StreamName=STREAM)
        eq(out["HasMoreTags"], False, "HasMoreTags")
        return sorted((t["Key"], t.get("Value")) for t in out["Tags"])

    eq(tags(), [], "no tags yet")
    kinesis.add_tags_to_stream(StreamName=STREAM, Tags={"team": "billing", "env": "prod"})
    eq(tags(), [("env", "prod"), ("team", "billing")], "tags added")
    kinesis.add_tags_to_stream(StreamName=STREAM, Tags={"env": "test"})
    eq(tags(), [("env", "test"), ("team", "billing")], "a tag added again takes the new value")
    kinesis.remove_tags_from_stream(StreamName=STREAM, TagKeys=["team", "never-there"])
    eq(tags(), [("env", "test")], "tags removed")
    refused(
        "tags of a stream that does not exist",
        kinesis.list_tags_for_stream,
        {"ResourceNotFoundException"},
        StreamName="kb-missing",
    )


def check_resharding_is_refused():
    # A stream's shard count is fixed at creation; Kinesis's own codes for a request
    # that cannot be met, with a message saying why.
    codes = {"LimitExceededException", "InvalidArgumentException"}
    attempts = {
        "UpdateShardCount": (
            kinesis.update_shard_count,
            {"StreamName": STREAM, "TargetShardCount": 4, "ScalingType": "UNIFORM_SCALING"},
        ),
        "SplitShard": (
            kinesis.split_shard,
            {"StreamName": STREAM, "ShardToSplit": SHARD_IDS[0], "NewStartingHashKey": str(2**126)},
        ),
        "MergeShards": (
            kinesis.merge_shards,
            {
                "StreamName": STREAM,
                "ShardToMerge": SHARD_IDS[0],
                "AdjacentShardToMerge": SHARD_IDS[1],
            },
        ),
    }
    for what, (call, args) in attempts.items():
        code, status, message = error_of(call, **args)
        assert code in codes, f"{what}: code {code!r}, want one of {codes}"
        assert 400 <= status < 500, f"{what}: status {status}"
        assert "shard" in message.lower(), f"{what}: the message says why: {message!r}"
    eq(
        kinesis.describe_stream_summary(StreamName=STREAM)["StreamDescriptionSummary"][
            "OpenShardCount"
        ],
        2,
        "still two shards",
    )


def check_errors():
    not_found = {"ResourceNotFoundException"}
    invalid = {"InvalidArgumentException"}
    refused(
        "DescribeStream of a missing stream",
        kinesis.describe_stream,
        not_found,
        StreamName="kb-missing",
    )
    refused(
        "DescribeStreamSummary of a missing stream",
        kinesis.describe_stream_summary,
        not_found,
        StreamName="kb-missing",
    )
    refused(
        "PutRecord to a missing stream",
        kinesis.put_record,
        not_found,
        StreamName="kb-missing",
        PartitionKey="k",
        Data=b"x",
    )
    refused(
        "CreateStream of one that exists",
        kinesis.create_stream,
        {"ResourceInUseException"},
        StreamName=STREAM,
        ShardCount=2,
    )
    refused(
        "CreateStream of no shards",
        unchecked.create_stream,
        {"InvalidArgumentException", "ValidationException"},
        StreamName="kb-no-shards",
        ShardCount=0,
    )
    refused(
        "GetShardIterator of a missing shard",
        kinesis.get_shard_iterator,
        not_found,
        StreamName=STREAM,
        ShardId="shardId-000000000099",
        ShardIteratorType="TRIM_HORIZON",
    )
    refused(
        "GetShardIterator of a missing stream",
        kinesis.get_shard_iterator,
        not_found,
        StreamName="kb-missing",
        ShardId=SHARD_IDS[0],
        ShardIteratorType="TRIM_HORIZON",
    )
    last = expected(SHARD_IDS[0])[-1]["seq"]
    refused(
        "AT_SEQUENCE_NUMBER beyond the shard's end",
        kinesis.get_shard_iterator,
        invalid,
        StreamName=STREAM,
        ShardId=SHARD_IDS[0],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
        StartingSequenceNumber=str(int(last) + 1),
    )
    refused(
        "AT_SEQUENCE_NUMBER without a sequence number",
        kinesis.get_shard_iterator,
        invalid,
        StreamName=STREAM,
        ShardId=SHARD_IDS[0],
        ShardIteratorType="AT_SEQUENCE_NUMBER",
    )
    refused(
        "AT_TIMESTAMP without a timestamp",
        kinesis.get_shard_iterator,
        invalid,
        StreamName=STREAM,
        ShardId=SHARD_IDS[0],
        ShardIteratorType="AT_TIMESTAMP",
    )
    for garbage in ["bm90IGFuIGl0ZXJhdG9y", "AAAA" * 40, "not an iterator"]:
        refused(f"GetRecords of {garbage!r}", kinesis.get_records, invalid, ShardIterator=garbage)


def check_unknown_operation():
    status, _, body = signed_post("Kinesis_20131202.NoSuchThing", b"{}")
    eq(status, 400, "status of an unknown operation")
    kind = json.loads(body)["__type"].rsplit("#", 1)[-1]
    assert kind in {"UnknownOperationException", "InvalidAction"}, body


def check_v1_and_kinesis_share_records():
    kinesis.create_stream(StreamName="kb-bridge", ShardCount=1)
    got = v1("GET", "/v1/streams/kb-bridge")
    eq((got["name"], got["shards"], got["retention_hours"]), ("kb-bridge", 1, 24), "/v1 sees it")
    only = kinesis.list_shards(StreamName="kb-bridge")["Shards"][0]["ShardId"]

    # /v1 puts JSON as its text, or any bytes as data_base64.
    placed_v1 = v1_text(
        "POST",
        "/v1/streams/kb-bridge/records",
        '{"records":[{"partition_key":"k","data":{"a":1}},'
        '{"partition_key":"k","data_base64":"' + base64.b64encode(b"\xff\x00bin").decode() + '"}]}',
    )
    eq(len(placed_v1["records"]), 2, "two placed over /v1")
    kinesis.put_record(StreamName="kb-bridge", PartitionKey="k", Data=NOT_UTF8)
    kinesis.put_record(StreamName="kb-bridge", PartitionKey="k", Data=b'{"b": [2, 3]}')
    kinesis.put_record(StreamName="kb-bridge", PartitionKey="k", Data=b"plain text")

    want = [b'{"a":1}', b"\xff\x00bin", NOT_UTF8, b'{"b": [2, 3]}', b"plain text"]
    got = read(iterator(only, "TRIM_HORIZON", stream="kb-bridge"))
    eq([r["Data"] for r in got], want, "GetRecords reads /v1's records as their bytes")
    eq(
        [r["SequenceNumber"] for r in got[:2]],
        [p["sequence"] for p in placed_v1["records"]],
        "the sequence numbers /v1 gave",
    )

    # /v1 shows bytes that are JSON text as `data`, and others as `data_base64`.
    page = v1("GET", "/v1/streams/kb-bridge/shards/shard-0000/records?from=trim_horizon")
    shown = [
        ("data", r["data"]) if "data" in r else ("data_base64", base64.b64decode(r["data_base64"]))
        for r in page["records"]
    ]
    eq(
        shown,
        [
            ("data", {"a": 1}),
            ("data_base64", b"\xff\x00bin"),
            ("data_base64", NOT_UTF8),
            ("data", {"b": [2, 3]}),
            ("data_base64", b"plain text"),
        ],
        "/v1's view of each record",
    )
    for r in page["records"]:
        assert not ("data" in r and "data_base64" in r), f"one of data and data_base64: {r}"
    eq([r["sequence"] for r in page["records"]], [r["SequenceNumber"] for r in got], "one sequence")
    eq(
        [r["arrived_at"] for r in page["records"]],
        [round(r["ApproximateArrivalTimestamp"].timestamp() * 1000) for r in got],
        "arrival times to the millisecond",
    )
    kinesis.delete_stream(StreamName="kb-bridge")


def check_delete_stream():
    kinesis.delete_stream(StreamName=STREAM)
    refused(
        "DescribeStream after DeleteStream",
        kinesis.describe_stream,
        {"ResourceNotFoundException"},
        StreamName=STREAM,
    )
    refused(
        "DeleteStream again",
        kinesis.delete_stream,
        {"ResourceNotFoundException"},
        StreamName=STREAM,
    )
    try:
        v1("GET", f"/v1/streams/{STREAM}")
    except urllib.error.HTTPError as e:
        eq(e.code, 404, "/v1 no longer has it")
    else:
        raise AssertionError("/v1 still has the deleted stream")
    assert STREAM not in kinesis.list_streams()["StreamNames"], "ListStreams no longer lists it"


CHECKS = [
    check_create_and_describe,
    check_list_streams,
    check_list_shards,
    check_put_record,
    check_put_records,
    check_a_malformed_put_records_is_refused_whole,
    check_get_records_from_trim_horizon,
    check_get_records_limit,
    check_iterator_types,
    check_a_stream_name_with_dots,
    check_retention,
    check_tags,
    check_resharding_is_refused,
    check_errors,
    check_unknown_operation,
    check_v1_and_kinesis_share_records,
    check_delete_stream,
]

run(CHECKS)

// Kinesis through the JavaScript SDK v3 against a running Switchyard:
// node kinesis.mjs BASE_URL.
//
// The SDK speaks Kinesis's JSON 1.1 protocol and hands Data over as Uint8Array, so
// bytes that are not UTF-8 must come back as they went. Unlike the SQS and SNS clients,
// the Kinesis client talks HTTP/2 by default (to an http:// endpoint: cleartext, with
// prior knowledge); it keeps that default here, as a program using it would. Each check
// is a function; the script runs them all and exits non-zero on the first failure,
// naming it.

import {
  KinesisClient,
  CreateStreamCommand,
  DeleteStreamCommand,
  DescribeStreamSummaryCommand,
  GetRecordsCommand,
  GetShardIteratorCommand,
  ListShardsCommand,
  PutRecordCommand,
  PutRecordsCommand,
} from "@aws-sdk/client-kinesis";

import { eq, errorOf, run } from "./checks.mjs";

const endpoint = process.argv[2];
const region = "eu-west-1";
const kinesis = new KinesisClient({
  endpoint,
  region,
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
});
const StreamName = "kj-clicks";
const TOP = (2n ** 128n - 1n).toString();

// Every record from a shard's oldest on, following NextShardIterator to the tip.
async function readShard(ShardId) {
  let { ShardIterator } = await kinesis.send(
    new GetShardIteratorCommand({ StreamName, ShardId, ShardIteratorType: "TRIM_HORIZON" }),
  );
  const got = [];
  for (let i = 0; i < 50; i++) {
    const page = await kinesis.send(new GetRecordsCommand({ ShardIterator }));
    got.push(...page.Records);
    if (page.Records.length === 0) {
      eq(page.MillisBehindLatest, 0, "MillisBehindLatest at the tip");
      return got;
    }
    ShardIterator = page.NextShardIterator;
  }
  throw new Error("still reading records after 50 pages");
}

const bytes = (...values) => new Uint8Array(values);
const text = (s) => new TextEncoder().encode(s);
const shards = [];
const put = []; // { ShardId, SequenceNumber, PartitionKey, Data } in the order put

const checks = {
  async createAndDescribe() {
    await kinesis.send(new CreateStreamCommand({ StreamName, ShardCount: 2 }));
    const { StreamDescriptionSummary: s } = await kinesis.send(
      new DescribeStreamSummaryCommand({ StreamName }),
    );
    eq(
      [s.StreamName, s.StreamARN, s.StreamStatus, s.OpenShardCount, s.RetentionPeriodHours],
      [StreamName, `arn:aws:kinesis:${region}:000000000000:stream/${StreamName}`, "ACTIVE", 2, 24],
      "DescribeStreamSummary",
    );
    if (!(s.StreamCreationTimestamp instanceof Date)) {
      throw new Error("StreamCreationTimestamp is a Date");
    }
    const { Shards } = await kinesis.send(new ListShardsCommand({ StreamName }));
    shards.push(...Shards.map((shard) => shard.ShardId));
    eq(Shards.length, 2, "ListShards");
    eq(Shards[0].HashKeyRange.StartingHashKey, "0", "the first shard starts at 0");
    eq(
      (BigInt(Shards[0].HashKeyRange.EndingHashKey) + 1n).toString(),
      Shards[1].HashKeyRange.StartingHashKey,
      "contiguous hash-key ranges",
    );
    eq(Shards[1].HashKeyRange.EndingHashKey, TOP, "the last shard ends at 2^128-1");
  },

  async putRecordAndPutRecords() {
    const all = new Uint8Array(256).map((_, i) => i);
    const notUtf8 = bytes(0xc3, 0x28, 0xff, 0xfe, 0x00, 0x80, 0xbf);
    for (const [PartitionKey, Data, ExplicitHashKey] of [
      ["a", all, "0"],
      ["b", notUtf8, TOP],
    ]) {
      const out = await kinesis.send(
        new PutRecordCommand({ StreamName, PartitionKey, Data, ExplicitHashKey }),
      );
      eq(out.ShardId, ExplicitHashKey === "0" ? shards[0] : shards[1], `${PartitionKey}'s shard`);
      put.push({ ShardId: out.ShardId, SequenceNumber: out.SequenceNumber, PartitionKey, Data });
    }
    const Records = [0, 1, 2, 3, 4].map((i) => ({
      PartitionKey: `p${i}`,
      Data: new Uint8Array([...text(`record ${i} `), 0xff - i, 0x00]),
      ExplicitHashKey: i % 2 === 0 ? "0" : TOP,
    }));
    const out = await kinesis.send(new PutRecordsCommand({ StreamName, Records }));
    eq(out.FailedRecordCount, 0, "FailedRecordCount");
    eq(out.Records.length, Records.length, "a result per record");
    out.Records.forEach((result, i) => {
      eq(result.ShardId, shards[i % 2], `record ${i}'s shard`);
      put.push({ ShardId: result.ShardId, SequenceNumber: result.SequenceNumber, ...Records[i] });
    });
  },

  async getRecordsByteForByte() {
    for (const ShardId of shards) {
      const want = put
        .filter((r) => r.ShardId === ShardId)
        .sort((x, y) => (BigInt(x.SequenceNumber) < BigInt(y.SequenceNumber) ? -1 : 1));
      const got = await readShard(ShardId);
      const view = (r) => [r.SequenceNumber, r.PartitionKey, [...r.Data]];
      eq(got.map(view), want.map(view), `${ShardId} read back`);
      for (const r of got) {
        if (!(r.Data instanceof Uint8Array)) throw new Error("Data is a Uint8Array");
        if (!(r.ApproximateArrivalTimestamp instanceof Date)) throw new Error("arrival is a Date");
        const arrival = r.ApproximateArrivalTimestamp;
        if (Math.abs(Date.now() - arrival.getTime()) > 300_000) {
          throw new Error(`arrival ${arrival.toISOString()} is not about now`);
        }
      }
    }
  },

  async missingStreamIsResourceNotFound() {
    eq(
      await errorOf(kinesis.send(new DescribeStreamSummaryCommand({ StreamName: "kj-missing" }))),
      { name: "ResourceNotFoundException", status: 400 },
      "a missing stream",
    );
  },

  async deleteStream() {
    await kinesis.send(new DeleteStreamCommand({ StreamName }));
    eq(
      await errorOf(kinesis.send(new DescribeStreamSummaryCommand({ StreamName }))),
      { name: "ResourceNotFoundException", status: 400 },
      "a deleted stream",
    );
  },
};

await run(checks);

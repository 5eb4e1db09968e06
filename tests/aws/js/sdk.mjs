// The JavaScript SDK v3 against a running Switchyard: node sdk.mjs BASE_URL.
//
// The SDK checks the MD5s of what SQS answers (of each sent body and its attributes, and
// of each received body) and throws when one differs, so every send and receive here is
// also a check of them. Each check is a function; the script runs them all and exits
// non-zero on the first failure, naming it.

import {
  SQSClient,
  CreateQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  SendMessageCommand,
  SendMessageBatchCommand,
  ReceiveMessageCommand,
  DeleteMessageBatchCommand,
} from "@aws-sdk/client-sqs";
import {
  SNSClient,
  CreateTopicCommand,
  SubscribeCommand,
  PublishCommand,
  PublishBatchCommand,
} from "@aws-sdk/client-sns";

import { eq, errorOf, run } from "./checks.mjs";

const endpoint = process.argv[2];
const config = {
  endpoint,
  region: "eu-central-1",
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
  maxAttempts: 1,
};
const sqs = new SQSClient(config);
const sns = new SNSClient(config);

async function receiveAll(QueueUrl, want) {
  const got = [];
  for (let i = 0; i < 10 && got.length < want; i++) {
    const out = await sqs.send(
      new ReceiveMessageCommand({
        QueueUrl,
        MaxNumberOfMessages: 10,
        WaitTimeSeconds: 1,
        MessageAttributeNames: ["All"],
      }),
    );
    const messages = out.Messages ?? [];
    got.push(...messages);
    if (messages.length > 0) {
      await sqs.send(
        new DeleteMessageBatchCommand({
          QueueUrl,
          Entries: messages.map((m, n) => ({ Id: `m${n}`, ReceiptHandle: m.ReceiptHandle })),
        }),
      );
    }
  }
  return got;
}

const checks = {
  async sqsSendAndReceiveWithTheirMd5s() {
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: "js-jobs" }));
    const body = '{"id": 7, "note": "caf\u00e9 \\"q\\""}\t\u2603 \u{1F600}';
    const MessageAttributes = {
      colour: { DataType: "String", StringValue: "red" },
      price: { DataType: "Number", StringValue: "1.50" },
      blob: { DataType: "Binary", BinaryValue: new Uint8Array([0, 1, 254]) },
    };
    const sent = await sqs.send(new SendMessageCommand({ QueueUrl, MessageBody: body, MessageAttributes }));
    const batch = await sqs.send(
      new SendMessageBatchCommand({
        QueueUrl,
        Entries: [
          { Id: "a", MessageBody: "first" },
          { Id: "b", MessageBody: "second", MessageAttributes },
        ],
      }),
    );
    eq(batch.Successful.map((s) => s.Id).sort(), ["a", "b"], "batch sent");
    const got = await receiveAll(QueueUrl, 3);
    eq(got.length, 3, "three received");
    const first = got.find((m) => m.MessageId === sent.MessageId);
    eq(first.Body, body, "body byte for byte");
    eq(first.MessageAttributes.colour.StringValue, "red", "string attribute");
    eq([...first.MessageAttributes.blob.BinaryValue], [0, 1, 254], "binary attribute");
  },

  async snsFanoutToSqs() {
    const { TopicArn } = await sns.send(new CreateTopicCommand({ Name: "js-orders" }));
    eq(TopicArn, "arn:aws:sns:eu-central-1:000000000000:js-orders", "topic ARN");
    const { QueueUrl } = await sqs.send(new CreateQueueCommand({ QueueName: "js-orders-q" }));
    const { Attributes } = await sqs.send(
      new GetQueueAttributesCommand({ QueueUrl, AttributeNames: ["QueueArn"] }),
    );
    await sns.send(
      new SubscribeCommand({
        TopicArn,
        Protocol: "sqs",
        Endpoint: Attributes.QueueArn,
        Attributes: { FilterPolicy: JSON.stringify({ size: [{ numeric: [">=", 10] }] }) },
      }),
    );
    const big = await sns.send(
      new PublishCommand({
        TopicArn,
        Message: "a big order",
        Subject: "Order",
        MessageAttributes: { size: { DataType: "Number", StringValue: "12" } },
      }),
    );
    await sns.send(
      new PublishBatchCommand({
        TopicArn,
        PublishBatchRequestEntries: [
          { Id: "s", Message: "small", MessageAttributes: { size: { DataType: "Number", StringValue: "1" } } },
          { Id: "l", Message: "large", MessageAttributes: { size: { DataType: "Number", StringValue: "99" } } },
        ],
      }),
    );
    const got = await receiveAll(QueueUrl, 2);
    const notes = got.map((m) => JSON.parse(m.Body)).sort((a, b) => a.Message.localeCompare(b.Message));
    eq(notes.map((n) => n.Message), ["a big order", "large"], "the filter let two through");
    eq(notes[0].MessageId, big.MessageId, "MessageId");
    eq(notes[0].Subject, "Order", "Subject");
    eq(notes[0].TopicArn, TopicArn, "TopicArn");
    eq(notes[0].MessageAttributes.size, { Type: "Number", Value: "12" }, "attributes");
  },

  async errorsAsTheSdkNamesThem() {
    const missingQueue = await errorOf(sqs.send(new GetQueueUrlCommand({ QueueName: "js-none" })));
    if (!["QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"].includes(missingQueue.name)) {
      throw new Error(`missing queue: ${JSON.stringify(missingQueue)}`);
    }
    eq(missingQueue.status, 400, "missing queue status");
    const missingTopic = await errorOf(
      sns.send(new PublishCommand({ TopicArn: "arn:aws:sns:eu-central-1:000000000000:none", Message: "m" })),
    );
    eq(missingTopic, { name: "NotFoundException", status: 404 }, "missing topic");
  },
};

await run(checks);

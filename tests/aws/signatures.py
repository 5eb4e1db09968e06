"""With --token, SQS over the AWS SDK needs SigV4 signed with access key `switchyard`
and the token as the secret key: python signatures.py BASE_URL TOKEN."""

import sys

import boto3
import botocore.config
import botocore.exceptions

BASE, TOKEN = sys.argv[1], sys.argv[2]


def client(key, secret):
    return boto3.client(
        "sqs",
        endpoint_url=BASE,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 1}),
    )


def refused(sqs, code):
    try:
        sqs.list_queues()
    except botocore.exceptions.ClientError as e:
        got = e.response["Error"]["Code"]
        assert got == code, f"expected {code}, got {got}"
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 403
        return
    raise AssertionError(f"served a request that should fail with {code}")


signed = client("switchyard", TOKEN)
url = signed.create_queue(QueueName="signed")["QueueUrl"]
signed.send_message(QueueUrl=url, MessageBody="hello, signed")
got = signed.receive_message(QueueUrl=url)["Messages"]
assert got[0]["Body"] == "hello, signed", got
print("ok signed with the token")

refused(client("switchyard", TOKEN + "x"), "SignatureDoesNotMatch")
print("ok a wrong secret is refused")
refused(client("someone", TOKEN), "InvalidClientTokenId")
print("ok another access key is refused")

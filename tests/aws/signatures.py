"""With --token, the AWS protocols need SigV4 signed with access key `switchyard` and the
token as the secret key: python signatures.py BASE_URL TOKEN."""

import sys

import boto3
import botocore.config
import botocore.exceptions

BASE, TOKEN = sys.argv[1], sys.argv[2]


def client(key, secret, service="sqs"):
    return boto3.client(
        service,
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


def code_of(call, **kwargs):
    try:
        call(**kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    return "served", 200


# Kinesis (JSON protocol) and Lambda (REST, whose paths the SDK signs encoded once more:
# a function ARN in the path must verify).
kinesis = client("switchyard", TOKEN, "kinesis")
assert code_of(kinesis.list_streams) == ("served", 200)
bad_kinesis = client("switchyard", TOKEN + "x", "kinesis")
got = code_of(bad_kinesis.list_streams)
assert got == ("SignatureDoesNotMatch", 403), got
print("ok Kinesis needs the token")

lam = client("switchyard", TOKEN, "lambda")
arn = "arn:aws:lambda:us-east-1:000000000000:function:nope"
got = code_of(lam.get_function, FunctionName=arn)
assert got == ("ResourceNotFoundException", 404), got
bad_lambda = client("switchyard", TOKEN + "x", "lambda")
got = code_of(bad_lambda.get_function, FunctionName=arn)
assert got == ("SignatureDoesNotMatch", 403), got
got = code_of(client("someone", TOKEN, "lambda").list_functions)
assert got == ("InvalidClientTokenId", 403), got
print("ok Lambda needs the token, and a signed ARN path verifies")

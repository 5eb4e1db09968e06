"""What the AWS client scripts share: plain assertions, boto3 clients and their errors,
`/v1` calls beside the SDK's, and running a list of checks so that the first failure names
its check and fails the run."""

import json
import sys
import urllib.error
import urllib.request

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials
import botocore.exceptions


def eq(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


def client_at(base, region):
    """A function making boto3 clients of the server at `base`, with test keys and no
    retries (a retry would hide what the first answer was)."""

    def client(service, **config):
        return boto3.client(
            service,
            endpoint_url=base,
            region_name=region,
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=botocore.config.Config(retries={"max_attempts": 1}, **config),
        )

    return client


def error_of(call, *args, **kwargs):
    """The error code and HTTP status a call fails with; fails when it succeeds."""
    try:
        call(*args, **kwargs)
    except botocore.exceptions.ClientError as e:
        return e.response["Error"]["Code"], e.response["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError(f"{call.__name__} succeeded; an error was expected")


def signed_post(base, region, service, target, body, content_type):
    """Posts `body` to `base` with `X-Amz-Target: target`, signed as an SDK signs it, for
    requests an SDK would not send; (status, headers, body)."""
    request = botocore.awsrequest.AWSRequest(
        method="POST",
        url=base + "/",
        data=body,
        headers={"Content-Type": content_type, "X-Amz-Target": target},
    )
    credentials = botocore.credentials.Credentials("test", "test")
    botocore.auth.SigV4Auth(credentials, service, region).add_auth(request)
    raw = urllib.request.Request(
        base + "/", data=body, method="POST", headers=dict(request.headers.items())
    )
    try:
        with urllib.request.urlopen(raw) as res:
            return res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def v1_at(base):
    """A function calling the `/v1` API of the server at `base` with a JSON body."""

    def v1(method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(base + path, data=data, method=method)
        req.add_header("content-type", "application/json")
        with urllib.request.urlopen(req) as res:
            text = res.read()
            return json.loads(text) if text else None

    return v1


def run(checks):
    """Runs each check in order; exits non-zero at the first that fails, naming it."""
    for check in checks:
        try:
            check()
        except Exception as e:  # report which check failed, then fail
            print(f"FAILED {check.__name__}: {type(e).__name__}: {e}", file=sys.stderr)
            sys.exit(1)
        print(f"ok {check.__name__}")

"""What the AWS client scripts share: plain assertions, `/v1` calls beside the SDK's, and
running a list of checks so that the first failure names its check and fails the run."""

import json
import sys
import urllib.request


def eq(got, want, what):
    assert got == want, f"{what}: got {got!r}, want {want!r}"


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

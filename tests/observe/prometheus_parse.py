"""Reads a server's /metrics with the Prometheus Python client's parser and prints every
sample as JSON: one object per line, {"name", "labels", "value"}. Fails when the page does
not parse, or when a family has no HELP or no TYPE.

Usage: prometheus_parse.py BASE_URL
"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def main() -> None:
    base = sys.argv[1].rstrip("/")
    with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
        content_type = response.headers["Content-Type"]
        text = response.read().decode()
    assert content_type.startswith("text/plain; version=0.0.4"), content_type
    names = set()
    for family in text_string_to_metric_families(text):
        assert family.type != "unknown", f"{family.name} has no TYPE"
        assert family.documentation, f"{family.name} has no HELP"
        assert family.name not in names, f"{family.name} appears twice"
        names.add(family.name)
        for sample in family.samples:
            print(json.dumps({"name": sample.name, "labels": sample.labels, "value": sample.value}))


if __name__ == "__main__":
    main()

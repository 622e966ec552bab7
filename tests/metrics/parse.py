"""Reads a /metrics exposition on stdin and prints its samples as JSON, parsed by the
Prometheus project's own Python parser (PyPI prometheus-client). A text the parser refuses
makes this exit non-zero with the parser's message.

Output: {"families": {name: type}, "samples": [[name, {labels}, value], ...]}
"""
import json
import sys

from prometheus_client.parser import text_string_to_metric_families


def main():
    text = sys.stdin.read()
    families = {}
    samples = []
    for family in text_string_to_metric_families(text):
        families[family.name] = family.type
        for s in family.samples:
            samples.append([s.name, dict(s.labels), s.value])
    json.dump({"families": families, "samples": samples}, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # the parser's refusal is the test's failure message
        print(f"unparsable exposition: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)

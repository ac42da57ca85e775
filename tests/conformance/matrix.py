"""Render the conformance results (features x paths) as a Markdown table.

    python -m tests.conformance.matrix --results .cache/conformance/results.json
    python -m tests.conformance.matrix --results FILE --readme README.md

With ``--readme`` the table replaces what is between ``<!-- conformance:start -->`` and
``<!-- conformance:end -->`` in that file (the markers stay); without it, it is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

START = "<!-- conformance:start -->"
END = "<!-- conformance:end -->"
PATHS = ("docker", "subprocess", "kfp", "kfp-unfused", "sagemaker", "sagemaker-unfused")
NOT_RUN = "not run"


def _cell(text: str) -> str:
    """One outcome as a table cell: one line, pipes escaped."""
    return " ".join(str(text).split()).replace("|", "\\|") or NOT_RUN


def render(results: dict[str, Any]) -> str:
    """The Markdown table of a results document (``harness.write_results``): one row per
    feature, one column per path, in the document's path order (docker first by default)."""
    paths = list(results.get("paths") or PATHS)
    table = results.get("results", {})
    features = sorted(set(results.get("features") or []) | set(table))
    lines = ["| feature | " + " | ".join(paths) + " |",
             "|---|" + "---|" * len(paths)]
    for feature in features:
        row = table.get(feature, {})
        lines.append(f"| {_cell(feature)} | "
                     + " | ".join(_cell(row.get(path, NOT_RUN)) for path in paths) + " |")
    return "\n".join(lines) + "\n"


def replace_block(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table``."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < 0 or end < start:
        raise ValueError(f"no '{START}' ... '{END}' block to replace")
    return text[:start + len(START)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.conformance.matrix", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", required=True, help="the JSON file the conformance suite wrote")
    p.add_argument("--readme", help="rewrite the conformance block of this Markdown file")
    args = p.parse_args(argv)
    with open(args.results) as f:
        table = render(json.load(f))
    if not args.readme:
        sys.stdout.write(table)
        return 0
    with open(args.readme) as f:
        text = f.read()
    try:
        updated = replace_block(text, table)
    except ValueError as e:
        print(f"error: {args.readme}: {e}", file=sys.stderr)
        return 2
    if updated != text:
        with open(args.readme, "w") as f:
            f.write(updated)
    print(f"{args.readme}: conformance matrix ({len(table.splitlines()) - 2} features)",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

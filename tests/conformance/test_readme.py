"""The README's conformance matrix is this suite's own result, not a hand-written claim."""

from __future__ import annotations

import os
from typing import Any

import pytest

from tests.conformance import harness, matrix

pytestmark = pytest.mark.docker
README = os.path.join(harness.REPO, "README.md")


def test_the_readme_matrix_is_what_the_suite_measured(conformance: Any) -> None:
    results: dict[str, dict[str, str]] = {}
    for feature in harness.features():
        reference = conformance.outcome(feature, harness.REFERENCE)
        for path in harness.PATHS:
            verdict = conformance.verdicts.get((feature, path))  # the tests' own, when they ran
            if verdict is None:
                outcome = conformance.outcome(feature, path)
                verdict = ("same" if path == harness.REFERENCE and outcome.normalized is not None
                           else harness.verdict(reference, outcome))
            results.setdefault(feature, {})[path] = verdict
    table = matrix.render({"paths": list(harness.PATHS), "features": sorted(results),
                           "results": results})
    with open(README) as f:
        text = f.read()
    assert matrix.START in text and matrix.END in text, "README.md has no conformance block"
    shown = text.split(matrix.START, 1)[1].split(matrix.END, 1)[0].strip()
    assert shown == table.strip(), (
        "README.md's conformance matrix is not what the suite measured; after a full run of "
        "tests/conformance, update it with: python -m tests.conformance.matrix --results "
        ".cache/conformance/results.json --readme README.md\nmeasured:\n" + table)

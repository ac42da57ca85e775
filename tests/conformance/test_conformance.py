"""One contract, every execution path (fused and unfused on the cloud targets' local runs): every
path must give what the docker path gives.

``test_docker_gives_the_expected_values[feature]`` holds the reference itself to values written
here (so that the suite cannot pass by every path being equally wrong);
``test_path_matches_docker[feature-path]`` compares another path's normalized run with the
docker path's, field by field. A path that refuses a pipeline by name (exit code 3 and an
``error: ...`` line) passes as ``refused: <reason>``. Every outcome goes to the results file
(see conftest.py) that ``python -m tests.conformance.matrix`` renders.

Needs the Docker engine and the kubesage/torch image (``make setup``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import pytest

from tests.conformance import harness

pytestmark = pytest.mark.docker

FEATURES = harness.features()
OTHER_PATHS = [p for p in harness.PATHS if p != harness.REFERENCE]


# -- helpers for the expectations ------------------------------------------------------------
def steps(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return run["steps"]  # type: ignore[no-any-return]


def read(record: dict[str, Any], step: str, output: str, name: str) -> str:
    """The text of file ``name`` of output ``output`` of ``step`` in a raw run record."""
    found = next(s for s in record["steps"] if s["name"] == step)
    with open(os.path.join(found["outputs"][output]["path"], name)) as f:
        return f.read()


def files(run: dict[str, Any], step: str, output: str) -> list[str]:
    out = steps(run)[step]["outputs"][output]
    assert out["kind"] == "folder", f"step '{step}' output '{output}' is {out}"
    return sorted(out["files"])


def succeeded(run: dict[str, Any], *names: str) -> None:
    assert (run["status"], run["exit_code"]) == ("succeeded", 0), run["status"]
    for name in names:
        assert steps(run)[name]["status"] == "succeeded", f"step '{name}': {steps(run)[name]}"


# -- the expected values, per feature --------------------------------------------------------
PARAMS_SEEN = {
    "text": {"type": "str", "value": "hello, kubesage"},
    "count": {"type": "int", "value": 3},
    "ratio": {"type": "float", "value": 0.25},
    "flag": {"type": "bool", "value": False},
    "items": {"type": "list", "value": ["a", 1, 2.5]},
    "options": {"type": "dict", "value": {"k": "v", "n": 2, "nested": {"x": [1, 2]}}},
}


def expect_parameters(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "diag-params")
    assert sorted(steps(run)) == ["diag-params"]
    step = steps(run)["diag-params"]
    assert json.loads(step["returns"]["output"]) == PARAMS_SEEN
    assert json.loads(read(records[0], "diag-params", "received", "params.json")) == PARAMS_SEEN
    assert step["outputs"]["received"]["metadata"] == {"parameters": 6}


def expect_artifacts(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "diag-make-artifacts", "diag-read-artifacts")
    make = steps(run)["diag-make-artifacts"]
    assert files(run, "diag-make-artifacts", "artifact") == ["notes.txt"]
    assert files(run, "diag-make-artifacts", "dataset") == ["data.csv", "parts/part-0.txt"]
    assert files(run, "diag-make-artifacts", "model") == ["weights.json"]
    assert files(run, "diag-make-artifacts", "metrics") == ["metrics.json"]
    assert {name: out["metadata"] for name, out in make["outputs"].items()} == {
        "artifact": {"kind": "notes", "lines": 1},
        "dataset": {"rows": 4, "columns": ["id", "value"]},
        "model": {"framework": "none", "parameters": 3},
        "metrics": {"score": 0.75, "rows": 4.0},
    }
    assert make["metrics"] == {"score": 0.75, "rows": 4.0}
    assert read(records[0], "diag-make-artifacts", "dataset", "data.csv") == \
        "id,value\n0,0\n1,1\n2,4\n3,9\n"
    reader = steps(run)["diag-read-artifacts"]
    assert reader["returns"] == {"output": "ok"}
    seen = json.loads(read(records[0], "diag-read-artifacts", "seen", "seen.json"))
    assert seen["problems"] == []
    for name in ("artifact", "dataset", "model", "metrics"):  # the reader saw the same bytes
        assert seen[name]["is_folder"] is True
        assert seen[name]["files"] == make["outputs"][name]["files"], name
        assert seen[name]["metadata"] == make["outputs"][name]["metadata"], name


def expect_condition_true(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "diag-score", "gated")
    assert sorted(steps(run)) == ["diag-score", "gated"]
    assert steps(run)["diag-score"]["returns"] == {"output": 0.8}
    assert steps(run)["gated"]["returns"] == {"output": "the condition held"}
    assert read(records[0], "gated", "note", "message.txt") == "the condition held\n"


def expect_condition_false(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "diag-score")
    assert sorted(steps(run)) == ["diag-score", "gated"]
    assert steps(run)["diag-score"]["returns"] == {"output": 0.2}
    gated = steps(run)["gated"]
    assert (gated["status"], gated["returns"], gated["outputs"]) == ("skipped", {}, {})


def expect_fan_out(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    names = [f"diag-shout[{i}]" for i in range(3)]
    succeeded(run, *names)
    assert sorted(steps(run)) == names
    for name, word in zip(names, ("red", "green", "blue"), strict=True):
        assert steps(run)[name]["returns"] == {"output": word.upper()}
        assert steps(run)[name]["outputs"]["shouted"]["metadata"] == {"word": word}
        assert read(records[0], name, "shouted", "word.txt") == word.upper() + "\n"


def expect_retries(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "diag-flaky")
    assert steps(run)["diag-flaky"]["returns"] == {"output": 2}
    assert read(records[0], "diag-flaky", "attempt", "attempt.txt") == "succeeded on attempt 2\n"
    flaky = next(s for s in records[0]["steps"] if s["name"] == "diag-flaky")
    assert flaky["attempts"] == 2


def expect_cached_rerun(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "diag-write-lines", "diag-count-lines")
    first = steps(run)
    assert first["diag-write-lines"]["returns"] == {"output": 3}
    assert first["diag-count-lines"]["returns"] == {"output": 3}
    assert read(records[0], "diag-write-lines", "data", "lines.txt") == "line 0\nline 1\nline 2\n"
    assert not any(s["cached"] for s in first.values())
    (second,) = run["rerun"]
    succeeded(second)
    assert {n: s["cached"] for n, s in steps(second).items()} == {
        "diag-write-lines": True, "diag-count-lines": True}
    for name, step in first.items():  # the cache gives back what the first run made
        assert {**steps(second)[name], "cached": False} == step, name


def expect_imported_component(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "make-text", "upper", "diag-read-text")
    text = "CONFORMANCE CHECK\nCONFORMANCE CHECK\n!"
    assert files(run, "make-text", "out") == ["out"]  # output 'y' is the file 'y' inside it
    assert read(records[0], "make-text", "out", "out") == "conformance check\n" * 2
    assert files(run, "upper", "upper") == ["upper"]
    assert steps(run)["upper"]["returns"] == {"size": len(text), "head": "CONFORMANCE"}
    assert steps(run)["diag-read-text"]["returns"] == {"output": text}
    assert json.loads(read(records[0], "diag-read-text", "seen", "files.json")) == {
        "files": {"upper": text}, "is_folder": True}


def expect_distributed(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "diag-allreduce")
    step = steps(run)["diag-allreduce"]
    assert step["returns"] == {"output": 3}  # (0 + 1) + (1 + 1) over two nodes
    assert step["metrics"] == {"sum": 3.0, "world_size": 2.0}


def expect_failing_step(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    assert (run["status"], run["exit_code"]) == ("failed", 1)
    assert {n: s["status"] for n, s in steps(run).items()} == {
        "first": "succeeded", "bad": "failed", "after-bad": "not_run"}
    assert steps(run)["first"]["returns"] == {"output": "before the failure"}
    bad = next(s for s in records[0]["steps"] if s["name"] == "bad")
    assert "diag-fail: failing before the failure" in bad["error"]


def expect_returned_value(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    succeeded(run, "first", "second")
    assert steps(run)["first"]["returns"] == {"output": 41}
    assert steps(run)["second"]["returns"] == {"output": 42}
    assert read(records[0], "second", "total", "value.txt") == "int 41 + 1 = 42\n"


def expect_fusion(run: dict[str, Any], records: list[dict[str, Any]]) -> None:
    names = ["diag-make-artifacts", "diag-read-artifacts", "diag-score", "first", "second",
             "diag-shout[0]", "diag-shout[1]", "diag-note[0]", "diag-note[1]"]
    succeeded(run, *names)
    assert sorted(steps(run)) == sorted(names)
    assert steps(run)["diag-make-artifacts"]["outputs"]["dataset"]["metadata"] == {
        "rows": 3, "columns": ["id", "value"]}
    assert steps(run)["diag-read-artifacts"]["returns"] == {"output": "ok"}
    assert steps(run)["diag-score"]["returns"] == {"output": 0.75}
    assert steps(run)["first"]["returns"] == {"output": 4}
    assert steps(run)["second"]["returns"] == {"output": 6}
    assert read(records[0], "second", "total", "value.txt") == "int 4 + 2 = 6\n"
    for i, word in enumerate(("RED", "GREEN")):
        assert steps(run)[f"diag-note[{i}]"]["returns"] == {"output": word}
        assert read(records[0], f"diag-note[{i}]", "note", "message.txt") == word + "\n"


EXPECTATIONS: dict[str, Callable[[dict[str, Any], list[dict[str, Any]]], None]] = {
    "parameters": expect_parameters,
    "artifacts": expect_artifacts,
    "condition-true": expect_condition_true,
    "condition-false": expect_condition_false,
    "fan-out": expect_fan_out,
    "retries": expect_retries,
    "cached-rerun": expect_cached_rerun,
    "imported-component": expect_imported_component,
    "distributed": expect_distributed,
    "failing-step": expect_failing_step,
    "returned-value": expect_returned_value,
    "fusion": expect_fusion,
}


def test_every_feature_has_expectations() -> None:
    assert sorted(EXPECTATIONS) == FEATURES


# -- the tests -------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [harness.REFERENCE])
@pytest.mark.parametrize("feature", FEATURES)
def test_docker_gives_the_expected_values(conformance: Any, feature: str, path: str) -> None:
    outcome = conformance.outcome(feature, path)
    if outcome.normalized is None:
        verdict = harness.verdict(None, outcome)
        conformance.record(feature, path, verdict, outcome)
        pytest.fail(f"{feature}/{path}: {verdict}\n{outcome.attempts[-1].stderr[-3000:]}")
    try:
        EXPECTATIONS[feature](outcome.normalized, outcome.records)
    except (AssertionError, KeyError, StopIteration, OSError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        conformance.record(feature, path, f"differs: expectation failed: {first[:200]}", outcome,
                           [f"{feature}/{path}: {type(e).__name__}: {e}"])
        raise AssertionError(
            f"{feature}/{path}: the reference does not give the expected values: "
            f"{type(e).__name__}: {e}\n{json.dumps(outcome.normalized, indent=1)[:4000]}") from e
    conformance.record(feature, path, "same", outcome)


@pytest.mark.parametrize("path", OTHER_PATHS)
@pytest.mark.parametrize("feature", FEATURES)
def test_path_matches_docker(conformance: Any, feature: str, path: str) -> None:
    outcome = conformance.outcome(feature, path)
    reference = conformance.outcome(feature, harness.REFERENCE)
    verdict = harness.verdict(reference, outcome)
    diffs = harness.differences(reference, outcome)
    conformance.record(feature, path, verdict, outcome,
                       [f"{feature}/{path}: {d.describe(path)}" for d in diffs])
    if outcome.refused is not None:
        assert outcome.refused, f"{feature}/{path}: exit code 3 (a refusal) without a reason"
        return  # a named refusal: recorded, not a divergence
    assert outcome.failure is None, (
        f"{feature}/{path}: harness failure: {outcome.failure}\n"
        f"{outcome.attempts[-1].stderr[-3000:]}")
    assert reference.normalized is not None, f"{feature}/{path}: {verdict}"
    assert not diffs, (f"{feature}/{path} differs from {harness.REFERENCE}:\n  "
                       + "\n  ".join(f"{feature}/{path}: {d.describe(path)}" for d in diffs)
                       + f"\n--- stderr of {path} (tail) ---\n{outcome.attempts[-1].stderr[-2000:]}")

"""The harness's normalizing and comparing, on made-up run records. No Docker needed."""

from __future__ import annotations

import os
from typing import Any

from tests.conformance import harness


def record(tmp_path: Any, name: str, files: dict[str, bytes], **step: Any) -> dict[str, Any]:
    folder = tmp_path / name
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    base = {"name": "make", "status": "succeeded", "cached": False, "returns": {"output": 3},
            "metrics": {"loss": 0.5, "images_per_s": 812.0, "seconds": 1.5},
            "outputs": {"data": {"path": str(folder), "sha256": "x", "metadata": {"rows": 4}}}}
    return {"status": "succeeded", "steps": [{**base, **step}]}


def test_normalize_keeps_the_contract_and_drops_timings(tmp_path) -> None:
    run = harness.normalize(record(tmp_path, "a", {"b/c.txt": b"c\n", "a.txt": b"a\n"}), 0)
    step = run["steps"]["make"]
    assert (run["status"], run["exit_code"]) == ("succeeded", 0)
    assert step["metrics"] == {"loss": 0.5}
    assert step["outputs"]["data"]["kind"] == "folder"
    assert list(step["outputs"]["data"]["files"]) == ["a.txt", "b/c.txt"]
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(b"\x1f\x8b")
    assert harness.artifact_files(str(tarball))["kind"] == "file"
    assert harness.artifact_files(os.path.join(str(tmp_path), "nowhere"))["kind"] == "missing"


def test_the_same_run_on_two_paths_is_the_same(tmp_path) -> None:
    a = harness.normalize(record(tmp_path, "a", {"x.txt": b"1\n"}), 0)
    b = harness.normalize(record(tmp_path, "b", {"x.txt": b"1\n"}), 0)
    assert harness.compare(a, b) == []


def test_differences_name_the_step_the_field_and_what_changed(tmp_path) -> None:
    ref = harness.normalize(record(tmp_path, "a", {"x.json": b'{"n": 1}\n'}), 0)
    got = harness.normalize(record(
        tmp_path, "b", {"x.json": b'{"n": 1.0}\n', ".meta.json": b"{}"},
        returns={"output": 3.0}, cached=True,
        outputs={"data": {"path": str(tmp_path / "b"), "metadata": {"rows": 4.0}}}), 0)
    summaries = [d.summary for d in harness.compare(ref, got)]
    assert summaries == [
        "step 'make' cached=true instead of false",
        "step 'make' returns.output 3.0 instead of 3",  # type-strict: an int became a float
        "step 'make' output 'data' has extra files .meta.json; "
        "x.json line 1: '{\"n\": 1.0}' instead of '{\"n\": 1}'",
        "step 'make' output 'data' metadata.rows 4.0 instead of 4",
    ]


def test_a_failed_step_with_extra_steps_and_a_file_output(tmp_path) -> None:
    ref = harness.normalize(record(tmp_path, "a", {"x": b"1"}), 0)
    tarball = tmp_path / "model.tar.gz"
    tarball.write_bytes(b"\x1f\x8b")
    got = record(tmp_path, "b", {}, status="failed", error="Traceback\nRuntimeError: boom\n",
                 outputs={"data": {"path": str(tarball), "metadata": {"rows": 4}}})
    got["status"] = "failed"
    got["steps"].append({"name": "condition-1", "status": "succeeded"})
    outcome = harness.Outcome("f", "sagemaker", normalized=harness.normalize(got, 1))
    reference = harness.Outcome("f", "docker", normalized=ref)
    text = harness.verdict(reference, outcome)
    assert text.startswith("differs: run failed (exit 1) instead of succeeded (exit 0); "
                           "extra steps condition-1; "
                           "step 'make' failed instead of succeeded: RuntimeError: boom")
    details = [d.summary for d in harness.differences(reference, outcome)]
    assert "step 'make' output 'data' is a file model.tar.gz instead of a folder" in details


def test_refusals_and_harness_failures() -> None:
    refused = harness.Outcome("f", "kfp", refused="kfp.local cannot run a TrainJob")
    assert harness.verdict(None, refused) == "refused: kfp.local cannot run a TrainJob"
    silent = harness.Outcome("f", "kfp", refused="")
    assert harness.verdict(None, silent).startswith("differs: exit 3")
    crashed = harness.Outcome("f", "kfp", failure="exit 2 without a run record: error: boom")
    assert harness.verdict(None, crashed) == "differs: exit 2 without a run record: error: boom"
    attempt = harness.Attempt(3, None, "log line\nerror: this path refuses distributed steps\n", 0.1)
    assert attempt.error_line == "this path refuses distributed steps"


def test_the_environment_is_copied_while_another_thread_changes_it() -> None:
    """The harness's threads copy the environment while pytest's main thread sets and removes
    PYTEST_CURRENT_TEST; a plain copy raised KeyError in CI (here: about 17 in 10,000)."""
    import threading

    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            os.environ["KUBESAGE_CHURN"] = "1"
            del os.environ["KUBESAGE_CHURN"]

    thread = threading.Thread(target=churn)
    thread.start()
    try:
        copies = [harness._environ() for _ in range(10000)]
    finally:
        stop.set()
        thread.join()
    assert all(copy["PATH"] == os.environ["PATH"] for copy in copies)

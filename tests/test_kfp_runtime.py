"""The Kubeflow contract of the shared entry point: executor input in, executor output out.

The entry point runs as a process, exactly as in the container (without kfp installed there);
what it writes is parsed strictly into kfp's own ``ExecutorOutput`` proto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from kubesage.runtime import kfp as runtime
from tests.conftest import REPO


def executor_input(root: Any, **params: Any) -> dict[str, Any]:
    return {
        "inputs": {"parameterValues": params},
        "outputs": {
            "artifacts": {"result": {"artifacts": [{
                "name": "result", "uri": str(root / "probe" / "result"),
                "type": {"schemaTitle": "system.Artifact"}}]}},
            "parameters": {"Output": {"outputFile": str(root / "probe" / "Output")}},
            "outputFile": str(root / "probe" / "executor_output.json"),
        },
    }


def entry_point(doc: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kubesage.runtime", "kfp", "--entry", "components.probe:probe",
         *extra, "--executor-input", json.dumps(doc)],
        cwd=REPO, capture_output=True, text=True, timeout=120)


def test_executor_output_carries_artifacts_and_the_returned_value(tmp_path) -> None:
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    # numbers arrive as protobuf doubles: exit_code 0.0 must reach the function as the int 0
    proc = entry_point(executor_input(tmp_path, message="hello", exit_code=0.0),
                       "--checkpoint-root", str(tmp_path / "ckpt"), "--job-id", "j1", "--task-id", "t1")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "probe" / "executor_output.json").read_text()
    parsed = json_format.Parse(text, pipeline_spec_pb2.ExecutorOutput())  # strict
    assert parsed.parameter_values["Output"].string_value == "hello"
    art = parsed.artifacts["result"].artifacts[0]
    assert art.uri == str(tmp_path / "probe" / "result")
    assert (tmp_path / "probe" / "result" / "message.txt").read_text() == "hello"
    assert (tmp_path / "probe" / "Output").read_text() == "hello"
    with open(tmp_path / "probe" / runtime.STEP_FILE) as f:
        attempts = json.load(f)["attempts"]
    assert len(attempts) == 1 and attempts[0]["error"] == "" and attempts[0]["ended"]
    # per run, component and inputs: a retry (which may get a new task id) finds it again
    doc = executor_input(tmp_path, message="hello", exit_code=0.0)
    folder = runtime.step_dir(str(tmp_path / "ckpt"), "j1", "components.probe:probe", doc)
    assert os.path.isdir(os.path.join(folder, "checkpoints"))
    assert os.path.dirname(folder) == str(tmp_path / "ckpt" / "kubesage" / "j1")


def test_artifact_metadata_survives_protobuf_doubles() -> None:
    """KFP carries metadata as a protobuf Struct (every number a double); the runtime hands it
    over with an exact copy, so a consumer sees the int 4 and the float 4.0 as written."""
    written = {"rows": 4, "score": 4.0, "nested": {"n": [1, 2.5]}}
    sent = runtime.with_exact_metadata(written)
    as_struct = json.loads(json.dumps({k: (float(v) if isinstance(v, int) else v)
                                       for k, v in sent.items()}))
    assert as_struct["rows"] == 4.0 and runtime.exact_metadata(as_struct) == written
    assert runtime.exact_metadata({"classes": 10.0, "xs": [1.0, 2.5]}) == {"classes": 10, "xs": [1, 2.5]}
    assert runtime.whole_numbers(2.0) == 2.0 and runtime.whole_numbers([2.0, 0.5]) == [2, 0.5]


def test_a_failing_component_writes_no_executor_output(tmp_path) -> None:
    doc = executor_input(tmp_path, message="boom", exit_code=3)
    assert entry_point(doc).returncode == 3
    assert entry_point(doc).returncode == 3  # a retry appends its own attempt
    assert not (tmp_path / "probe" / "executor_output.json").exists()
    with open(tmp_path / "probe" / runtime.STEP_FILE) as f:
        attempts = json.load(f)["attempts"]
    assert len(attempts) == 2 and "SystemExit: 3" in attempts[-1]["error"]


def test_missing_required_value_is_named(tmp_path) -> None:
    doc = executor_input(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "kubesage.runtime", "kfp", "--entry", "components.register:register",
         "--executor-input", json.dumps(doc)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert ("components.register:register: the executor input has no value for model_name, accuracy"
            in proc.stderr)


@pytest.mark.parametrize("uri,metadata,path", [
    ("s3://bucket/run/train/model", {}, "/s3/bucket/run/train/model"),
    ("gs://bucket/x", {}, "/gcs/bucket/x"),
    ("minio://mlpipeline/v2/artifacts/x", {}, "/minio/mlpipeline/v2/artifacts/x"),
    ("/tmp/local/outputs/x", {}, "/tmp/local/outputs/x"),
    ("minio://mlpipeline/x", {"_kfp_workspace": True}, "/kfp-workspace/.artifacts/minio/mlpipeline/x"),
])
def test_artifact_uris_map_to_the_launcher_mounts(uri: str, metadata: dict[str, Any], path: str) -> None:
    assert runtime.local_path(uri, metadata) == path


def test_runtime_module_is_plain_python() -> None:
    with open(os.path.join(REPO, "kubesage", "runtime", "kfp.py")) as f:
        source = f.read()
    assert "import kfp" not in source and "from kfp" not in source
    assert "google.protobuf" not in source

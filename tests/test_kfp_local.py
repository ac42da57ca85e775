"""``kubesage run --target kfp``: the compiled YAML runs under the kfp SDK's own kfp.local DockerRunner.

Needs the Docker engine and the kubesage/torch image (``make setup``).
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, predictions_sha256, run_cli, run_json

pytestmark = pytest.mark.docker


@pytest.fixture
def kfp_config(tmp_path, config_file: str) -> str:
    """config/kfp.yaml whose local runs use this test's local config (data, store)."""
    with open(os.path.join(REPO, "config", "kfp.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["local"] = {"config": config_file}
    doc["retry"] = {"backoff": "1s", "factor": 1.0, "max": "10s"}
    path = tmp_path / "kfp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_reference_pipeline_gives_the_local_runners_metrics(docker_client: Any, kfp_config: str,
                                                            config_file: str) -> None:
    kfp = run_json("run", "pipelines/image_classification.py", "--target", "kfp", "--config", kfp_config)
    assert kfp["_returncode"] == 0, kfp["_stderr"][-3000:]
    local = run_json("run", "pipelines/image_classification.py", "--config", config_file)
    assert local["_returncode"] == 0, local["_stderr"][-3000:]
    assert (kfp["target"], kfp["runner"], kfp["status"]) == ("kfp", "kfp.local-docker", "succeeded")
    assert {s["name"]: s["status"] for s in kfp["steps"]} == {
        "preprocess": "succeeded", "train": "succeeded", "evaluate": "succeeded",
        "register": "succeeded", "predict": "succeeded", "postprocess": "succeeded"}
    assert kfp["metrics"]["evaluate"]["accuracy"] == local["metrics"]["evaluate"]["accuracy"]
    for name in ("train_loss", "train_accuracy"):
        assert kfp["metrics"]["train"][name] == local["metrics"]["train"][name]
    steps = {s["name"]: s for s in kfp["steps"]}
    local_steps = {s["name"]: s for s in local["steps"]}
    assert steps["evaluate"]["returns"] == local_steps["evaluate"]["returns"]
    assert steps["register"]["returns"] == {"output": "digits-classifier"}
    assert predictions_sha256(kfp) == predictions_sha256(local)  # byte-identical predictions
    # the same shards, byte for byte, and the same artifact metadata
    assert steps["preprocess"]["outputs"]["data"]["sha256"] == \
        local_steps["preprocess"]["outputs"]["data"]["sha256"]
    assert steps["preprocess"]["outputs"]["data"]["metadata"] == \
        local_steps["preprocess"]["outputs"]["data"]["metadata"]
    # the run is in the local run store, with the YAML that ran beside its outputs
    listed = json.loads(run_cli("runs", "--config", config_file, "list", "--json", check=True).stdout)
    assert kfp["run_id"] in [r["run_id"] for r in listed]
    store = yaml.safe_load(open(config_file))["store"]
    compiled = os.path.join(store, "kfp", kfp["run_id"], "pipeline.yaml")
    assert "is valid" in run_cli("validate", compiled, check=True).stdout
    # the image by its ID, so kfp.local's cache (keyed on the image name) never serves other code
    image_id = kfp["images"]["kubesage/torch"].removeprefix("sha256:")
    assert f"image: kubesage/torch:id-{image_id[:12]}" in open(compiled).read()
    assert kfp["compiled_sha256"] and kfp["source_sha256"] == local["source_sha256"]
    assert kfp["images"]["kubesage/torch"].startswith("sha256:")


def test_a_failing_step_is_retried_and_stops_its_downstream(docker_client: Any, kfp_config: str) -> None:
    record = run_json("run", "tests/pipelines/probes.py:failing", "--target", "kfp",
                      "--config", kfp_config)
    assert record["_returncode"] == 1 and record["status"] == "failed"
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["probe"]["status"] == "succeeded"
    assert steps["bad"]["status"] == "failed"
    assert steps["bad"]["attempts"] == 2  # set_retries(1)
    assert "SystemExit: 3" in steps["bad"]["error"]
    assert steps["after-bad"]["status"] == "not_run"


def test_fan_out_gives_one_step_per_item_and_skips_the_false_branch(docker_client: Any,
                                                                     kfp_config: str) -> None:
    record = run_json("run", "tests/pipelines/probes.py:fan-out", "--target", "kfp",
                      "--param", 'clients=["x","y","z"]', "--config", kfp_config)
    assert record["_returncode"] == 0, record["_stderr"][-3000:]
    steps = {s["name"]: s for s in record["steps"]}
    assert sorted(steps) == ["gated", "per-client[0]", "per-client[1]", "per-client[2]", "probe",
                             "score"]
    for i, client in enumerate("xyz"):
        step = steps[f"per-client[{i}]"]
        assert step["status"] == "succeeded" and step["returns"] == {"output": client}
        with open(os.path.join(step["outputs"]["result"]["path"], "message.txt")) as f:
            assert f.read() == client
    assert steps["score"]["returns"] == {"output": "0.3"}
    assert steps["gated"]["status"] == "skipped"  # score.output == "1.0" does not hold

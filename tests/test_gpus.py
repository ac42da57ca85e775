"""One GPU meaning on every target: the reference train declares one GPU per process.

Kubeflow requests ``nvidia.com/gpu``, SageMaker gets (and checks) a GPU instance type, and a
local run follows the local config's ``gpus`` setting: this machine's engine has no GPUs, so
``auto`` runs train on CPU and says so once.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from kubesage.targets.sagemaker.limits import gpus_of
from tests.conftest import run_cli, run_json, write_config

pytestmark = pytest.mark.docker

REFERENCE = "pipelines/image_classification.py"


def test_train_gets_a_gpu_on_kubeflow_and_on_sagemaker(tmp_path) -> None:
    kfp_out, sm_out = tmp_path / "ic.yaml", tmp_path / "ic.json"
    run_cli("compile", REFERENCE, "--target", "kfp", "-o", str(kfp_out), check=True)
    run_cli("compile", REFERENCE, "--target", "sagemaker", "-o", str(sm_out), check=True)
    executors = yaml.safe_load_all(kfp_out.read_text()).__next__()["deploymentSpec"]["executors"]
    # fused (fusion: auto): train's pod runs evaluate after it; preprocess runs in its own
    train = executors["exec-train-to-evaluate"]["container"]["resources"]
    assert train["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert train["accelerator"]["resourceCount"] == "1"
    assert "accelerator" not in executors["exec-preprocess"]["container"].get("resources", {})
    steps = {s["Name"]: s for s in json.loads(sm_out.read_text())["Steps"]}
    args = steps["preprocess-to-evaluate"]["Arguments"]  # the training job train runs in
    assert (gpus_of(args["ResourceConfig"]["InstanceType"]) or 0) >= 1
    assert args["Environment"]["KUBESAGE_GPUS_PER_NODE"] == "1"
    inner = {s["Name"]: s for s in steps["condition-1"]["Arguments"]["IfSteps"]}
    assert "KUBESAGE_GPUS_PER_NODE" not in inner["predict-requests"]["Arguments"].get(
        "Environment", {})


def test_gpus_auto_runs_train_on_cpu_where_the_engine_has_none(
        docker_client: Any, tmp_path, fsx_root: str) -> None:
    """This machine's Docker engine has no GPUs: the run succeeds on CPU and says so once."""
    assert "nvidia" not in (docker_client.info().get("Runtimes") or {})  # a CPU-only engine
    config = write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"),
                          gpus="auto")
    record = run_json("run", REFERENCE, "--config", config, "--param", "epochs=1",
                      "--param", "threshold=0.0")
    assert record["_returncode"] == 0 and record["status"] == "succeeded", record["_stderr"]
    note = (f"train: want GPUs, but the Docker engine has none ('gpus: auto' in {config}): "
            "they run on CPU")
    assert record["_stderr"].count(note) == 1, record["_stderr"]
    train = next(s for s in record["steps"] if s["name"] == "train")
    with open(train["log"]) as f:
        assert "(cpu)" in f.read()


def test_gpus_all_is_refused_where_the_engine_has_none(tmp_path, fsx_root: str) -> None:
    config = write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"),
                          gpus="all")
    proc = run_cli("run", REFERENCE, "--config", config)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "'gpus: all'" in errors[0] and "set 'gpus: auto'" in errors[0]

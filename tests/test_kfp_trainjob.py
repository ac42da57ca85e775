"""Multi-node training on Kubeflow Trainer v2: the TrainJob manifest a launcher step would create.

The manifest is checked against the pinned API (Trainer v2.2, ``trainer.kubeflow.org/v1alpha1``):
only fields that API defines, at the places it defines them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import Any

import pytest

from components.preprocess import preprocess
from kubesage.dsl.errors import DefinitionError
from kubesage.dsl.interface import Distribution, Resources
from kubesage.project.loader import load_pipeline
from kubesage.runtime import kfp as runtime
from kubesage.runtime.context import CHECKPOINT_ENV
from kubesage.targets import kfp as kfp_target
from kubesage.targets.kfp.config import load_kfp_config
from kubesage.targets.kfp.trainjob import TRAINER_API_VERSION, trainjob_template
from tests.conftest import REPO, content_tag_of

CONFIG = os.path.join(REPO, "config", "kfp.yaml")
# the image by the code it holds (compile refuses when no local image holds it)
IMAGE = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/kubesage/torch:{content_tag_of()}"

# Field names of the pinned API (pkg/apis/trainer/v1alpha1/trainjob_types.go, Trainer v2.2).
TRAINJOB_SPEC = {"runtimeRef", "initializer", "trainer", "runtimePatches", "suspend",
                 "activeDeadlineSeconds", "managedBy"}
TRAINER = {"image", "command", "args", "env", "numNodes", "resourcesPerNode", "numProcPerNode"}
POD_SPEC_PATCH = {"serviceAccountName", "volumes", "initContainers", "containers",
                  "imagePullSecrets", "securityContext", "nodeSelector", "affinity", "tolerations",
                  "schedulingGates"}
CONTAINER_PATCH = {"name", "env", "volumeMounts", "securityContext"}
RFC1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def compiled_template(tmp_path: Any) -> dict[str, Any]:
    """The template embedded in the compiled launcher step of tests/pipelines/kfp_shapes.py."""
    import yaml

    pipeline = load_pipeline(os.path.join(REPO, "tests/pipelines/kfp_shapes.py:multi-node"))[0].build()
    out = str(tmp_path / "multi-node.yaml")
    kfp_target.TARGET.compile(pipeline, out, CONFIG)
    with open(out) as f:
        spec = next(yaml.safe_load_all(f))
    args = spec["deploymentSpec"]["executors"]["exec-train"]["container"]["args"]
    assert args[:2] == ["kfp", "trainjob"]
    template: dict[str, Any] = json.loads(args[args.index("--template") + 1])
    return template


def pod_patch(manifest: dict[str, Any]) -> dict[str, Any]:
    patch = manifest["spec"]["runtimePatches"][0]
    jobs = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert [j["name"] for j in jobs] == ["node"]
    pod: dict[str, Any] = jobs[0]["template"]["spec"]["template"]["spec"]
    return pod


def check_pinned_api(manifest: dict[str, Any]) -> None:
    assert manifest["apiVersion"] == TRAINER_API_VERSION == "trainer.kubeflow.org/v1alpha1"
    assert manifest["kind"] == "TrainJob"
    assert set(manifest["spec"]) <= TRAINJOB_SPEC
    assert set(manifest["spec"]["trainer"]) <= TRAINER
    pod = pod_patch(manifest)
    assert set(pod) <= POD_SPEC_PATCH
    for container in pod["containers"]:
        assert set(container) <= CONTAINER_PATCH


@pytest.mark.docker
def test_the_manifest_the_launcher_would_create(tmp_path) -> None:
    template = compiled_template(tmp_path)
    manifest = runtime.render_trainjob(template, runtime.trainjob_name("4f1c9e2a-77", "train"),
                                       "/checkpoints/kubesage/j/t/exchange/task.json",
                                       "/checkpoints/kubesage/j/t/checkpoints")
    check_pinned_api(manifest)
    assert RFC1035.match(manifest["metadata"]["name"]) and len(manifest["metadata"]["name"]) <= 63
    assert manifest["metadata"]["namespace"] == "kubeflow-user-example-com"
    assert manifest["spec"]["runtimeRef"] == {"name": "torch-distributed", "kind": "ClusterTrainingRuntime",
                                              "apiGroup": "trainer.kubeflow.org"}
    trainer = manifest["spec"]["trainer"]
    assert trainer["image"] == IMAGE
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (2, 4)
    # every node runs the local contract on the staged task file; it starts torchrun itself
    assert trainer["command"] == ["python", "-m", "kubesage.runtime", "local"]
    assert trainer["args"] == ["/checkpoints/kubesage/j/t/exchange/task.json"]
    assert trainer["resourcesPerNode"] == {
        "limits": {"cpu": "2", "memory": "8Gi", "nvidia.com/gpu": "4"},
        "requests": {"cpu": "2", "memory": "8Gi"}}
    env = {e["name"]: e["value"] for e in trainer["env"]}
    assert env["NCCL_DEBUG"] == "WARN"
    assert env[CHECKPOINT_ENV] == "/checkpoints/kubesage/j/t/checkpoints"
    pod = pod_patch(manifest)
    assert pod["serviceAccountName"] == "default-editor"
    assert pod["nodeSelector"] == {"eks.amazonaws.com/capacityType": "SPOT"}
    assert pod["tolerations"] == [{"key": "spot", "operator": "Equal", "value": "true",
                                   "effect": "NoSchedule"}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["checkpoints"]["persistentVolumeClaim"] == {"claimName": "kubesage-checkpoints"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts == {"checkpoints": "/checkpoints", "dshm": "/dev/shm"}
    assert pod["containers"][0]["name"] == "node"


def test_fsx_is_mounted_on_every_node_at_the_declared_path() -> None:
    config = load_kfp_config(CONFIG)
    manifest = trainjob_template(preprocess.spec, Resources(cpu=8, memory="32Gi", gpus=1),
                                 Distribution(nodes=4), config)
    check_pinned_api(manifest)
    pod = pod_patch(manifest)
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data-fsx"]["persistentVolumeClaim"] == {"claimName": "fsx-lustre-claim"}
    assert {"name": "data-fsx", "mountPath": "/fsx", "readOnly": True} in \
        pod["containers"][0]["volumeMounts"]
    assert manifest["spec"]["trainer"]["numNodes"] == 4
    # every node runs as the images' non-root user, without privilege escalation
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 0}
    assert pod["containers"][0]["securityContext"] == {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


@pytest.mark.parametrize("status,expected", [
    ({}, ("running", "")),
    ({"conditions": [{"type": "Suspended", "status": "True", "reason": "Suspended"}]},
     ("running", "")),
    ({"conditions": [{"type": "Complete", "status": "True", "message": "jobs completed"}]},
     ("succeeded", "jobs completed")),
    ({"conditions": [{"type": "Complete", "status": "False"},
                     {"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                      "message": "past activeDeadlineSeconds"}]},
     ("failed", "DeadlineExceeded: past activeDeadlineSeconds")),
])
def test_trainjob_state_follows_the_conditions(status: dict[str, Any], expected: tuple[str, str]) -> None:
    assert runtime.trainjob_state({"status": status}) == expected


@pytest.mark.docker
def test_launcher_stages_inputs_and_fails_clearly_outside_a_pod(tmp_path, monkeypatch) -> None:
    data = tmp_path / "preprocess" / "data"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text('{"classes": ["a"]}')
    executor_input = {
        "inputs": {"parameterValues": {"epochs": 3.0, "arch": "smallcnn"},
                   "artifacts": {"data": {"artifacts": [{"name": "data", "uri": str(data),
                                                         "metadata": {"classes": 1}}]}}},
        "outputs": {"artifacts": {
            "model": {"artifacts": [{"name": "model", "uri": str(tmp_path / "train" / "model")}]},
            "metrics": {"artifacts": [{"name": "metrics", "uri": str(tmp_path / "train" / "metrics")}]}},
            "outputFile": str(tmp_path / "train" / "executor_output.json")},
    }
    folder = runtime.step_dir(str(tmp_path / "ckpt"), "job-1", "components.train:train", executor_input)
    # every attempt of the task (a retry may get a new task id) finds the same folder
    assert folder == runtime.step_dir(str(tmp_path / "ckpt"), "job-1", "components.train:train",
                                      json.loads(json.dumps(executor_input)))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(runtime.ContractError, match="not inside a Kubernetes pod"):
        runtime.launch_trainjob("components.train:train", executor_input, compiled_template(tmp_path),
                                folder, "task-1", 0.01)
    exchange = os.path.join(folder, "exchange")
    with open(os.path.join(exchange, "task.json")) as f:
        task = json.load(f)
    assert task["entry"] == "components.train:train"
    assert task["parameters"] == {"epochs": 3, "arch": "smallcnn"}  # int restored from 3.0
    assert task["inputs"]["data"] == {"path": os.path.join(exchange, "inputs", "data"),
                                      "metadata": {"classes": 1}}
    assert os.path.isfile(os.path.join(exchange, "inputs", "data", "manifest.json"))
    assert sorted(os.listdir(os.path.join(exchange, "outputs"))) == ["metrics", "model"]
    with open(tmp_path / "train" / runtime.STEP_FILE) as f:
        note = json.load(f)
    assert "not inside a Kubernetes pod" in note["attempts"][-1]["error"]
    assert not (tmp_path / "train" / "executor_output.json").exists()


def test_trainjob_names_differ_per_attempt_and_fit_kubernetes() -> None:
    import re

    first = runtime.trainjob_name("4f1c9e2a-77b0-4c5e-9d1a-aaaaaaaaaaaa", "Train_Model" * 8, 1)
    retry = runtime.trainjob_name("4f1c9e2a-77b0-4c5e-9d1a-aaaaaaaaaaaa", "Train_Model" * 8, 2)
    assert first != retry  # a retry keeps its task id: the old TrainJob's name is taken
    for name in (first, retry):
        assert len(name) <= 63 and re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name)


def test_a_component_name_no_label_value_can_hold_is_refused() -> None:
    """The TrainJob carries its component's name as a label: 64 characters are refused at
    compile time, before a launcher meets the API server; one GPU per process makes 4 per node."""
    config = load_kfp_config(CONFIG)
    manifest = trainjob_template(preprocess.spec, Resources(gpus=1), Distribution(2, 4), config)
    assert manifest["metadata"]["labels"]["kubesage.io/component"] == "preprocess"
    assert manifest["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"
    long = dataclasses.replace(preprocess.spec, name="p" * 64)
    with pytest.raises(DefinitionError, match="label 'kubesage.io/component': value 'p{64}' has 64 "
                                              "characters; a label value has at most 63; give it"):
        trainjob_template(long, Resources(), Distribution(2), config)

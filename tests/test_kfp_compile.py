"""Compiling for Kubeflow: the kfp SDK's own compiler, settings from config/kfp.yaml, no kfp leak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest
import yaml

from kubesage.project.loader import load_pipeline
from kubesage.targets import kfp as kfp_target
from kubesage.targets.kfp.platform import MountConfigError
from tests.conftest import REPO, content_tag_of, run_cli, unfused_kfp_config

CONFIG = os.path.join(REPO, "config", "kfp.yaml")
# the image by the code it holds (compile refuses when no local image holds it)
IMAGE = f"123456789012.dkr.ecr.us-west-2.amazonaws.com/kubesage/torch:{content_tag_of()}"


def compiled(ref: str, tmp_path: Any, config: str = CONFIG) -> tuple[dict[str, Any], dict[str, Any]]:
    """(PipelineSpec, Kubernetes platform config) of ``ref`` compiled in-process."""
    pipeline = load_pipeline(os.path.join(REPO, ref))[0].build()
    out = str(tmp_path / f"{pipeline.name}.yaml")
    kfp_target.TARGET.compile(pipeline, out, config)
    with open(out) as f:
        docs = list(yaml.safe_load_all(f))
    return docs[0], docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.mark.docker
def test_cli_compile_writes_yaml_that_validates_and_loads(tmp_path) -> None:
    out = tmp_path / "ic.yaml"
    run_cli("compile", "pipelines/image_classification.py", "--target", "kfp", "-o", str(out),
            check=True)
    proc = run_cli("validate", str(out), check=True)
    # fused (the example config's fusion: auto): preprocess, train + evaluate, and register +
    # predict + postprocess inside the condition
    assert "Kubeflow pipeline 'image-classification' is valid (4 tasks, 4 components, 3 " \
           "executors" in proc.stdout
    from kfp import components

    loaded = components.load_component_from_file(str(out))
    assert loaded.name == "image-classification"
    assert set(loaded.component_spec.inputs) == {"raw_dir", "image_size", "arch", "epochs",
                                                 "threshold", "model_name", "seed", "min_score"}
    # compile.py at the root calls the same code and writes the same bytes
    out2 = tmp_path / "ic2.yaml"
    subprocess.run([sys.executable, "compile.py", "pipelines/image_classification.py", "--target",
                    "kfp", "-o", str(out2)], cwd=REPO, check=True, capture_output=True)
    assert out2.read_bytes() == out.read_bytes()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".kubesage-")]  # no temp left


@pytest.mark.docker
def test_compiling_twice_gives_identical_yaml(tmp_path) -> None:
    pipeline = load_pipeline(os.path.join(REPO, "tests/pipelines/kfp_shapes.py:per-client"))[0].build()
    kfp_target.TARGET.compile(pipeline, str(tmp_path / "a.yaml"), CONFIG)
    kfp_target.TARGET.compile(pipeline, str(tmp_path / "b.yaml"), CONFIG)
    assert (tmp_path / "a.yaml").read_bytes() == (tmp_path / "b.yaml").read_bytes()


@pytest.mark.docker
def test_reference_pipeline_components_run_the_shared_entry_point(tmp_path) -> None:
    spec, k8s = compiled("pipelines/image_classification.py", tmp_path,
                         unfused_kfp_config(str(tmp_path)))
    executors = spec["deploymentSpec"]["executors"]
    assert sorted(executors) == ["exec-evaluate", "exec-postprocess", "exec-predict",
                                 "exec-preprocess", "exec-register", "exec-train"]
    train = executors["exec-train"]["container"]
    assert train["image"] == IMAGE
    assert train["command"] == ["python", "-m", "kubesage.runtime"]
    assert train["args"][:3] == ["kfp", "--entry", "components.train:train"]
    assert train["args"][-2:] == ["--executor-input", "{{$}}"]
    assert train["resources"]["resourceCpuLimit"] == "2"
    assert train["resources"]["resourceMemoryLimit"] == "8Gi"
    # typed parameters with defaults, artifacts with their types, the returned value as Output
    comps = spec["components"]
    params = comps["comp-train"]["inputDefinitions"]["parameters"]
    assert params["epochs"] == {"defaultValue": 10.0, "isOptional": True,
                                "parameterType": "NUMBER_INTEGER"}
    assert params["lr"]["parameterType"] == "NUMBER_DOUBLE"
    outputs = comps["comp-evaluate"]["outputDefinitions"]
    assert outputs["artifacts"]["metrics"]["artifactType"]["schemaTitle"] == "system.Metrics"
    assert outputs["parameters"]["Output"]["parameterType"] == "NUMBER_DOUBLE"
    # the condition is a dsl.If on evaluate's returned accuracy
    cond = spec["root"]["dag"]["tasks"]["condition-1"]
    assert cond["triggerPolicy"]["condition"] == (
        "inputs.parameter_values['pipelinechannel--evaluate-Output'] >= "
        "inputs.parameter_values['pipelinechannel--threshold']")
    assert spec["root"]["dag"]["tasks"]["train"]["cachingOptions"] == {"enableCache": True}
    # FSx: the config's claim, at the path the component declares, on preprocess only
    assert k8s["exec-preprocess"]["pvcMount"][0]["constant"] == "fsx-lustre-claim"
    assert k8s["exec-preprocess"]["pvcMount"][0]["mountPath"] == "/fsx"
    assert [m["mountPath"] for m in k8s["exec-train"]["pvcMount"]] == ["/checkpoints"]
    for executor in k8s.values():
        assert executor["emptyDirMounts"] == [{"medium": "Memory", "mountPath": "/dev/shm",
                                               "sizeLimit": "16Gi", "volumeName": "dshm"}]
        assert executor["nodeSelector"] == {"labels": {"eks.amazonaws.com/capacityType": "SPOT"}}
        assert executor["tolerations"] == [{"effect": "NoSchedule", "key": "spot",
                                            "operator": "Equal", "value": "true"}]


@pytest.mark.docker
def test_fan_out_one_model_per_client_with_a_condition_inside(tmp_path) -> None:
    spec, _ = compiled("tests/pipelines/kfp_shapes.py:per-client", tmp_path,
                       unfused_kfp_config(str(tmp_path)))
    loop = spec["root"]["dag"]["tasks"]["for-loop-1"]
    assert loop["parameterIterator"]["items"] == {"inputParameter": "pipelinechannel--clients"}
    assert loop["iteratorPolicy"] == {"parallelismLimit": 2}
    body = spec["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(body) == {"client-tag", "train", "evaluate", "condition-2"}
    assert body["train"]["dependentTasks"] == ["client-tag"]
    inner = spec["components"]["comp-condition-2"]["dag"]["tasks"]["register"]
    assert inner["inputs"]["parameters"]["model_name"] == {
        "componentInputParameter": "pipelinechannel--clients-loop-item"}
    assert spec["root"]["inputDefinitions"]["parameters"]["clients"] == {
        "defaultValue": ["acme", "globex"], "isOptional": True, "parameterType": "LIST"}


@pytest.mark.docker
def test_retries_with_backoff_caching_off_and_gpu_resources(tmp_path) -> None:
    spec, _ = compiled("tests/pipelines/kfp_shapes.py:multi-node", tmp_path)
    prep = spec["root"]["dag"]["tasks"]["preprocess"]
    assert prep["retryPolicy"] == {"backoffDuration": "30s", "backoffFactor": 2.0,
                                   "backoffMaxDuration": "3600s", "maxRetryCount": 2}
    assert prep["cachingOptions"] == {}  # enableCache false is the proto default
    launcher = spec["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert launcher["args"][:2] == ["kfp", "trainjob"]
    assert launcher["resources"]["resourceCpuLimit"] == "500m"  # the nodes get the real ones
    template = json.loads(launcher["args"][launcher["args"].index("--template") + 1])
    assert template["spec"]["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "4"


@pytest.mark.docker
def test_a_mount_without_a_claim_is_named_and_nothing_is_written(tmp_path) -> None:
    with open(CONFIG) as f:
        doc = yaml.safe_load(f)
    del doc["volumes"]
    config = tmp_path / "kfp.yaml"
    config.write_text(yaml.safe_dump(doc))
    out = tmp_path / "p.yaml"
    pipeline = load_pipeline(os.path.join(REPO, "pipelines/image_classification.py"))[0].build()
    with pytest.raises(MountConfigError, match=r"component 'preprocess' \(task 'preprocess'\) mounts "
                       r"'fsx' at /fsx, but .* has no 'volumes.fsx'; add 'volumes: \{fsx: \{claim:"):
        kfp_target.TARGET.compile(pipeline, str(out), str(config))
    assert os.listdir(tmp_path) == ["kfp.yaml"]


def test_importing_kubesage_and_the_runtime_does_not_import_kfp() -> None:
    code = ("import sys, kubesage, kubesage.cli, kubesage.targets.kfp, kubesage.targets.kfp.config, "
            "kubesage.runtime.kfp; "
            "print(sorted(m for m in sys.modules if m == 'kfp' or m.startswith(('kfp.', 'google.'))))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                          check=True)
    assert proc.stdout.strip() == "[]"

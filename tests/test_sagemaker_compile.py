"""Compiling for SageMaker: the definition's steps, determinism, no network, lazy imports."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from kubesage.dsl.errors import KubesageError
from kubesage.project.loader import load_pipeline
from tests.conftest import REPO, content_tag_of, run_cli
from tests.sagemaker_fixtures import UNFUSED, write_sagemaker_config

REFERENCE = "pipelines/image_classification.py"


@pytest.fixture(scope="module")
def definition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("compiled")
    out = folder / "reference.json"
    run_cli("compile", REFERENCE, "--target", "sagemaker", "-o", str(out), "--config",
            write_sagemaker_config(str(folder), **UNFUSED), check=True)
    return json.loads(out.read_text())


def steps(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for step in doc["Steps"]:
        found[step["Name"]] = step
        for inner in step["Arguments"].get("IfSteps", []) + step["Arguments"].get("ElseSteps", []):
            found[inner["Name"]] = inner
    return found


@pytest.mark.docker
def test_cli_compile_is_valid_and_byte_identical(tmp_path) -> None:
    first, second, third = (tmp_path / n for n in ("a.json", "b.json", "c.json"))
    start = time.time()
    run_cli("compile", REFERENCE, "--target", "sagemaker", "-o", str(first), check=True)
    print(f"cold CLI compile: {time.time() - start:.2f}s")
    run_cli("compile", REFERENCE, "--target", "sagemaker", "-o", str(second), check=True)
    proc = subprocess.run([sys.executable, "compile.py", REFERENCE, "--target", "sagemaker", "-o",
                           str(third)], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert first.read_bytes() == second.read_bytes() == third.read_bytes()
    valid = run_cli("validate", str(first), check=True)
    # fused (the example config's fusion: auto): preprocess + train + evaluate, predict's
    # collecting job + postprocess; the condition, its FailStep, register, predict's requests,
    # model and transform
    assert "SageMaker pipeline definition is valid (8 steps" in valid.stdout
    assert "1 Model" in valid.stdout and "1 Transform" in valid.stdout
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]  # written atomically


@pytest.mark.docker
def test_parameters_are_typed(definition) -> None:
    params = {p["Name"]: (p["Type"], p["DefaultValue"]) for p in definition["Parameters"]}
    assert params["epochs"] == ("Integer", 8)
    assert params["threshold"] == ("Float", 0.9)
    assert params["raw_dir"] == ("String", "/fsx/digits")


@pytest.mark.docker
def test_processing_steps_use_s3(definition) -> None:
    prep = steps(definition)["preprocess"]
    assert prep["Type"] == "Processing" and prep["CacheConfig"] == {"Enabled": True,
                                                                   "ExpireAfter": "P30D"}
    args = prep["Arguments"]
    assert args["AppSpecification"]["ContainerEntrypoint"][-1] == "sagemaker_processing"
    (fsx,) = args["ProcessingInputs"]
    assert fsx["S3Input"]["S3Uri"] == "s3://kubesage-datasets-111122223333/datasets/"
    outputs = {o["OutputName"]: o["S3Output"]["S3Uri"] for o in args["ProcessingOutputConfig"]["Outputs"]}
    # unique per execution: a later execution never overwrites what a cache hit points at
    assert outputs["data"] == {"Std:Join": {"On": "/", "Values": [
        "s3://kubesage-artifacts-111122223333/pipelines/image-classification",
        {"Get": "Execution.PipelineExecutionId"}, "preprocess", "data"]}}
    evaluate = steps(definition)["evaluate"]
    inputs = {i["InputName"]: i["S3Input"]["S3Uri"] for i in evaluate["Arguments"]["ProcessingInputs"]}
    assert inputs["model"] == {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    assert evaluate["PropertyFiles"] == [{"FilePath": "evaluation.json", "OutputName": "report",
                                          "PropertyFileName": "report-evaluation"}]


@pytest.mark.docker
def test_training_step(definition) -> None:
    train = steps(definition)["train"]
    assert train["Type"] == "Training"
    args = train["Arguments"]
    assert args["EnableManagedSpotTraining"] is True
    assert args["StoppingCondition"] == {"MaxRuntimeInSeconds": 86400, "MaxWaitTimeInSeconds": 172800}
    assert args["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    assert args["ResourceConfig"]["InstanceCount"] == 1
    assert args["VpcConfig"] == {"SecurityGroupIds": ["sg-0123456789abcdef0"],
                                 "Subnets": ["subnet-0123456789abcdef0"]}
    assert args["AlgorithmSpecification"]["ContainerEntrypoint"][-1] == "sagemaker_training"
    assert args["AlgorithmSpecification"]["TrainingImage"].endswith(
        f"kubesage/torch:{content_tag_of()}")  # the code compiled, never a floating tag
    assert args["CheckpointConfig"]["LocalPath"] == "/opt/ml/checkpoints"
    # named by what decides the training, never by the execution: SageMaker's cache key of a
    # training step includes CheckpointConfig
    join = args["CheckpointConfig"]["S3Uri"]["Std:Join"]["Values"]
    assert join[:3] == ["s3://kubesage-artifacts-111122223333/pipelines/image-classification",
                        "checkpoints", "train"]
    assert re.fullmatch(r"[0-9a-f]{16}", join[3])  # digest of what the definition fixes
    assert join[4:] == [{"Get": "Parameters.arch"}, {"Get": "Parameters.epochs"},
                        {"Get": "Parameters.seed"}, {"Get": "Steps.preprocess.ProcessingJobName"}]
    for name, value in args["HyperParameters"].items():  # the API wants strings
        assert isinstance(value, str) or "Std:Join" in value or value == {
            "Get": f"Parameters.{name}"}, (name, value)
    assert args["HyperParameters"]["epochs"] == {"Std:Join": {"On": "",
                                                              "Values": [{"Get": "Parameters.epochs"}]}}


def test_checkpoint_location_is_stable_and_follows_the_image() -> None:
    from kubesage.plan.costs import FusionSettings
    from kubesage.targets.sagemaker.compiler import definition_json
    from kubesage.targets.sagemaker.config import load_config

    pipeline = load_pipeline(REFERENCE)[0].build()
    config = dataclasses.replace(load_config(os.path.join(REPO, "config", "sagemaker.yaml")),
                                 fusion=FusionSettings(mode="off"))

    def checkpoints(doc: str) -> dict[str, Any]:
        return steps(json.loads(doc))["train"]["Arguments"]["CheckpointConfig"]

    first = definition_json(pipeline, config)
    assert checkpoints(definition_json(pipeline, config)) == checkpoints(first)
    uri = config.image_uri("kubesage/torch", "train")
    other = definition_json(pipeline, dataclasses.replace(
        config, pinned={"kubesage/torch": uri.rsplit(":", 1)[0] + ":code-0123456789abcdef"}))
    assert checkpoints(other)["S3Uri"]["Std:Join"]["Values"][3] != \
        checkpoints(first)["S3Uri"]["Std:Join"]["Values"][3]


@pytest.mark.docker
def test_condition_register_and_fail(definition) -> None:
    cond = steps(definition)["condition-1"]
    (check,) = cond["Arguments"]["Conditions"]
    assert check["Type"] == "GreaterThanOrEqualTo"
    assert check["LeftValue"] == {"Std:JsonGet": {
        "Path": "metrics.accuracy.value",
        "PropertyFile": {"Get": "Steps.evaluate.PropertyFiles.report-evaluation"}}}
    assert check["RightValue"] == {"Get": "Parameters.threshold"}
    register, requests, model, transform, predict, postprocess = cond["Arguments"]["IfSteps"]
    assert [requests["Name"], model["Name"], transform["Name"]] == [
        "predict-requests", "predict-model", "predict-transform"]
    assert requests["DependsOn"] == ["register"] and predict["Type"] == "Processing"
    assert postprocess["Type"] == "Processing"
    assert register["Type"] == "RegisterModel"
    assert register["Arguments"]["ModelPackageGroupName"] == "digits-classifier"
    container = register["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    assert register["Arguments"]["CustomerMetadataProperties"]["model_name"] == {
        "Get": "Parameters.model_name"}
    (fail,) = cond["Arguments"]["ElseSteps"]
    assert fail["Type"] == "Fail" and "does not hold" in fail["Arguments"]["ErrorMessage"]


@pytest.mark.docker
def test_batch_inference_compiles_to_a_model_and_a_transform_step(definition) -> None:
    """predict declares Serving: requests (its own code), a model in the serving image with the
    trained model, a batch transform over the requests, and collect (its own code again)."""
    found = steps(definition)
    requests, model, transform = (found[f"predict-{p}"] for p in ("requests", "model", "transform"))
    collect = found["predict"]
    assert requests["Arguments"]["Environment"]["KUBESAGE_BATCH_PHASE"] == "requests"
    assert collect["Arguments"]["Environment"]["KUBESAGE_BATCH_PHASE"] == "collect"
    # collect reads the model, the requests and the answers: never the dataset again
    assert sorted(i["InputName"] for i in collect["Arguments"]["ProcessingInputs"]) == [
        "batch-requests", "batch-results", "model"]
    container = model["Arguments"]["PrimaryContainer"]
    assert re.search(r"/kubesage/serve:code-[0-9a-f]{16}$", container["Image"])
    assert container["ModelDataUrl"] == {"Get": "Steps.train.ModelArtifacts.S3ModelArtifacts"}
    assert container["Environment"] == {"KUBESAGE_HANDLER": "components.classifier:load",
                                        "KUBESAGE_MODEL_PATH": "model"}
    assert model["Arguments"]["VpcConfig"]["Subnets"] == ["subnet-0123456789abcdef0"]
    args = transform["Arguments"]
    assert args["ModelName"] == {"Get": "Steps.predict-model.ModelName"}
    assert args["TransformInput"]["SplitType"] == "Line"
    assert args["TransformInput"]["ContentType"] == "application/jsonlines"
    assert args["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"]["Std:Join"]["Values"] == [
        {"Get": "Steps.predict-requests.ProcessingOutputConfig.Outputs['predictions'].S3Output"
                ".S3Uri"}, "requests.jsonl"]
    assert args["BatchStrategy"] == "MultiRecord" and args["TransformOutput"]["AssembleWith"] == "Line"
    assert {"Get": "Steps.predict-transform.TransformOutput.S3OutputPath"} in [
        i["S3Input"]["S3Uri"] for i in collect["Arguments"]["ProcessingInputs"]]
    # the steps downstream read the collect step's outputs, as they read any processing step's
    (predictions,) = [i for i in found["postprocess"]["Arguments"]["ProcessingInputs"]
                      if i["InputName"] == "predictions"]
    assert predictions["S3Input"]["S3Uri"] == {
        "Get": "Steps.predict.ProcessingOutputConfig.Outputs['predictions'].S3Output.S3Uri"}


@pytest.mark.docker
def test_a_hint_runs_batch_inference_as_one_processing_job(tmp_path) -> None:
    from kubesage.targets.sagemaker import TARGET

    pipeline = load_pipeline(REFERENCE)[0].build()
    path = write_sagemaker_config(str(tmp_path), components={"predict": {"kind": "processing"},
                                                           "register": {"kind": "register"}},
                                  **UNFUSED)
    out = tmp_path / "whole.json"
    TARGET.compile(pipeline, str(out), path)
    found = steps(json.loads(out.read_text()))
    assert found["predict"]["Type"] == "Processing"
    assert not {"predict-requests", "predict-model", "predict-transform"} & set(found)
    assert "KUBESAGE_BATCH_PHASE" not in found["predict"]["Arguments"]["Environment"]


@pytest.mark.docker
def test_fan_out_compiles_to_a_parameterized_pipeline(tmp_path) -> None:
    out = tmp_path / "per-client.json"
    run_cli("compile", "tests/pipelines/sagemaker_pipelines.py:clients-probe", "--target", "sagemaker",
            "-o", str(out), check=True)
    doc = json.loads(out.read_text())
    assert {"Name": "clients", "Type": "String", "DefaultValue": "acme"} in doc["Parameters"]
    per_client = steps(doc)["per-client"]
    assert per_client["DependsOn"] == ["probe"]
    assert {"Get": "Parameters.clients"} in per_client["Arguments"]["AppSpecification"]["ContainerArguments"]
    uri = per_client["Arguments"]["ProcessingOutputConfig"]["Outputs"][0]["S3Output"]["S3Uri"]
    assert {"Get": "Parameters.clients"} in uri["Std:Join"]["Values"]  # executions do not collide


@pytest.mark.docker
def test_hints_map_components(tmp_path) -> None:
    """Without hints the defaults decide; a hint turns preprocess into a training job on FSx."""
    from kubesage.targets.sagemaker import TARGET

    pipeline = load_pipeline(REFERENCE)[0].build()
    path = write_sagemaker_config(str(tmp_path), components={"preprocess": {"kind": "training"},
                                                           "register": {"kind": "register"}},
                                  **UNFUSED)
    out = tmp_path / "hinted.json"
    TARGET.compile(pipeline, str(out), path)
    found = steps(json.loads(out.read_text()))
    assert found["train"]["Type"] == "Training"  # default: makes a Model, reads none
    assert found["evaluate"]["Type"] == "Processing"
    (channel,) = found["preprocess"]["Arguments"]["InputDataConfig"]
    assert channel["DataSource"] == {"FileSystemDataSource": {
        "DirectoryPath": "/abcdefgh/datasets", "FileSystemAccessMode": "ro",
        "FileSystemId": "fs-0123456789abcdef0", "FileSystemType": "FSxLustre"}}
    env = found["preprocess"]["Arguments"]["Environment"]
    assert json.loads(env["KUBESAGE_MOUNTS"]) == {"/fsx": "/opt/ml/input/data/fsx"}
    # evaluate's accuracy now comes from its own result file: no hint for it in this config
    assert found["evaluate"]["PropertyFiles"][0]["OutputName"] == "kubesage-result"


@pytest.mark.docker
def test_compile_makes_no_network_call(tmp_path, monkeypatch) -> None:
    from kubesage.targets.sagemaker import TARGET

    connect = socket.socket.connect

    def refuse(self: socket.socket, address: Any) -> Any:
        if self.family == socket.AF_UNIX:  # the local Docker engine: is the image built?
            return connect(self, address)
        raise AssertionError(f"network call to {address} while compiling")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    pipeline = load_pipeline(REFERENCE)[0].build()
    out = tmp_path / "offline.json"
    TARGET.compile(pipeline, str(out), "config/sagemaker.yaml")
    assert json.loads(out.read_text())["Version"] == "2020-12-01"


def test_importing_kubesage_does_not_import_the_sdk() -> None:
    code = ("import sys, kubesage, kubesage.cli, kubesage.targets.sagemaker, "
            "kubesage.runtime.sagemaker_processing, kubesage.runtime.sagemaker_training; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sagemaker', 'boto3', "
            "'botocore')))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr


def test_unmapped_image_fails_before_writing(tmp_path) -> None:
    path = write_sagemaker_config(str(tmp_path), images={"other/image": "1.dkr.ecr.x/y:1"})
    out = tmp_path / "never.json"
    proc = run_cli("compile", REFERENCE, "--target", "sagemaker", "-o", str(out), "--config", path)
    assert proc.returncode == 2
    assert "'images' has no entry for it" in proc.stderr
    assert not out.exists()


@pytest.mark.docker
def test_register_needs_one_model_input(tmp_path) -> None:
    from kubesage.targets.sagemaker import TARGET

    pipeline = load_pipeline(REFERENCE)[0].build()
    path = write_sagemaker_config(str(tmp_path), components={"preprocess": {"kind": "register"}})
    with pytest.raises(KubesageError, match="component .preprocess. is mapped to a registration "
                                            "step .kind: register. and needs exactly one Model "
                                            "input, it has 0"):
        TARGET.compile(pipeline, str(tmp_path / "x.json"), path)


@pytest.mark.docker
def test_literal_loops_are_unrolled(tmp_path) -> None:
    out = tmp_path / "unrolled.json"
    run_cli("compile", "tests/pipelines/sagemaker_pipelines.py:unrolled", "--target", "sagemaker",
            "-o", str(out), check=True)
    doc = json.loads(out.read_text())
    messages = {s["Name"]: s["Arguments"]["AppSpecification"]["ContainerArguments"][-1]
                for s in doc["Steps"]}
    assert messages == {"probe-0": "red", "probe-1": "green"}
    assert doc["Parameters"] == []


@pytest.mark.docker
def test_network_isolation_and_a_kms_key_reach_every_job(tmp_path) -> None:
    key = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    path = write_sagemaker_config(str(tmp_path), security={"network_isolation": True, "kms_key": key},
                                  **UNFUSED)
    out = tmp_path / "secured.json"
    run_cli("compile", REFERENCE, "--target", "sagemaker", "-o", str(out), "--config", path,
            check=True)
    assert "is valid" in run_cli("validate", str(out), check=True).stdout  # botocore's model
    steps = {s["Name"]: s["Arguments"] for s in json.loads(out.read_text())["Steps"]}
    train, prep = steps["train"], steps["preprocess"]
    assert train["EnableNetworkIsolation"] is True
    assert train["ResourceConfig"]["VolumeKmsKeyId"] == key
    assert train["OutputDataConfig"]["KmsKeyId"] == key
    assert prep["NetworkConfig"]["EnableNetworkIsolation"] is True
    assert prep["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == key
    assert prep["ProcessingOutputConfig"]["KmsKeyId"] == key

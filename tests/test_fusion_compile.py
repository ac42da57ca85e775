"""Fused jobs as the SDKs write them: SageMaker Processing and Training jobs running several steps,
Kubeflow container tasks running several tasks; fusion: off writes what kubesage wrote before
fusion, byte for byte (tests/data/unfused, compiled by the commit before fusion)."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import pytest
import yaml

from kubesage.plan.costs import FusionSettings
from kubesage.project.loader import load_pipeline
from kubesage.targets.kfp.compiler import compile_to_file
from kubesage.targets.kfp.config import load_kfp_config
from kubesage.targets.sagemaker.compiler import definition_json
from kubesage.targets.sagemaker.config import SageMakerConfigError, load_config
from kubesage.targets.sagemaker.validate import validate_definition
from tests.conftest import REPO, run_cli
from tests.sagemaker_fixtures import write_sagemaker_config
from tests.test_sagemaker_compile import steps

REFERENCE = "pipelines/image_classification.py"
OFF = FusionSettings(mode="off")


def sagemaker_config(**changes: Any) -> Any:
    return dataclasses.replace(load_config(os.path.join(REPO, "config", "sagemaker.yaml")),
                               **changes)


def kfp_config(**changes: Any) -> Any:
    return dataclasses.replace(load_kfp_config(os.path.join(REPO, "config", "kfp.yaml")),
                               **changes)


def sagemaker(ref: str = REFERENCE, **changes: Any) -> dict[str, Any]:
    text = definition_json(load_pipeline(os.path.join(REPO, ref))[0].build(),
                           sagemaker_config(**changes))
    return dict(json.loads(text))


@pytest.mark.parametrize("name", ["image_classification", "per_client"])
def test_fusion_off_writes_the_bytes_of_before_fusion(tmp_path, name: str) -> None:
    pipeline = load_pipeline(os.path.join(REPO, "pipelines", name + ".py"))[0].build()
    golden = os.path.join(REPO, "tests", "data", "unfused", name)
    with open(golden + ".json") as f:
        assert definition_json(pipeline, sagemaker_config(fusion=OFF)) == f.read()
    out = compile_to_file(pipeline, str(tmp_path / "p.yaml"), kfp_config(fusion=OFF))
    with open(out) as f, open(golden + ".yaml") as g:
        assert f.read() == g.read()


def test_the_reference_pipeline_is_four_sagemaker_jobs() -> None:
    doc = sagemaker()
    found = steps(doc)
    jobs = sorted(n for n, s in found.items() if s["Type"] in ("Processing", "Training",
                                                               "Transform"))
    assert jobs == ["predict-requests", "predict-to-postprocess", "predict-transform",
                    "preprocess-to-evaluate"]  # was 7: 5 processing, 1 training, 1 transform
    assert validate_definition(doc, "reference", "us-east-1") == []


def test_a_training_group_runs_its_members_and_reports_a_returned_value_as_a_metric() -> None:
    found = steps(sagemaker())
    job = found["preprocess-to-evaluate"]["Arguments"]
    hyper = job["HyperParameters"]
    assert json.loads(hyper["kubesage.members"]) == ["preprocess", "train", "evaluate"]
    layouts = {m: json.loads(hyper[f"kubesage.member.{m}"]) for m in
               ("preprocess", "train", "evaluate")}
    assert [m for m, layout in layouts.items() if layout["anchor"]] == ["train"]
    assert layouts["evaluate"]["local"] == {"data": ["preprocess", "data"],
                                            "model": ["train", "model"]}  # on the job's disk
    assert layouts["preprocess"]["mounts"] == {"/fsx": "/opt/ml/input/data/fsx"}
    assert [c["ChannelName"] for c in job["InputDataConfig"]] == ["fsx"]  # FSx, read-only
    assert hyper["train.epochs"] == {"Std:Join": {"On": "", "Values": [
        {"Get": "Parameters.epochs"}]}}
    assert job["EnableManagedSpotTraining"] is True  # spot and checkpoints, as any training job
    checkpoints = job["CheckpointConfig"]["S3Uri"]["Std:Join"]["Values"]
    assert checkpoints[1:3] == ["checkpoints", "preprocess-to-evaluate"]
    assert job["ResourceConfig"]["InstanceType"] == "ml.g5.2xlarge"
    # the condition reads evaluate's accuracy from the training job's metrics
    assert job["AlgorithmSpecification"]["MetricDefinitions"] == [
        {"Name": "evaluate:output", "Regex": r"kubesage-return evaluate\.output=([-+0-9.eE]+)"}]
    (check,) = found["condition-1"]["Arguments"]["Conditions"]
    assert check["LeftValue"] == {
        "Get": "Steps.preprocess-to-evaluate.FinalMetricDataList['evaluate:output'].Value"}
    # outside the group: the model is train's model.tar.gz as before; preprocess's data is in
    # the job's output.tar.gz
    register = found["register"]["Arguments"]["InferenceSpecification"]["Containers"][0]
    assert register["ModelDataUrl"] == {
        "Get": "Steps.preprocess-to-evaluate.ModelArtifacts.S3ModelArtifacts"}
    requests = found["predict-requests"]["Arguments"]
    assert "data=preprocess/data" in requests["AppSpecification"]["ContainerArguments"]
    data = next(i for i in requests["ProcessingInputs"] if i["InputName"] == "data")
    assert data["S3Input"]["S3Uri"]["Std:Join"]["Values"][2:] == ["output", "output.tar.gz"]


def test_a_batch_transform_collects_and_post_processes_in_one_job() -> None:
    job = steps(sagemaker())["predict-to-postprocess"]["Arguments"]
    args = job["AppSpecification"]["ContainerArguments"]
    assert [args[i + 1] for i, a in enumerate(args) if a == "--member"] == ["predict",
                                                                            "postprocess"]
    assert "predictions=predict:predictions" in args  # on the job's disk
    assert "KUBESAGE_BATCH_PHASE=collect" in args
    (output,) = job["ProcessingOutputConfig"]["Outputs"]
    assert output["OutputName"] == "kubesage-members"
    assert output["S3Output"]["S3UploadMode"] == "Continuous"  # finished members' outputs stay


def test_each_member_keeps_its_own_property_file() -> None:
    doc = sagemaker("tests/conformance/pipelines/returned_value.py")
    (job,) = doc["Steps"]
    assert job["Name"] == "first-to-second"
    args = job["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert ["--param-from", "value", "first:output"] == args[args.index("--param-from"):][:3]
    gated = sagemaker("tests/conformance/pipelines/fusion.py",
                      fusion=FusionSettings(assumed_duration_s=5))
    found = steps(gated)
    chain = found["diag-shout-0-to-diag-note-0"]
    assert chain["Type"] == "Processing"
    assert found["diag-make-artifacts-to-diag-score"]["Type"] == "Training"
    assert validate_definition(gated, "fusion", "us-east-1") == []


def test_a_processing_group_exposes_each_members_result_as_a_property_file(tmp_path) -> None:
    from kubesage import Condition, pipeline
    from kubesage.testing.probes import diag_add, diag_note

    @pipeline(name="chain-condition")
    def chain(start: int = 1) -> None:
        first = diag_add(value=start).set_name("first")
        second = diag_add(value=first.output).set_name("second")
        with Condition(second.output > 1):
            diag_note(message="held")

    text = definition_json(chain.build(), sagemaker_config())
    found = steps(json.loads(text))
    job = found["first-to-second"]
    assert job["PropertyFiles"] == [{
        "FilePath": "second/kubesage-result/result.json", "OutputName": "kubesage-members",
        "PropertyFileName": "second-kubesage-result-result"}]
    (check,) = found["condition-1"]["Arguments"]["Conditions"]
    assert check["LeftValue"]["Std:JsonGet"]["PropertyFile"] == {
        "Get": "Steps.first-to-second.PropertyFiles.second-kubesage-result-result"}


def test_warm_pools_keep_training_instances_and_refuse_spot(tmp_path) -> None:
    job = steps(sagemaker(warm_pool_s=1800, spot=False))["preprocess-to-evaluate"]
    assert job["Arguments"]["ResourceConfig"]["KeepAlivePeriodInSeconds"] == 1800
    assert "KeepAlivePeriodInSeconds" not in steps(sagemaker())["preprocess-to-evaluate"][
        "Arguments"]["ResourceConfig"]
    path = write_sagemaker_config(str(tmp_path), warm_pool={"keep_alive_s": 600})
    with pytest.raises(SageMakerConfigError, match="SageMaker keeps no warm pool for managed spot"):
        load_config(path)
    path = write_sagemaker_config(str(tmp_path), warm_pool={"keep_alive_s": 7200},
                                  spot={"enabled": False})
    with pytest.raises(SageMakerConfigError, match="at most 3600 s"):
        load_config(path)


def test_the_reference_pipeline_is_three_kubeflow_tasks(tmp_path) -> None:
    pipeline = load_pipeline(os.path.join(REPO, REFERENCE))[0].build()
    out = compile_to_file(pipeline, str(tmp_path / "p.yaml"), kfp_config())
    spec = next(iter(yaml.safe_load_all(open(out))))
    assert sorted(spec["deploymentSpec"]["executors"]) == [
        "exec-preprocess", "exec-register-to-postprocess", "exec-train-to-evaluate"]  # was 6
    fused = spec["deploymentSpec"]["executors"]["exec-train-to-evaluate"]["container"]
    assert fused["args"][:2] == ["kfp", "--group"]
    layout = json.loads(fused["args"][2])
    assert [m["name"] for m in layout] == ["train", "evaluate"]
    assert layout[1]["local"] == {"model": ["train", "model"]}  # on the pod's disk
    assert layout[1]["returns"] == {"output": "Output"}  # a condition reads it
    outputs = spec["components"]["comp-train-to-evaluate"]["outputDefinitions"]
    assert sorted(outputs["artifacts"]) == ["evaluate__metrics", "evaluate__report",
                                            "train__metrics", "train__model"]
    assert list(outputs["parameters"]) == ["Output"]
    cond = spec["root"]["dag"]["tasks"]["condition-1"]
    assert cond["triggerPolicy"]["condition"].startswith(
        "inputs.parameter_values['pipelinechannel--train-to-evaluate-Output'] >= ")
    assert run_cli("validate", out, check=True).returncode == 0


@pytest.mark.docker  # compiling for SageMaker names the built image's content tag
def test_explain_says_what_fuses_and_what_it_saves(tmp_path) -> None:
    out = tmp_path / "p.json"
    proc = run_cli("compile", REFERENCE, "--target", "sagemaker", "-o", str(out), "--explain",
                   check=True)
    text = proc.stdout
    assert "1. preprocess + train + evaluate -> preprocess-to-evaluate: one training job on " \
           "ml.g5.2xlarge" in text
    assert "2. predict + postprocess -> predict-to-postprocess: one processing job" in text
    assert "register must run alone: a registration step is a ModelStep, no job" in text
    assert "jobs: 7 -> 4 (processing 5 -> 2, training 1 -> 1, transform 1 -> 1)" in text
    assert "projected saving 360 s per run" in text
    assert "aws/amazon-sagemaker-feedback#109" in text
    proc = run_cli("compile", REFERENCE, "--target", "kfp", "-o", str(tmp_path / "p.yaml"),
                   "--explain", check=True)
    assert "jobs: 6 -> 3" in proc.stdout and "pods: 12 -> 6" in proc.stdout
    assert "not fused, it would cost more than it saves: preprocess | train" in proc.stdout

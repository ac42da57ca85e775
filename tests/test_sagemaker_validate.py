"""``kubesage validate FILE.json``: botocore's SageMaker model catches what the service refuses."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest

from kubesage.targets.sagemaker.validate import DefinitionInvalid, validate_definition_file
from tests.conftest import run_cli
from tests.sagemaker_fixtures import UNFUSED, write_sagemaker_config


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("valid")
    out = folder / "reference.json"
    run_cli("compile", "pipelines/image_classification.py", "--target", "sagemaker", "-o", str(out),
            "--config", write_sagemaker_config(str(folder), **UNFUSED), check=True)
    return json.loads(out.read_text())


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    for s in doc["Steps"]:
        if s["Name"] == name:
            return s
        for inner in s["Arguments"].get("IfSteps", []) + s["Arguments"].get("ElseSteps", []):
            if inner["Name"] == name:
                return inner
    raise KeyError(name)


def args(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return step(doc, name)["Arguments"]


def _set(path: list[Any], value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        target = args(doc, path[0])
        for key in path[1:-1]:
            target = target[key]
        target[path[-1]] = value
    return apply


def _rename(name: str, key: str, new: str) -> Callable[[dict[str, Any]], None]:
    def apply(doc: dict[str, Any]) -> None:
        a = args(doc, name)
        a[new] = a.pop(key)
    return apply


def _drop(name: str, key: str) -> Callable[[dict[str, Any]], None]:
    return lambda doc: args(doc, name).pop(key)


BROKEN = [
    ("unknown field", _rename("train", "ResourceConfig", "ResourceConfg"),
     'step \'train\' (CreateTrainingJob): Unknown parameter in input: "ResourceConfg"'),
    ("missing required field", _drop("train", "RoleArn"),
     'step \'train\' (CreateTrainingJob): Missing required parameter in input: "RoleArn"'),
    ("raw integer hyperparameter", _set(["train", "HyperParameters", "epochs"],
                                        {"Get": "Parameters.epochs"}),
     "step 'train' (CreateTrainingJob): Invalid type for parameter HyperParameters.epochs, "
     "value: 8, type: <class 'int'>, valid types: <class 'str'>"),
    ("instance type enum", _set(["train", "ResourceConfig", "InstanceType"], "ml.g5.huge"),
     "ResourceConfig.InstanceType: 'ml.g5.huge' is not a valid TrainingInstanceType"),
    ("processing instance type", _set(["evaluate", "ProcessingResources", "ClusterConfig",
                                       "InstanceType"], "ml.m5.mega"),
     "step 'evaluate' (CreateProcessingJob): ProcessingResources.ClusterConfig.InstanceType: "
     "'ml.m5.mega' is not a valid ProcessingInstanceType"),
    ("FSx type", lambda d: args(d, "train").__setitem__("InputDataConfig", [{
        "ChannelName": "fsx", "DataSource": {"FileSystemDataSource": {
            "FileSystemId": "fs-0123456789abcdef0", "FileSystemType": "Lustre",
            "FileSystemAccessMode": "ro", "DirectoryPath": "/abcdefgh/x"}}}]),
     "InputDataConfig[0].DataSource.FileSystemDataSource.FileSystemType: 'Lustre' is not a "
     "valid FileSystemType"),
    ("wrong type", _set(["train", "ResourceConfig", "InstanceCount"], "two"),
     "Invalid type for parameter ResourceConfig.InstanceCount, value: two"),
    ("model package field", _set(["register", "ModelApprovalStatus"], "Approve"),
     "step 'register' (CreateModelPackage): ModelApprovalStatus: 'Approve' is not a valid "
     "ModelApprovalStatus"),
    ("dangling step reference", lambda d: args(d, "evaluate")["ProcessingInputs"][1]["S3Input"]
     .__setitem__("S3Uri", {"Get": "Steps.trian.ModelArtifacts.S3ModelArtifacts"}),
     "step 'evaluate': refers to Steps.trian.ModelArtifacts.S3ModelArtifacts, but there is no "
     "step 'trian'"),
    ("undeclared parameter", _set(["train", "HyperParameters", "arch"], {"Get": "Parameters.arc"}),
     "step 'train': refers to Parameters.arc, but the pipeline declares no such parameter"),
    ("undeclared property file", lambda d: step(d, "evaluate").pop("PropertyFiles"),
     "step 'condition-1': JsonGet reads property file 'report-evaluation' of step 'evaluate', "
     "which declares no such PropertyFile"),
    ("duplicate names", lambda d: step(d, "evaluate").__setitem__("Name", "train"),
     "step 'train': 2 steps share this name"),
    ("bad condition", lambda d: args(d, "condition-1")["Conditions"][0].__setitem__("Type", "AtLeast"),
     "step 'condition-1': Conditions[0].Type 'AtLeast' is not one of"),
]


@pytest.mark.docker
@pytest.mark.parametrize("what, breaker, message", BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_definitions_are_refused(tmp_path, good, what, breaker, message) -> None:
    doc = copy.deepcopy(good)
    breaker(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DefinitionInvalid) as err:
        validate_definition_file(str(path))
    assert message in str(err.value), str(err.value)


@pytest.mark.docker
def test_cli_reports_problems_with_exit_code_2(tmp_path, good) -> None:
    doc = copy.deepcopy(good)
    _drop("preprocess", "RoleArn")(doc)
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(doc))
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert "1 problem(s) the SageMaker service would refuse" in proc.stderr
    assert ("step 'preprocess' (CreateProcessingJob): Missing required parameter in input: "
            '"RoleArn"') in proc.stderr


def test_not_a_definition(tmp_path) -> None:
    path = tmp_path / "x.json"
    path.write_text('{"hello": 1}')
    with pytest.raises(DefinitionInvalid, match="not a SageMaker pipeline definition"):
        validate_definition_file(str(path))
    path.write_text("{")
    with pytest.raises(DefinitionInvalid, match="not valid JSON"):
        validate_definition_file(str(path))


@pytest.mark.docker
def test_parameterized_enum_is_checked_through_its_default(tmp_path, good) -> None:
    doc = copy.deepcopy(good)
    doc["Parameters"].append({"Name": "instance", "Type": "String", "DefaultValue": "ml.g5.2xlarge"})
    args(doc, "train")["ResourceConfig"]["InstanceType"] = {"Get": "Parameters.instance"}
    path = tmp_path / "param.json"
    path.write_text(json.dumps(doc))
    assert "is valid" in validate_definition_file(str(path))
    doc["Parameters"][-1]["DefaultValue"] = "g5.2xlarge"
    path.write_text(json.dumps(doc))
    with pytest.raises(DefinitionInvalid, match="ResourceConfig.InstanceType: 'g5.2xlarge' is not a "
                                                "valid TrainingInstanceType"):
        validate_definition_file(str(path))

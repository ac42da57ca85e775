"""Service limits no request model carries, checked by ``kubesage validate`` (and so by
``submit``): each limit has a definition that breaks it and the one-line error it gets."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kubesage.targets.sagemaker.limits import gpus_of
from tests.conftest import run_cli
from tests.sagemaker_fixtures import write_sagemaker_config


@pytest.fixture(scope="module")
def definition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference pipeline's definition (compiled in this process, once for the module)."""
    from kubesage.loader import load_pipeline
    from kubesage.targets.sagemaker import TARGET

    out = tmp_path_factory.mktemp("limits") / "reference.json"
    TARGET.compile(load_pipeline("pipelines/image_classification.py")[0].build(), str(out))
    return dict(json.loads(out.read_text()))


def validate(tmp_path: Path, doc: dict[str, Any]) -> str:
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(doc))
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(path) in errors[0]
    return errors[0]


def step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["Steps"] if s["Name"] == name)


def test_the_reference_pipeline_breaks_no_limit(tmp_path, definition: dict[str, Any]) -> None:
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(definition))
    proc = run_cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr


def test_more_processes_per_node_than_gpus(tmp_path, definition: dict[str, Any]) -> None:
    """A 4-node x 8-process train onto a 1-GPU ml.g5.2xlarge: compile refuses it, writing
    nothing; a definition edited that way is refused by validate."""
    config = write_sagemaker_config(str(tmp_path), instance_types={
        "processing": "ml.m5.xlarge", "training": "ml.g5.2xlarge"})
    out = tmp_path / "crowded.json"
    proc = run_cli("compile", "tests/pipelines/limits.py:crowded-nodes", "--target",
                   "sagemaker", "--config", config, "-o", str(out))
    expected = ("step 'train': 8 processes per node on ml.g5.2xlarge, which has 1 GPU(s); one "
                "process per GPU: lower procs_per_node to 1, or an instance type with 8 GPUs")
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert "breaks SageMaker service limits" in proc.stderr and not out.exists()
    doc = copy.deepcopy(definition)
    args = step(doc, "train")["Arguments"]
    args["ResourceConfig"]["InstanceType"] = "ml.g5.2xlarge"
    args["Environment"]["KUBESAGE_PROCS_PER_NODE"] = "8"
    assert expected in validate(tmp_path, doc)


def test_spot_waits_less_than_it_runs(tmp_path, definition: dict[str, Any]) -> None:
    doc = copy.deepcopy(definition)
    args = step(doc, "train")["Arguments"]
    args["EnableManagedSpotTraining"] = True
    args["StoppingCondition"] = {"MaxRuntimeInSeconds": 7200, "MaxWaitTimeInSeconds": 3600}
    assert ("step 'train': MaxWaitTimeInSeconds (3600) is less than MaxRuntimeInSeconds (7200)"
            in validate(tmp_path, doc))
    del args["StoppingCondition"]["MaxWaitTimeInSeconds"]
    assert "managed spot training needs StoppingCondition.MaxWaitTimeInSeconds" in \
        validate(tmp_path, doc)


def test_a_step_name_longer_than_64_characters(tmp_path, definition: dict[str, Any]) -> None:
    doc = copy.deepcopy(definition)
    long = "t" * 65
    for s in doc["Steps"]:
        if s["Name"] == "preprocess":
            s["Name"] = long
    assert f"step '{long}': a step name is 1 to 64 characters" in validate(tmp_path, doc)


def test_a_parameter_name_with_spaces(tmp_path, definition: dict[str, Any]) -> None:
    doc = copy.deepcopy(definition)
    doc["Parameters"].append({"Name": "learning rate", "Type": "Float", "DefaultValue": 0.1})
    assert "parameter 'learning rate': a name is 1 to 64 characters" in validate(tmp_path, doc)


def test_more_than_ten_processing_inputs(tmp_path, definition: dict[str, Any]) -> None:
    doc = copy.deepcopy(definition)
    inputs = step(doc, "evaluate")["Arguments"]["ProcessingInputs"]
    while len(inputs) <= 10:
        extra = copy.deepcopy(inputs[0])
        extra["InputName"] = f"extra-{len(inputs)}"
        extra["S3Input"]["LocalPath"] = f"/opt/ml/processing/input/extra-{len(inputs)}"
        inputs.append(extra)
    assert ("ProcessingInputs: 11 items, more than the 10 the service takes per job"
            in validate(tmp_path, doc))


def test_gpu_counts_know_the_common_families() -> None:
    assert gpus_of("ml.g5.2xlarge") == 1 and gpus_of("ml.g5.12xlarge") == 4
    assert gpus_of("ml.p4d.24xlarge") == 8 and gpus_of("ml.m5.xlarge") == 0
    assert gpus_of("ml.trn1.32xlarge") is None  # not a GPU table entry: never a false alarm

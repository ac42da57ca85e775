"""Service limits no request model carries, checked by ``kubesage validate`` (and so by
``submit``): each limit has a definition that breaks it and the one-line error it gets."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from kubesage.targets.sagemaker.instances import KINDS, REGIONAL, instance_problem, offered
from kubesage.targets.sagemaker.limits import gpus_of
from tests.conftest import run_cli
from tests.sagemaker_fixtures import UNFUSED, write_sagemaker_config


@pytest.fixture(scope="module")
def definition(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The reference pipeline's definition (compiled in this process, once for the module)."""
    from kubesage.project.loader import load_pipeline
    from kubesage.targets.sagemaker import TARGET

    folder = tmp_path_factory.mktemp("limits")
    out = folder / "reference.json"
    TARGET.compile(load_pipeline("pipelines/image_classification.py")[0].build(), str(out),
                   write_sagemaker_config(str(folder), **UNFUSED))
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


@pytest.mark.docker
def test_the_reference_pipeline_breaks_no_limit(tmp_path, definition: dict[str, Any]) -> None:
    path = tmp_path / "reference.json"
    path.write_text(json.dumps(definition))
    proc = run_cli("validate", str(path))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.docker
def test_more_processes_per_node_than_gpus(tmp_path, definition: dict[str, Any]) -> None:
    """A 4-node x 8-process train (one GPU per process) onto a 1-GPU ml.g5.2xlarge: compile
    refuses it, writing nothing; a definition edited that way is refused by validate."""
    config = write_sagemaker_config(str(tmp_path), instance_types={
        "processing": "ml.m5.xlarge", "training": "ml.g5.2xlarge"})
    out = tmp_path / "crowded.json"
    proc = run_cli("compile", "tests/pipelines/limits.py:crowded-nodes", "--target",
                   "sagemaker", "--config", config, "-o", str(out))
    expected = ("step 'train': wants 8 GPU(s) per node (8 process(es) x 1 GPU), but "
                "ml.g5.2xlarge has 1; set an instance type with at least 8 GPUs")
    assert proc.returncode == 2 and expected in proc.stderr, proc.stderr
    assert "breaks SageMaker service limits" in proc.stderr and not out.exists()
    doc = copy.deepcopy(definition)
    args = step(doc, "train")["Arguments"]
    args["ResourceConfig"]["InstanceType"] = "ml.g5.2xlarge"
    args["Environment"]["KUBESAGE_PROCS_PER_NODE"] = "8"
    args["Environment"]["KUBESAGE_GPUS_PER_NODE"] = "8"
    assert expected in validate(tmp_path, doc)
    assert "or lower procs_per_node to 1" in validate(tmp_path, doc)


@pytest.mark.docker
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


@pytest.mark.docker
def test_a_step_name_longer_than_64_characters(tmp_path, definition: dict[str, Any]) -> None:
    doc = copy.deepcopy(definition)
    long = "t" * 65
    for s in doc["Steps"]:
        if s["Name"] == "preprocess":
            s["Name"] = long
    assert f"step '{long}': a step name is 1 to 64 characters" in validate(tmp_path, doc)


@pytest.mark.docker
def test_a_parameter_name_with_spaces(tmp_path, definition: dict[str, Any]) -> None:
    doc = copy.deepcopy(definition)
    doc["Parameters"].append({"Name": "learning rate", "Type": "Float", "DefaultValue": 0.1})
    assert "parameter 'learning rate': a name is 1 to 64 characters" in validate(tmp_path, doc)


@pytest.mark.docker
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


def compile_with(tmp_path: Path, ref: str, **config: Any) -> tuple[Any, Path]:
    """``kubesage compile REF --target sagemaker`` under a config changed by ``config``."""
    path = write_sagemaker_config(str(tmp_path), **{**UNFUSED, **config})
    out = tmp_path / "out.json"
    proc = run_cli("compile", ref, "--target", "sagemaker", "--config", path, "-o", str(out))
    return proc, out


@pytest.mark.docker
def test_a_gpu_step_on_a_cpu_instance_type_is_refused(tmp_path) -> None:
    """train declares a GPU per process; ml.m5.xlarge has none: compile names the fix."""
    proc, out = compile_with(tmp_path, "tests/pipelines/limits.py:gpu-on-cpu", instance_types={
        "processing": "ml.m5.xlarge", "training": "ml.m5.xlarge"}, components=None)
    assert proc.returncode == 2 and not out.exists(), proc.stderr
    assert ("step 'train': wants 1 GPU(s) per node (1 process(es) x 1 GPU), but ml.m5.xlarge "
            "has 0; set an instance type with at least 1 GPUs (e.g. ml.") in proc.stderr
    assert "components.<component>.instance_type" in proc.stderr


@pytest.mark.docker
def test_an_instance_type_no_job_of_its_kind_takes(tmp_path, definition: dict[str, Any]) -> None:
    """ml.p4de.24xlarge trains but does not process: refused in the compiled file and from the
    config, naming the job kind and close types."""
    doc = copy.deepcopy(definition)
    cluster = step(doc, "evaluate")["Arguments"]["ProcessingResources"]["ClusterConfig"]
    cluster["InstanceType"] = "ml.p4de.24xlarge"
    error = validate(tmp_path, doc)
    assert ("step 'evaluate' (CreateProcessingJob): ProcessingResources.ClusterConfig."
            "InstanceType: 'ml.p4de.24xlarge' is not a valid ProcessingInstanceType") in error
    assert "take processing jobs; close: ml.g5.48xlarge" in error  # 8 GPUs, as p4de
    proc, out = compile_with(tmp_path, "pipelines/image_classification.py", instance_types={
        "processing": "ml.p4de.24xlarge", "training": "ml.g5.2xlarge"})
    assert proc.returncode == 2 and not out.exists()
    assert ("sagemaker.yaml: 'instance_types.processing': 'ml.p4de.24xlarge' is not a valid "
            "ProcessingInstanceType") in proc.stderr


@pytest.mark.docker
def test_an_instance_type_not_offered_in_the_region(tmp_path) -> None:
    """ml.p4de.24xlarge trains in us-east-1 and us-west-2 only: compile refuses the config's
    key, validate (--config) and submit refuse a compiled file's step in ap-south-1, naming the
    type, the region and 8-GPU alternatives."""
    images = {f"kubesage/{name}": f"111122223333.dkr.ecr.ap-south-1.amazonaws.com/kubesage/{name}"
              for name in ("torch", "serve")}
    config = {"region": "ap-south-1", "images": images,
              "components": {"train": {"kind": "training", "instance_type": "ml.p4de.24xlarge"},
                             "evaluate": {"kind": "processing"}, "register": {"kind": "register"}}}
    proc, out = compile_with(tmp_path, "pipelines/image_classification.py", **config)
    offer = ("'ml.p4de.24xlarge' is not offered for training jobs in ap-south-1 (only in "
             "us-east-1, us-west-2); use one offered there, e.g. ml.g5.48xlarge")
    assert proc.returncode == 2 and not out.exists(), proc.stderr
    assert f"sagemaker.yaml: 'components.train.instance_type': {offer}" in proc.stderr
    expected = f"step 'train' (CreateTrainingJob): ResourceConfig.InstanceType: {offer}"
    # the same definition compiled for us-east-1 is valid there, and refused for ap-south-1
    east = tmp_path / "east"
    east.mkdir()
    proc, out = compile_with(east, "pipelines/image_classification.py",
                             **{**config, "region": "us-east-1"})
    assert proc.returncode == 0, proc.stderr
    ok = run_cli("validate", str(out), "--config", str(east / "sagemaker.yaml"))
    assert ok.returncode == 0 and "instance types in us-east-1" in ok.stdout, ok.stderr
    refused = run_cli("validate", str(out), "--config", str(tmp_path / "sagemaker.yaml"))
    assert refused.returncode == 2 and expected in refused.stderr, refused.stderr
    submitted = run_cli("submit", str(out), "--target", "sagemaker", "--config",
                        str(tmp_path / "sagemaker.yaml"))
    assert submitted.returncode == 2 and expected in submitted.stderr, submitted.stderr


def test_no_false_alarm_in_the_main_regions() -> None:
    """Every type botocore allows for a job kind is offered in us-east-1 and us-west-2; in
    eu-west-1 all but the snapshot's regional families."""
    for kind in KINDS:
        for region in ("us-east-1", "us-west-2", "eu-west-1"):
            refused = {t for t in offered(kind) if instance_problem(kind, t, region)}
            regional = {t for t in offered(kind) if t.split(".")[1] in REGIONAL.get(kind, {})
                        and region not in REGIONAL[kind][t.split(".")[1]]}
            assert refused == regional, (kind, region, refused)
        assert instance_problem(kind, "ml.m5.xlarge" if kind != "Transform" else "ml.m5.large",
                                "xx-nowhere-1") is None  # a region botocore does not know

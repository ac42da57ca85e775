"""The SageMaker target config: every missing or malformed value is named."""

from __future__ import annotations

import pytest

from kubesage.dsl.errors import KubesageError
from kubesage.targets.sagemaker.config import SageMakerConfigError, load_config
from tests.sagemaker_fixtures import example_config, write_sagemaker_config


def test_example_config_loads() -> None:
    config = load_config("config/sagemaker.yaml")
    assert config.account_id == "111122223333"
    assert config.mounts["fsx"].file_system_id.startswith("fs-")
    assert config.hints("register").kind == "register"
    assert config.hints("evaluate").returns["output"] == ("report", "evaluation.json",
                                                         "metrics.accuracy.value")
    assert config.s3("p", "step", "out") == "s3://kubesage-artifacts-111122223333/pipelines/p/step/out"


def test_missing_file_names_it(tmp_path) -> None:
    with pytest.raises(SageMakerConfigError, match="nope.yaml does not exist; pass --config"):
        load_config(str(tmp_path / "nope.yaml"))


@pytest.mark.parametrize("changes, message", [
    ({"role_arn": None}, "'role_arn' is missing; add it, e.g. role_arn: arn:aws:iam::"),
    ({"role_arn": "my-role"}, "'role_arn' is malformed: 'my-role'"),
    ({"region": "virginia"}, "'region' is malformed: 'virginia'; expected something like us-east-1"),
    ({"bucket": 42}, "'bucket' must be a string, got 42; quote it"),
    ({"network": {"subnets": ["subnet-xyz"], "security_groups": ["sg-0123456789abcdef0"]}},
     "'network.subnets[0]' is malformed: 'subnet-xyz'"),
    ({"network": {"subnets": [], "security_groups": ["sg-0123456789abcdef0"]}},
     "'network.subnets' is empty"),
    ({"instance_types": {"processing": "m5.xlarge", "training": "ml.g5.2xlarge"}},
     "'instance_types.processing' is malformed: 'm5.xlarge'"),
    ({"spot": {"enabled": True, "max_run_s": 3600, "max_wait_s": 60}},
     "'spot.max_wait_s' (60) must be >= max_run_s (3600)"),
    ({"mounts": {"fsx": {"file_system_id": "fsx-1", "directory_path": "/x", "s3_uri": "s3://b/"}}},
     "'mounts.fsx.file_system_id' is malformed: 'fsx-1'"),
    ({"components": {"train": {"kind": "batch"}}},
     "'components.train.kind' is 'batch'; use one of: processing, training, register"),
    ({"model_package_group": None}, "'model_package_group' is missing"),
    ({"subnets": ["subnet-0123456789abcdef0"]}, "'subnets' is not a known setting"),
])
def test_bad_values_are_named(tmp_path, changes, message) -> None:
    path = write_sagemaker_config(str(tmp_path), **changes)
    with pytest.raises(SageMakerConfigError) as err:
        load_config(path)
    assert message in str(err.value)
    assert str(err.value).startswith(path)


def test_image_without_mapping_is_named(tmp_path) -> None:
    doc = example_config()
    path = write_sagemaker_config(str(tmp_path), images={"other/image": "1.dkr.ecr/x:1"})
    config = load_config(path)
    assert doc["images"]  # the example maps kubesage/torch
    with pytest.raises(KubesageError, match="component 'train' runs in image 'kubesage/torch', "
                                            "but 'images' has no entry for it"):
        config.image_uri("kubesage/torch", "train")


def test_not_yaml(tmp_path) -> None:
    path = tmp_path / "sagemaker.yaml"
    path.write_text("region: [unclosed\n")
    with pytest.raises(SageMakerConfigError, match="not valid YAML"):
        load_config(str(path))

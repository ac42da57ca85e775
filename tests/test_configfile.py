"""One reader for every target config: the same mistake reads the same on every target."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from kubesage.config.local import load_local_config
from kubesage.config.reader import ConfigError, ConfigReader
from kubesage.targets.kfp.config import KfpConfigError, MountConfigError, load_kfp_config
from kubesage.targets.sagemaker.config import SageMakerConfigError, load_config
from tests.sagemaker_fixtures import write_sagemaker_config


def _local(folder: str, doc: dict[str, Any]) -> str:
    return _write(os.path.join(folder, "local.yaml"), doc)


def _kfp(folder: str, doc: dict[str, Any]) -> str:
    return _write(os.path.join(folder, "kfp.yaml"), doc)


def _write(path: str, doc: dict[str, Any]) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


LOADERS: dict[str, Callable[[str | None], Any]] = {
    "local": load_local_config, "kfp": load_kfp_config, "sagemaker": load_config}

# target -> (a config with one mistake, written into a folder; the dotted key; the message after it)
MISTAKES: dict[str, list[tuple[Callable[[str], str], str, str]]] = {
    "unknown key, close match": [
        (lambda d: _local(d, {"paralelism": 2}), "paralelism",
         r"is not a known setting \(did you mean 'parallelism'\?\); known here: mounts, "),
        (lambda d: _kfp(d, {"image": {"registy": "r"}}), "image.registy",
         r"is not a known setting \(did you mean 'image.registry'\?\); known here: registry, tag"),
        (lambda d: write_sagemaker_config(d, regoin="us-east-1"), "regoin",
         r"is not a known setting \(did you mean 'region'\?\); known here: region, "),
    ],
    "wrong type": [
        (lambda d: _local(d, {"image_tag": 42}), "image_tag", r"must be a string, got 42; quote it"),
        (lambda d: _kfp(d, {"namespace": 42}), "namespace", r"must be a string, got 42; quote it"),
        (lambda d: write_sagemaker_config(d, bucket=42), "bucket", r"must be a string, got 42; quote it"),
    ],
    "missing required key": [
        (lambda d: _local(d, {"mounts": {"fsx": None}}), "mounts.fsx",
         r"is missing; add it, e.g. fsx: \.\./data/fsx"),
        (lambda d: _kfp(d, {"volumes": {"fsx": {}}}), "volumes.fsx.claim",
         r"is missing; add it, e.g. claim: \S+"),
        (lambda d: write_sagemaker_config(d, role_arn=None), "role_arn",
         r"is missing; add it, e.g. role_arn: arn:aws:iam::"),
    ],
    "malformed value": [
        (lambda d: _local(d, {"webhooks": ["slack"]}), r"webhooks[0]",
         r"is malformed: 'slack'; expected something like https://"),
        (lambda d: _kfp(d, {"retry": {"backoff": "30 seconds"}}), "retry.backoff",
         r"is malformed: '30 seconds'; expected something like 30s"),
        (lambda d: write_sagemaker_config(d, region="virginia"), "region",
         r"is malformed: 'virginia'; expected something like us-east-1"),
    ],
}


@pytest.mark.parametrize("mistake", list(MISTAKES))
def test_a_mistake_reads_the_same_on_every_target(tmp_path, mistake: str) -> None:
    for (write, key, problem), target in zip(MISTAKES[mistake], LOADERS, strict=True):
        folder = tmp_path / target
        folder.mkdir()
        path = write(str(folder))
        with pytest.raises(ConfigError) as err:
            LOADERS[target](path)
        assert re.fullmatch(rf"{re.escape(path)}: '{re.escape(key)}' {problem}.*", str(err.value)), \
            (target, str(err.value))


def test_every_target_error_is_a_config_error(tmp_path) -> None:
    assert all(issubclass(e, ConfigError)
               for e in (KfpConfigError, MountConfigError, SageMakerConfigError))
    for load in LOADERS.values():
        with pytest.raises(ConfigError, match="nope.yaml does not exist; pass "):
            load(str(tmp_path / "nope.yaml"))
        (tmp_path / "list.yaml").write_text("[a]\n")
        with pytest.raises(ConfigError, match="list.yaml: expected a mapping of settings, got list"):
            load(str(tmp_path / "list.yaml"))


def test_reader_resolves_paths_against_the_config_file(tmp_path) -> None:
    reader = ConfigReader({"store": "../runs", "empty": ""}, str(tmp_path / "config" / "c.yaml"))
    assert reader.path_of("store") == str(tmp_path / "runs")
    assert reader.path_of("empty") == reader.path_of("absent") == ""
    assert reader.path_of("absent", "x") == str(tmp_path / "config" / "x")

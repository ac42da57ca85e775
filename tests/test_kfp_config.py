"""config/kfp.yaml: every key checked, errors name the key and the fix."""

from __future__ import annotations

import os

import pytest
import yaml

from kubesage.targets.kfp.config import KfpConfigError, load_kfp_config
from tests.conftest import REPO


def write(tmp_path, doc: object) -> str:
    path = tmp_path / "kfp.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_example_config_reads_as_documented() -> None:
    config = load_kfp_config(os.path.join(REPO, "config", "kfp.yaml"))
    assert config.image("kubesage/torch") == \
        "123456789012.dkr.ecr.us-west-2.amazonaws.com/kubesage/torch:0.1.0"
    assert config.image("kubesage/torch:pinned").endswith("/kubesage/torch:pinned")
    local = config.for_local_run({"kubesage/torch": "kubesage/torch:id-0123456789ab"}, {"fsx": "f0"})
    assert local.image("kubesage/torch") == "kubesage/torch:id-0123456789ab"
    assert local.data_versions == {"fsx": "f0"} and local.registry == ""
    assert config.volumes == {"fsx": "fsx-lustre-claim"}
    assert (config.checkpoint_claim, config.checkpoint_path) == ("kubesage-checkpoints", "/checkpoints")
    assert config.retry_backoff == "30s" and config.retry_max == "3600s"
    assert config.tolerations[0].to_k8s() == {"key": "spot", "operator": "Equal", "value": "true",
                                              "effect": "NoSchedule"}
    assert config.local_config == os.path.join(REPO, "config", "local.yaml")


@pytest.mark.parametrize("doc,message", [
    ({"namespce": "x"}, r"'namespce' is not a known setting \(did you mean 'namespace'\?\); "
                        r"known here: image, namespace"),
    ({"image": {"registy": "x"}}, r"'image.registy' is not a known setting \(did you mean "
                                  r"'image.registry'\?\); known here: registry, tag"),
    ({"image": {"tag": 1}}, r"'image.tag' must be a string, got 1; quote it"),
    ({"volumes": {"fsx": "claim"}},
     r"'volumes.fsx' must be a mapping, got 'claim'; e.g. fsx: \{claim: <PersistentVolumeClaim name>\}"),
    ({"scheduling": {"tolerations": [{"key": "spot", "operator": "In"}]}},
     r"'scheduling.tolerations\[0\].operator' is 'In'; use one of: Equal, Exists"),
    ({"scheduling": {"node_selector": {"spot": True}}},
     r"'scheduling.node_selector.spot' must be a string, got True; quote it"),
    ({"retry": {"backoff": "30 seconds"}},
     r"'retry.backoff' is malformed: '30 seconds'; expected something like 30s, 5m or 1h"),
    ({"shm": {"size": "lots"}},
     r"'shm.size' is malformed: 'lots'; expected something like 16Gi \(a Kubernetes quantity\)"),
    ({"trainer": {"poll_seconds": 0}}, r"'trainer.poll_seconds' must be >= 1"),
    (["not", "a", "mapping"], r"expected a mapping of settings, got list"),
])
def test_bad_config_names_the_key(tmp_path, doc: object, message: str) -> None:
    with pytest.raises(KfpConfigError, match=message):
        load_kfp_config(write(tmp_path, doc))


def test_missing_config_file(tmp_path) -> None:
    with pytest.raises(KfpConfigError, match=r"nope.yaml does not exist; pass an existing --config"):
        load_kfp_config(str(tmp_path / "nope.yaml"))


def test_durations_become_seconds_and_local_config_is_relative(tmp_path) -> None:
    config = load_kfp_config(write(tmp_path, {"retry": {"backoff": "2m", "max": "1h"},
                                              "local": {"config": "local.yaml"}}))
    assert (config.retry_backoff, config.retry_max) == ("120s", "3600s")
    assert config.local_config == str(tmp_path / "local.yaml")

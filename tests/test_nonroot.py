"""Steps run as a non-root user on every Docker path (local runner, kfp.local on the compiled
YAML, the SageMaker definition run locally): their outputs are writable, the data mount is
read-only, and the compiled Kubeflow pod spec says ``runAsNonRoot``."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import yaml

from kubesage.runs.step_user import RUN_AS_GID, RUN_AS_UID
from tests.conformance.harness import run_command
from tests.conftest import run_cli

pytestmark = pytest.mark.docker

# As root, steps run as the images' user; as anyone else, as that user (files stay theirs).
EXPECTED_USER = (f"uid={RUN_AS_UID} gid={RUN_AS_GID}" if os.getuid() == 0
                 else f"uid={os.getuid()} gid={os.getgid()}")


@pytest.mark.parametrize("path", ["docker", "kfp", "sagemaker"])
def test_steps_run_as_non_root_with_read_only_data(path: str, tmp_path, fsx_root: str,
                                                   docker_client: Any) -> None:
    args = run_command(path, "tests/pipelines/probes.py:identity", str(tmp_path), fsx_root,
                       "latest")
    proc = run_cli(*args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    (step,) = record["steps"]
    assert step["status"] == "succeeded"
    assert step["returns"]["output"] == f"{EXPECTED_USER} data=read-only outputs=writable"
    assert not os.path.exists(os.path.join(fsx_root, ".kubesage-write-probe"))


def test_the_image_user_is_not_root(docker_client: Any) -> None:
    image = docker_client.images.get("kubesage/torch:latest")
    assert image.attrs["Config"]["User"] == f"{RUN_AS_UID}:{RUN_AS_GID}"
    out = docker_client.containers.run("kubesage/torch:latest", entrypoint=["id", "-u"],
                                       remove=True)
    assert out.decode().strip() == str(RUN_AS_UID)


def test_the_compiled_kubeflow_pods_run_as_non_root(tmp_path) -> None:
    out = tmp_path / "ic.yaml"
    run_cli("compile", "pipelines/image_classification.py", "--target", "kfp", "-o", str(out),
            check=True)
    docs = list(yaml.safe_load_all(out.read_text()))
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert executors
    for name, spec in executors.items():
        assert spec["securityContext"] == {"runAsUser": str(RUN_AS_UID), "runAsNonRoot": True,
                                           "runAsGroup": str(RUN_AS_GID)}, name
    # a multi-node step's TrainJob: tests/test_kfp_trainjob.py


def test_root_is_refused_in_the_kubeflow_config(tmp_path) -> None:
    config = tmp_path / "kfp.yaml"
    config.write_text(yaml.safe_dump({"security": {"run_as_user": 0}}))
    proc = run_cli("compile", "pipelines/image_classification.py", "--target", "kfp",
                   "--config", str(config), "-o", str(tmp_path / "x.yaml"))
    assert proc.returncode != 0
    assert "'security.run_as_user' must be >= 1, got 0; use e.g. run_as_user: 1000" \
        in proc.stderr
    assert not (tmp_path / "x.yaml").exists()

"""The component catalog: publish, pin, catch breaking changes; folder and S3 (moto server)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from components.probe import probe
from kubesage import Artifact, Output, component
from kubesage.catalog import Catalog, CatalogError, breaking_changes, use
from tests.conftest import REPO, run_cli, run_json, write_config

PIPELINE = '''
from kubesage import pipeline
from kubesage.catalog import use

probe = use("probe@{version}", catalog={catalog!r}, lock={lock!r})


@pipeline(name="team-b")
def team_b() -> None:
    probe(message="from team b")
'''


@component(name="probe", version="1.1.0")
def probe_renamed(result: Output[Artifact], text: str = "ok") -> str:
    """probe with 'message' renamed: a breaking change."""
    return text


@component(name="probe", version="1.2.0")
def probe_extended(result: Output[Artifact], message: str = "ok", seconds: float = 0.0,
                   exit_code: int = 0, repeat: int = 1) -> str:
    """probe with one more optional input: compatible."""
    return message * repeat


def _team_b_pipeline(tmp_path, catalog: str, version: str) -> str:
    path = tmp_path / "team_b.py"
    path.write_text(PIPELINE.format(version=version, catalog=catalog,
                                    lock=str(tmp_path / "kubesage.lock")))
    return str(path)


@pytest.mark.docker
def test_published_component_is_pinned_by_another_team(
    docker_client: Any, tmp_path, fsx_root: str
) -> None:
    catalog = str(tmp_path / "catalog")
    out = run_cli("components", "--catalog", catalog, "publish", "components/probe.py:probe",
                  "--publisher", "team-a", check=True).stdout
    image_id = docker_client.images.get("kubesage/torch:latest").id
    assert f"published probe@1.0.0 ({image_id[:19]})" in out
    listed = json.loads(run_cli("components", "--catalog", catalog, "list", "--json",
                                check=True).stdout)
    assert [(e["name"], e["version"], e["image"], e["publisher"]) for e in listed] == [
        ("probe", "1.0.0", image_id, "team-a")]
    shown = run_cli("components", "--catalog", catalog, "show", "probe", check=True).stdout
    assert "param  message: str = 'ok'" in shown and "output result: Artifact" in shown

    pipe = _team_b_pipeline(tmp_path, catalog, "1.0.0")
    config = write_config(str(tmp_path / "l.yaml"), fsx_root, str(tmp_path / "s"))
    record = run_json("run", pipe, "--config", config)
    assert record["status"] == "succeeded", record["_stderr"]
    step = record["steps"][0]
    assert step["image"] == image_id and step["environment_id"] == image_id
    assert step["returns"]["output"] == "from team b"
    lock = json.loads((tmp_path / "kubesage.lock").read_text())
    assert lock["components"]["probe"]["version"] == "1.0.0"
    assert lock["components"]["probe"]["image"] == image_id


def test_breaking_change_is_caught_at_publish_and_at_compile(tmp_path) -> None:
    catalog = Catalog(str(tmp_path / "catalog"))
    image = "sha256:" + "a" * 64
    catalog.publish(probe, image, "team-a")
    with pytest.raises(CatalogError, match=r"probe@1.1.0 breaks probe@1.0.0: input 'message' \(str\) "
                       r"was removed.*publish it as 2.0.0"):
        catalog.publish(probe_renamed, image)
    with pytest.raises(CatalogError, match=r"already published with another interface"):
        catalog.publish(probe_extended.__class__(probe_extended.python_func, probe.spec), image[:-1] + "b")
    catalog.publish(probe_extended, image)  # compatible: a new optional input
    major = probe_renamed.__class__(probe_renamed.python_func,
                                    type(probe_renamed.spec)(**{**probe_renamed.spec.__dict__,
                                                               "version": "2.0.0"}))
    catalog.publish(major, image)
    assert catalog.versions("probe") == ["1.0.0", "1.2.0", "2.0.0"]

    pipe = _team_b_pipeline(tmp_path, catalog.location, "1.0.0")
    run_cli("validate", pipe, check=True)  # pins 1.0.0 in the lock
    pipe = _team_b_pipeline(tmp_path, catalog.location, "1.2.0")
    run_cli("validate", pipe, check=True)  # a compatible upgrade moves the pin
    pipe = _team_b_pipeline(tmp_path, catalog.location, "2.0.0")
    proc = run_cli("validate", pipe)
    assert proc.returncode == 2
    assert ("component 'probe' version 2.0.0 breaks the locked version 1.2.0: input 'message' (str) "
            "was removed") in proc.stderr
    assert breaking_changes(probe.spec, probe_extended.spec) == []


@pytest.fixture
def moto_s3() -> Iterator[str]:
    """A real AWS emulator (moto in server mode) on loopback, with a bucket."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"),
                               "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "test",
           "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "eu-west-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3

        deadline = time.time() + 30
        while True:
            try:
                boto3.client("s3").create_bucket(
                    Bucket="ml-catalog",
                    CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
                break
            except Exception:
                if time.time() > deadline:
                    raise
                time.sleep(0.3)
        yield "s3://ml-catalog/shared/components"
    finally:
        server.terminate()
        server.wait(10)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.mark.server
def test_s3_catalog(moto_s3: str) -> None:
    catalog = Catalog(moto_s3)
    image = "registry.example/kubesage/torch@sha256:" + "c" * 64
    catalog.publish(probe, image, "team-a")
    catalog.publish(probe_extended, image, "team-a")
    other = Catalog(moto_s3)  # another team's view of the same prefix
    assert [(e.name, e.version) for e in other.list()] == [("probe", "1.2.0")]
    assert other.get("probe", "1.0.0").spec.entry == "components.probe:probe"
    with pytest.raises(CatalogError, match=r"probe@9.9.9 is not in catalog s3://ml-catalog/shared/"
                       r"components; published versions: 1.0.0, 1.2.0"):
        other.get("probe", "9.9.9")
    with pytest.raises(CatalogError, match=r"image 'kubesage/torch:latest' is not pinned"):
        catalog.publish(probe, "kubesage/torch:latest")


def test_export_as_kubeflow_component_yaml(tmp_path) -> None:
    from kfp import components

    catalog = Catalog(str(tmp_path / "catalog"))
    digest = "registry.example/kubesage/torch@sha256:" + "d" * 64
    catalog.publish(probe, digest, "team-a")
    catalog.publish(probe_extended, "sha256:" + "e" * 64, "team-a")
    proc = run_cli("components", "--catalog", catalog.location, "export", "probe@1.2.0", "-o",
                   str(tmp_path / "x.yaml"))
    assert proc.returncode == 2 and "is a local image ID, which a cluster cannot pull" in proc.stderr
    assert not (tmp_path / "x.yaml").exists()
    out = tmp_path / "probe.yaml"
    run_cli("components", "--catalog", catalog.location, "export", "probe@1.0.0", "-o", str(out),
            check=True)
    loaded = components.load_component_from_file(str(out))
    assert loaded.name == "probe"
    assert sorted(loaded.component_spec.inputs) == ["exit_code", "message", "seconds"]
    assert "result" in loaded.component_spec.outputs
    container = loaded.pipeline_spec.deployment_spec["executors"]["exec-probe"]["container"]
    assert container["command"] == ["python", "-m", "kubesage.runtime"]
    assert container["image"] == digest
    assert "components.probe:probe" in container["args"]


def test_folder_catalog_entries_are_readable_by_other_teams(tmp_path) -> None:
    catalog = Catalog(str(tmp_path / "catalog"))
    catalog.publish(probe, "sha256:" + "f" * 64, "team-a")
    entry = tmp_path / "catalog" / "probe" / "1.0.0.json"
    assert entry.stat().st_mode & 0o044 == 0o044  # group and others may read it
    assert not [p for p in (tmp_path / "catalog" / "probe").iterdir() if p.suffix == ".tmp"]


@pytest.mark.docker
def test_a_kubeflow_component_yaml_is_published_and_used_like_any_component(tmp_path) -> None:
    catalog, lock = str(tmp_path / "catalog"), str(tmp_path / "kubesage.lock")
    yaml_file = os.path.join(REPO, "tests", "kfp_components", "upper.yaml")
    refused = run_cli("components", "--catalog", catalog, "publish", yaml_file)
    assert refused.returncode == 2 and "has no version; pass --version X.Y.Z" in refused.stderr
    digest = "registry.example.com/text/upper@sha256:" + "ab" * 32
    run_cli("components", "--catalog", catalog, "publish", yaml_file, "--version", "2.1.0",
            "--image", digest, check=True)
    shown = run_cli("components", "--catalog", catalog, "show", "upper", check=True).stdout
    assert "upper@2.1.0" in shown and "output size: int" in shown and "runs   sh -ec" in shown
    upper = use("upper@2.1.0", catalog, lock)
    assert upper.spec.image == digest and upper.spec.container is not None
    assert upper.spec.container.args[1].startswith('{"Concat"')
    # Both compilers run the pinned image, not the tag the YAML was shared with.
    from kubesage import load_kfp_component, pipeline
    from kubesage.targets import kfp, sagemaker

    made = load_kfp_component(os.path.join(REPO, "tests", "kfp_components", "make_text.yaml"))

    @pipeline(name="pinned")
    def pinned() -> None:
        upper(text=made(text="a", repeat=1).outputs["out"])

    kfp.TARGET.compile(pinned.build(), str(tmp_path / "p.yaml"))
    assert f"image: {digest}" in (tmp_path / "p.yaml").read_text()
    sagemaker.TARGET.compile(pinned.build(), str(tmp_path / "p.json"))
    steps = json.loads((tmp_path / "p.json").read_text())["Steps"]
    assert [s["Arguments"]["AppSpecification"]["ImageUri"] for s in steps][1] == digest

"""Submission against moto in server mode: a real HTTP AWS emulator on loopback."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, run_cli

MOTO = os.path.join(os.path.dirname(sys.executable), "moto_server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    port = _free_port()
    proc = subprocess.Popen([MOTO, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1)
            break
        except Exception:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start on {url}")
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A boto3 SageMaker client on moto; the CLI processes inherit the same environment."""
    for key, value in {"AWS_ENDPOINT_URL": moto_endpoint, "AWS_ACCESS_KEY_ID": "testing",
                       "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                       "KUBESAGE_POLL_S": "0.1"}.items():
        monkeypatch.setenv(key, value)
    import boto3

    # every test starts from an empty emulator: no dependence on the order tests run in
    urllib.request.urlopen(urllib.request.Request(moto_endpoint + "/moto-api/reset", method="POST"),
                           timeout=10).read()
    client = boto3.client("sagemaker", region_name="us-east-1", endpoint_url=moto_endpoint)
    assert client.list_pipelines()["PipelineSummaries"] == []
    return client


CONFIG: list[str] = []


@pytest.fixture(scope="module", autouse=True)
def _config(pushed_images: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The example config with its images in the loopback registry (submission checks that
    they are there)."""
    from tests.sagemaker_fixtures import write_sagemaker_config

    folder = str(tmp_path_factory.mktemp("sagemaker-submit"))
    CONFIG[:] = [write_sagemaker_config(folder, images={
        "kubesage/torch": f"{pushed_images}/kubesage/torch"})]


def submit(*args: str) -> dict[str, Any]:
    if "--config" not in args:
        args = (*args, "--config", CONFIG[0])
    proc = run_cli("submit", "--target", "sagemaker", *args)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    result["_stderr"] = proc.stderr
    return result


def executions(aws: Any, name: str) -> list[dict[str, Any]]:
    return aws.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]


def test_submit_reference_creates_pipeline_with_its_parameters(aws) -> None:
    result = submit("pipelines/image_classification.py", "--param", "epochs=3")
    assert result["action"] == "created"
    described = aws.describe_pipeline(PipelineName="image-classification")
    definition = json.loads(described["PipelineDefinition"])
    declared = {p["Name"]: p["Type"] for p in definition["Parameters"]}
    assert declared == {"raw_dir": "String", "image_size": "Integer", "arch": "String",
                        "epochs": "Integer", "threshold": "Float", "model_name": "String",
                        "seed": "Integer"}
    assert described["RoleArn"] == "arn:aws:iam::111122223333:role/kubesage-sagemaker"
    assert len(executions(aws, "image-classification")) == 1
    (run,) = result["executions"]
    assert run["parameters"] == {"epochs": "3"}
    params = aws.list_pipeline_parameters_for_execution(PipelineExecutionArn=run["arn"])
    assert {"Name": "epochs", "Value": "3"} in params["PipelineParameters"]
    group = aws.describe_model_package_group(ModelPackageGroupName="digits-classifier")
    assert group["ModelPackageGroupName"] == "digits-classifier"
    again = submit("pipelines/image_classification.py")
    assert again["action"] == "updated"
    assert len(executions(aws, "image-classification")) == 2


def test_one_execution_per_client_and_wait(aws) -> None:
    result = submit("tests/pipelines/sagemaker_pipelines.py:clients-probe", "--clients",
                    "acme,globex,initech", "--param", "greeting=hi", "--wait")
    assert [r["client"] for r in result["executions"]] == ["acme", "globex", "initech"]
    assert len(executions(aws, "clients-probe")) == 3
    for run in result["executions"]:
        assert run["status"] == "Succeeded"
        assert run["note"] == "step details unavailable (500)"  # moto's answer, handled
        params = aws.list_pipeline_parameters_for_execution(PipelineExecutionArn=run["arn"])
        values = {p["Name"]: p["Value"] for p in params["PipelineParameters"]}
        assert values == {"clients": run["client"], "greeting": "hi"}
    assert ": Succeeded" in result["_stderr"]


def test_fan_out_defaults_to_the_parameter_list(aws, tmp_path) -> None:
    compiled = tmp_path / "fanned.json"
    run_cli("compile", "tests/pipelines/sagemaker_pipelines.py:clients-probe", "--target", "sagemaker",
            "-o", str(compiled), "--config", CONFIG[0], check=True)
    result = submit(str(compiled), "--clients", "x,y")  # a compiled file knows its fan-out too
    assert result["pipeline"] == "fanned"
    assert [r["parameters"]["clients"] for r in result["executions"]] == ["x", "y"]
    result = submit("tests/pipelines/sagemaker_pipelines.py:clients-probe")
    assert [r["client"] for r in result["executions"]] == ["acme", "globex"]
    # a compiled file holds only one client as the default: it must be told the clients
    proc = run_cli("submit", "--target", "sagemaker", str(compiled), "--config", CONFIG[0])
    assert proc.returncode == 2
    assert "fans out over 'clients'; name the clients with --clients a,b,..." in proc.stderr


def test_clients_without_fan_out_is_refused(aws) -> None:
    proc = run_cli("submit", "--target", "sagemaker", "pipelines/image_classification.py",
                   "--clients", "a,b", "--config", CONFIG[0])
    assert proc.returncode == 2
    assert "--clients given, but pipeline 'image-classification' does not fan out" in proc.stderr


def test_bad_parameter_is_refused_before_anything_is_sent(aws) -> None:
    proc = run_cli("submit", "--target", "sagemaker", "pipelines/image_classification.py",
                   "--param", "epoch=3", "--config", CONFIG[0])
    assert proc.returncode == 2
    assert "has no parameter 'epoch' (did you mean 'epochs'?)" in proc.stderr
    names = [p["PipelineName"] for p in aws.list_pipelines()["PipelineSummaries"]]
    assert names == []  # nothing was created


def test_a_pipeline_over_a_service_limit_is_refused_before_anything_is_sent(aws,
                                                                            tmp_path) -> None:
    """4 nodes x 8 processes onto a 1-GPU instance: refused by submit, nothing created."""
    doc = yaml.safe_load(open(CONFIG[0]))
    doc["instance_types"]["training"] = "ml.g5.2xlarge"
    config = tmp_path / "sagemaker.yaml"
    config.write_text(yaml.safe_dump(doc))
    proc = run_cli("submit", "--target", "sagemaker", "tests/pipelines/limits.py:crowded-nodes",
                   "--config", str(config))
    assert proc.returncode == 2, proc.stderr
    assert "wants 8 GPU(s) per node (8 process(es) x 1 GPU), but ml.g5.2xlarge has 1" in proc.stderr
    assert aws.list_pipelines()["PipelineSummaries"] == []


def test_service_error_is_reported(aws, tmp_path) -> None:
    from tests.sagemaker_fixtures import write_sagemaker_config

    config = write_sagemaker_config(str(tmp_path), region="eu-west-1",
                                    images=yaml.safe_load(open(CONFIG[0]))["images"])
    proc = subprocess.run([sys.executable, "-m", "kubesage.cli", "submit", "--target", "sagemaker",
                           "tests/pipelines/sagemaker_pipelines.py:clients-probe", "--config", config],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "AWS_MAX_ATTEMPTS": "1",
                               "AWS_ENDPOINT_URL": "http://127.0.0.1:9"})  # nothing listens
    assert proc.returncode == 2
    assert "error: cannot reach SageMaker in eu-west-1: Could not connect to the endpoint URL" in proc.stderr


def test_per_client_registration_gets_a_group_per_client(aws) -> None:
    result = submit("pipelines/per_client.py", "--clients", "client-a,client-b")
    assert result["model_package_groups"] == ["digits-classifier-client-a",
                                              "digits-classifier-client-b"]
    for group in result["model_package_groups"]:
        assert aws.describe_model_package_group(ModelPackageGroupName=group)["ModelPackageGroupName"] == group
    assert len(executions(aws, "per-client")) == 2

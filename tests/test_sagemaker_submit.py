"""Submission against moto in server mode: a real HTTP AWS emulator on loopback."""

from __future__ import annotations

import contextlib
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

pytestmark = [pytest.mark.docker, pytest.mark.server]

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
        "kubesage/torch": f"{pushed_images}/kubesage/torch",
        "kubesage/serve": f"{pushed_images}/kubesage/serve"})]


def submit(*args: str) -> dict[str, Any]:
    if "--config" not in args:
        args = (*args, "--config", CONFIG[0])
    proc = run_cli("submit", "--target", "sagemaker", *args)
    assert proc.returncode == 0, proc.stderr
    result: dict[str, Any] = json.loads(proc.stdout)
    result["_stderr"] = proc.stderr
    return result


def show(run_id: str) -> dict[str, Any]:
    """The run record, from the store of the submit config's local config."""
    local = os.path.join(os.path.dirname(CONFIG[0]), "local.yaml")
    proc = run_cli("runs", "--config", local, "show", run_id, "--json", check=True)
    record: dict[str, Any] = json.loads(proc.stdout)
    return record


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
                        "seed": "Integer", "min_score": "Float"}
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
        assert run["status"] == "succeeded"
        params = aws.list_pipeline_parameters_for_execution(PipelineExecutionArn=run["arn"])
        values = {p["Name"]: p["Value"] for p in params["PipelineParameters"]}
        assert values == {"clients": run["client"], "greeting": "hi"}
        record = show(run["kubesage_run_id"])
        assert record["target"] == "sagemaker" and record["status"] == "succeeded"
        assert record["remote"]["arn"] == run["arn"] and record["remote"]["client"] == run["client"]
        # moto does not implement ListPipelineExecutionSteps (it answers 500): said, not fatal
        assert record["remote"]["note"] == "step details unavailable (500)"
    assert f"run {result['executions'][0]['kubesage_run_id']} succeeded in" in result["_stderr"]


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
    from tests.sagemaker_fixtures import write_sagemaker_config

    doc = yaml.safe_load(open(CONFIG[0]))
    doc["instance_types"]["training"] = "ml.g5.2xlarge"
    config = write_sagemaker_config(str(tmp_path), images=doc["images"],
                                    instance_types=doc["instance_types"])
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


def stand_in(client: Any, operation: str, response: dict[str, Any] | None = None) -> list[Any]:
    """Answer ``operation`` on ``client`` with ``response``, for the operations moto does not
    implement (``ListPipelineExecutionSteps``, ``RetryPipelineExecution``) or cannot put in
    the state a test needs (an execution that failed: moto's always succeed). The one stand-in
    of these tests: botocore has already checked the request against its service model when
    this runs, and the response is checked against the operation's output shape here. With
    ``response`` None the call goes on to moto, and only its request is kept. Returns the
    requests (their JSON bodies) as they are made."""
    from botocore.awsrequest import AWSResponse
    from botocore.validate import validate_parameters

    model = client.meta.service_model.operation_model(operation)
    if response is not None:
        validate_parameters(response, model.output_shape)
    calls: list[Any] = []

    def answer(params: dict[str, Any], **_: Any) -> Any:
        calls.append(json.loads(params["body"] or b"{}"))
        if response is None:
            return None
        return AWSResponse("https://stand-in", 200, {}, None), response

    client.meta.events.register(f"before-call.sagemaker.{operation}", answer)
    return calls


def test_refresh_reads_steps_outputs_and_metrics_back(aws, tmp_path) -> None:
    """Steps from the service; each job's outputs from moto; metrics and returned values from
    the result files kubesage's runtime wrote beside them, in moto's S3."""
    import datetime
    import io
    import tarfile

    import boto3

    from kubesage.runs.submitted import update
    from kubesage.store import RunStore
    from kubesage.targets.sagemaker.executions import read

    result = submit("pipelines/image_classification.py", "--tag", "exp=cloud")
    run_id = result["executions"][0]["kubesage_run_id"]
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="results")
    s3.put_object(Bucket="results", Key="evaluate/kubesage-result/result.json",
                  Body=json.dumps({"metrics": {"accuracy": 0.93}, "returns": {"accuracy": 0.93}}))
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        data = json.dumps({"metrics": {"loss": 0.25}}).encode()
        info = tarfile.TarInfo("kubesage-result.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    s3.put_object(Bucket="results", Key="train/train-job/output/output.tar.gz", Body=packed.getvalue())
    role = "arn:aws:iam::111122223333:role/kubesage-sagemaker"
    job = aws.create_processing_job(
        ProcessingJobName="evaluate-job", RoleArn=role,
        AppSpecification={"ImageUri": "img"},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 30}},
        ProcessingOutputConfig={"Outputs": [
            {"OutputName": n, "S3Output": {"S3Uri": f"s3://results/evaluate/{n}",
                                           "LocalPath": f"/opt/ml/processing/output/{n}",
                                           "S3UploadMode": "EndOfJob"}}
            for n in ("report", "kubesage-result")]})
    training = aws.create_training_job(
        TrainingJobName="train-job", RoleArn=role,
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://results/train"},
        ResourceConfig={"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600})
    now = datetime.datetime.now(datetime.UTC)
    listed = stand_in(aws, "ListPipelineExecutionSteps", {"PipelineExecutionSteps": [
        {"StepName": "evaluate", "StepStatus": "Succeeded", "StartTime": now, "EndTime": now,
         "Metadata": {"ProcessingJob": {"Arn": job["ProcessingJobArn"]}}},
        {"StepName": "train", "StepStatus": "Succeeded", "StartTime": now, "EndTime": now,
         "Metadata": {"TrainingJob": {"Arn": training["TrainingJobArn"]}}},
        {"StepName": "preprocess", "StepStatus": "Succeeded", "StartTime": now, "EndTime": now,
         "CacheHitResult": {"SourcePipelineExecutionArn": "arn:earlier"}}]})
    local = os.path.join(os.path.dirname(CONFIG[0]), "local.yaml")
    store = RunStore(yaml.safe_load(open(local))["store"])
    record = store.get(run_id)
    said: list[str] = []
    assert update(record, read(aws, record, s3), said.append)  # moto's executions succeed
    store.save(record)
    assert listed == [{"PipelineExecutionArn": record.remote["arn"]}]
    evaluate, train, pre = record.step("evaluate"), record.step("train"), record.step("preprocess")
    assert evaluate.metrics == {"accuracy": 0.93} and evaluate.returns == {"accuracy": 0.93}
    assert evaluate.outputs == {"report": {"uri": "s3://results/evaluate/report"}}
    assert train.metrics == {"loss": 0.25}
    assert train.outputs["model.tar.gz"]["uri"] == "s3://results/train/train-job/output/model.tar.gz"
    assert pre.cached and "= preprocess cached" in said and "+ evaluate succeeded in 0.0s" in said
    assert record.status == "succeeded" and record.tags == {"exp": "cloud"}

    # compare: a cloud run beside a local one, by their recorded metrics
    from kubesage.tracking.compare import table

    other = RunStore(store.url).get(run_id)
    other.run_id, other.target, other.remote = "local-run", "local", {}
    other.step("evaluate").metrics = {"accuracy": 0.9}
    text = table([record, other])
    assert "evaluate.accuracy" in text and "0.9300" in text and "0.9000" in text
    assert "sagemaker" in text and "local" in text


def test_refresh_reads_each_member_of_a_fused_job(aws) -> None:
    """A fused processing job is one step on the service; the record keeps its members, each
    with its own state and the result it left in the job's kubesage-members output."""
    import datetime

    import boto3

    from kubesage.runs.submitted import update
    from kubesage.store import RunStore
    from kubesage.targets.sagemaker.executions import read

    result = submit("tests/conformance/pipelines/returned_value.py")
    run_id = result["executions"][0]["kubesage_run_id"]
    local = os.path.join(os.path.dirname(CONFIG[0]), "local.yaml")
    store = RunStore(yaml.safe_load(open(local))["store"])
    record = store.get(run_id)
    assert [s.name for s in record.steps] == ["first", "second"]  # not the job's one step
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="fused")
    for name, value in (("first", 41), ("second", 42)):
        s3.put_object(Bucket="fused", Key=f"job/kubesage-members/{name}/kubesage-result/result.json",
                      Body=json.dumps({"returns": {"output": value}, "metrics": {"v": value}}))
    job = aws.create_processing_job(
        ProcessingJobName="first-to-second-job", RoleArn="arn:aws:iam::111122223333:role/r",
        AppSpecification={"ImageUri": "img"},
        ProcessingResources={"ClusterConfig": {"InstanceCount": 1, "InstanceType": "ml.m5.xlarge",
                                               "VolumeSizeInGB": 30}},
        ProcessingOutputConfig={"Outputs": [{"OutputName": "kubesage-members", "S3Output": {
            "S3Uri": "s3://fused/job/kubesage-members", "S3UploadMode": "Continuous",
            "LocalPath": "/opt/ml/processing/output/kubesage-members"}}]})
    now = datetime.datetime.now(datetime.UTC)
    stand_in(aws, "ListPipelineExecutionSteps", {"PipelineExecutionSteps": [
        {"StepName": "first-to-second", "StepStatus": "Succeeded", "StartTime": now,
         "EndTime": now, "Metadata": {"ProcessingJob": {"Arn": job["ProcessingJobArn"]}}}]})
    said: list[str] = []
    assert update(record, read(aws, record, s3), said.append)
    assert {s.name: (s.status, s.returns, s.metrics) for s in record.steps} == {
        "first": ("succeeded", {"output": 41}, {"v": 41.0}),
        "second": ("succeeded", {"output": 42}, {"v": 42.0})}


def test_from_failed_retries_a_failed_execution_and_selects_a_stopped_ones_steps(aws) -> None:
    from kubesage.store import RunStore
    from kubesage.targets.sagemaker.executions import ExecutionError, resume

    result = submit("pipelines/image_classification.py")
    local = os.path.join(os.path.dirname(CONFIG[0]), "local.yaml")
    store = RunStore(yaml.safe_load(open(local))["store"])
    record = store.get(result["executions"][0]["kubesage_run_id"])
    arn = record.remote["arn"]
    # moto's executions always succeed: the service's answer for a failed one stands in
    failed = aws.describe_pipeline_execution(PipelineExecutionArn=arn) | {
        "PipelineExecutionStatus": "Failed"}
    failed.pop("ResponseMetadata")
    stand_in(aws, "DescribePipelineExecution", failed)
    retried = stand_in(aws, "RetryPipelineExecution", {"PipelineExecutionArn": arn})
    record.status = "failed"
    continued = resume(aws, record, store)
    assert retried[0]["PipelineExecutionArn"] == arn and retried[0]["ClientRequestToken"]
    assert continued.rerun_of == record.run_id and continued.remote["how"] == "RetryPipelineExecution"
    assert continued.remote["arn"] == arn  # the same execution goes on

    # a stopped execution: the service does not retry it; a selective execution runs what stopped
    aws2 = __import__("boto3").client("sagemaker", region_name="us-east-1")
    stopped = dict(failed, PipelineExecutionStatus="Stopped")
    stand_in(aws2, "DescribePipelineExecution", stopped)
    sent = stand_in(aws2, "StartPipelineExecution")  # goes on to moto; the request is kept
    for step in record.steps:
        step.status = {"preprocess": "succeeded", "train": "cancelled"}.get(step.name, "pending")
    record.status = "cancelled"
    selective = resume(aws2, record, store)
    config = sent[0]["SelectiveExecutionConfig"]
    assert config["SourcePipelineExecutionArn"] == arn
    # the record's steps are the plan's (a fused job's members); a stopped member selects its job
    fused = {"preprocess": "preprocess-to-evaluate", "train": "preprocess-to-evaluate",
             "evaluate": "preprocess-to-evaluate", "predict": "predict-to-postprocess",
             "postprocess": "predict-to-postprocess"}
    assert [s["StepName"] for s in config["SelectedSteps"]] == list(dict.fromkeys(
        fused.get(s.name, s.name) for s in record.steps if s.name != "preprocess"))
    assert "preprocess-to-evaluate" in [s["StepName"] for s in config["SelectedSteps"]]
    assert selective.remote["arn"] != arn and selective.remote["arn"] in [
        e["PipelineExecutionArn"] for e in executions(aws, "image-classification")]
    assert selective.step("preprocess").status == "succeeded"
    assert selective.step("train").status == "pending"
    # nothing to tell which steps stopped: refused by name
    for step in record.steps:
        step.status = "pending"
    with pytest.raises(ExecutionError, match="kubesage runs refresh"):
        resume(aws2, record, store)


def test_exact_rerun_resubmits_the_kept_definition(aws) -> None:
    result = submit("pipelines/image_classification.py", "--param", "epochs=4")
    run_id = result["executions"][0]["kubesage_run_id"]
    local = os.path.join(os.path.dirname(CONFIG[0]), "local.yaml")
    proc = run_cli("rerun", "--config", local, run_id)
    assert proc.returncode == 0, proc.stderr
    arns = [e["PipelineExecutionArn"] for e in executions(aws, "image-classification")]
    assert len(arns) == 2
    for arn in arns:
        params = aws.list_pipeline_parameters_for_execution(PipelineExecutionArn=arn)
        assert {"Name": "epochs", "Value": "4"} in params["PipelineParameters"]
    newest = json.loads(run_cli("runs", "--config", local, "list", "--json", check=True).stdout)[0]
    again = show(newest["run_id"])
    assert again["rerun_of"] == run_id and again["compiled_sha256"] == show(run_id)["compiled_sha256"]
    assert again["remote"]["arn"] in arns and again["remote"]["arn"] != show(run_id)["remote"]["arn"]


def test_deploy_creates_a_single_and_a_multi_model_endpoint(aws, tmp_path) -> None:
    """The models packed and uploaded to moto's S3, then the model, endpoint config and
    endpoint; a second deploy of the same name updates the endpoint (moto has no UpdateEndpoint:
    a stand-in answers it, after botocore checked the request)."""
    import io
    import tarfile

    import boto3

    from kubesage.targets import get
    from tests.test_serving import _model

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="kubesage-artifacts-111122223333")
    acme, globex = _model(str(tmp_path / "acme"), 0), _model(str(tmp_path / "globex"), 1)
    proc = run_cli("deploy", acme, "--target", "sagemaker", "--name", "digits", "--config",
                   CONFIG[0])
    assert proc.returncode == 0, proc.stderr
    single = json.loads(proc.stdout)
    assert single["action"] == "created" and single["mode"] == "SingleModel"
    model = aws.describe_model(ModelName=single["model"])
    assert model["PrimaryContainer"]["Image"] == single["image"]
    assert "/kubesage/serve:code-" in single["image"]
    bucket, _, key = model["PrimaryContainer"]["ModelDataUrl"].removeprefix("s3://").partition("/")
    packed = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        member = tar.extractfile("model.pt")
        assert member is not None and member.read() == open(f"{acme}/model.pt", "rb").read()
    config = aws.describe_endpoint_config(EndpointConfigName=single["endpoint_config"])
    assert config["ProductionVariants"][0]["InstanceType"] == "ml.m5.xlarge"
    assert aws.describe_endpoint(EndpointName="digits")["EndpointConfigName"] == single["model"]

    # one model per client: a multi-model endpoint; the same name again: an update
    updated = stand_in(aws, "UpdateEndpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:"
                                               "123456789012:endpoint/digits"})
    import kubesage.targets.sagemaker.deploy as deploy_module

    multi = deploy_module.deploy({"acme": acme, "globex": globex}, "digits",
                                 get("sagemaker").load_config(CONFIG[0]), single["image"], aws, s3)
    assert multi["action"] == "updated" and multi["mode"] == "MultiModel"
    assert updated == [{"EndpointName": "digits", "EndpointConfigName": multi["endpoint_config"]}]
    container = aws.describe_model(ModelName=multi["model"])["PrimaryContainer"]
    assert container["Mode"] == "MultiModel" and container["ModelDataUrl"].endswith("/")
    assert sorted(multi["models"]) == ["acme", "globex"]
    assert all(uri.startswith(container["ModelDataUrl"]) and uri.endswith(f"/{name}.tar.gz")
               for name, uri in multi["models"].items())
    assert deploy_module.pack(acme) == deploy_module.pack(acme)  # the same bytes every time


@contextlib.contextmanager
def stand_in_for_new_clients(operation: str, response: dict[str, Any]) -> Iterator[list[Any]]:
    """``stand_in`` for the clients kubesage itself creates in this process (boto3's default
    session hands its event handlers to every client it makes), removed afterwards."""
    import boto3
    from botocore.awsrequest import AWSResponse
    from botocore.validate import validate_parameters

    model = boto3.client("sagemaker", region_name="us-east-1").meta.service_model
    validate_parameters(response, model.operation_model(operation).output_shape)
    calls: list[Any] = []

    def answer(params: dict[str, Any], **_: Any) -> Any:
        calls.append(json.loads(params["body"] or b"{}"))
        return AWSResponse("https://stand-in", 200, {}, None), response

    events = boto3._get_default_session().events
    events.register(f"before-call.sagemaker.{operation}", answer, unique_id="stand-in")
    try:
        yield calls
    finally:
        events.unregister(f"before-call.sagemaker.{operation}", unique_id="stand-in")


def test_a_retrained_client_is_redeployed_beside_the_other_clients(aws, tmp_path) -> None:
    """``submit --deploy``'s second half: a client's run that succeeded whole has its model (the
    training job's model.tar.gz, fetched from S3) served on the multi-model endpoint, whose
    other clients are kept (copied within S3); a client whose bar was missed is not deployed."""
    import argparse
    import datetime
    import io
    import tarfile

    import boto3

    from kubesage.cli.submit import _deploy_runs
    from kubesage.runs.record import RunRecord
    from kubesage.runs.submitted import update
    from kubesage.store import RunStore
    from kubesage.targets import get
    from kubesage.targets.sagemaker.executions import read
    from tests.test_serving import _model

    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="kubesage-artifacts-111122223333")
    s3.create_bucket(Bucket="results")
    acme, globex = _model(str(tmp_path / "acme"), 0), _model(str(tmp_path / "globex"), 1)
    before = json.loads(run_cli("deploy", "--model", f"acme={acme}", "--model", f"globex={globex}",
                                "--target", "sagemaker", "--name", "digits", "--config",
                                CONFIG[0], check=True).stdout)
    assert before["mode"] == "MultiModel" and before["kept"] == []

    # acme retrained on SageMaker; its training job's archive holds a folder per output
    run_id = submit("pipelines/per_client.py", "--clients", "acme")["executions"][0][
        "kubesage_run_id"]
    retrained = _model(str(tmp_path / "retrained"), 7)
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        tar.add(os.path.join(retrained, "model.pt"), "model/model.pt")
        tar.add(os.path.join(retrained, "model.pt"), "metrics/not-a-model.pt")
    s3.put_object(Bucket="results", Key="train/train-job/output/model.tar.gz",
                  Body=packed.getvalue())
    training = aws.create_training_job(
        TrainingJobName="train-job", RoleArn="arn:aws:iam::111122223333:role/kubesage-sagemaker",
        AlgorithmSpecification={"TrainingImage": "img", "TrainingInputMode": "File"},
        OutputDataConfig={"S3OutputPath": "s3://results/train"},
        ResourceConfig={"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        StoppingCondition={"MaxRuntimeInSeconds": 3600})
    store = RunStore(yaml.safe_load(open(os.path.join(os.path.dirname(CONFIG[0]),
                                                      "local.yaml")))["store"])
    record = store.get(run_id)
    now = datetime.datetime.now(datetime.UTC)
    stand_in(aws, "ListPipelineExecutionSteps", {"PipelineExecutionSteps": [
        {"StepName": s.name, "StepStatus": "Succeeded", "StartTime": now, "EndTime": now,
         **({"Metadata": {"TrainingJob": {"Arn": training["TrainingJobArn"]}}}
            if s.name == "train" else {})} for s in record.steps]})
    assert update(record, read(aws, record, s3), lambda _: None)
    store.save(record)
    missed = RunRecord.from_dict(record.to_dict())  # a client whose evaluation missed the bar
    missed.run_id, missed.remote = missed.run_id + "-x", {**missed.remote, "client": "initech"}
    missed.step("register").status = "skipped"

    with stand_in_for_new_clients("UpdateEndpoint", {"EndpointArn": "arn:aws:sagemaker:us-east-1:"
                                  "123456789012:endpoint/digits"}) as updated:
        done = _deploy_runs(get("sagemaker").workspace(CONFIG[0]), get("sagemaker"),
                            [record, missed], argparse.Namespace(
                                deploy="digits", config=CONFIG[0], clients="acme,initech"))
    assert done["deployed"] == ["acme"] and done["kept"] == ["globex"]
    assert "register did not run (a condition did not hold)" in done["not_deployed"]["initech"]
    assert updated == [{"EndpointName": "digits", "EndpointConfigName": done["endpoint_config"]}]

    def member(uri: str, name: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            found = tar.extractfile(name)
            assert found is not None
            return found.read()

    # acme serves the retrained model (the archive's model folder, repacked); globex is as before
    assert member(done["models"]["acme"], "model.pt") == open(f"{retrained}/model.pt", "rb").read()
    assert member(done["models"]["globex"], "model.pt") == member(before["models"]["globex"],
                                                                  "model.pt")
    prefix = aws.describe_model(ModelName=done["model"])["PrimaryContainer"]["ModelDataUrl"]
    assert all(uri.startswith(prefix) for uri in done["models"].values())
    assert prefix != aws.describe_model(ModelName=before["model"])["PrimaryContainer"]["ModelDataUrl"]


def test_submit_deploy_waits_and_deploys_nothing_it_cannot_see_succeed(aws) -> None:
    """``submit --deploy`` waits for the runs; moto reports no step states, so no step is known
    to have succeeded (the bar may have been missed) and nothing is deployed: it says why."""
    result = submit("pipelines/per_client.py", "--clients", "acme", "--deploy", "digits")
    (execution,) = result["executions"]
    assert execution["status"] == "succeeded"  # it waited
    deployment = result["deployment"]
    assert deployment["deployed"] == [] and "did not run" in deployment["not_deployed"]["acme"]
    assert "not deployed: acme: run " in result["_stderr"]
    assert aws.list_endpoints()["Endpoints"] == []

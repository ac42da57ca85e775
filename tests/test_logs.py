"""A step's log from wherever it is (``Target.logs``, ``kubesage logs``): a local run's file and
its copy in the team's artifact store; a SageMaker job's CloudWatch streams (moto's logs service
in server mode); a Kubeflow pod's log through the Kubernetes API (the recording server that
stands in for the cluster, see ``tests/test_kfp_submit.py``)."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from kubesage.runs.logs import PAGE_BYTES, follow, read_file
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.store import RunStore
from kubesage.targets import base as targets
from tests.conftest import KUBESAGE, REPO, run_cli, write_config
from tests.servers import Moto


def _config(tmp_path, fsx_root: str) -> str:
    return write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"),
                        mlflow_autolog=False)


def _run(config: str, pipeline: str, *extra: str) -> dict:
    proc = run_cli("run", pipeline, "--runner", "subprocess", "--config", config, "--json", *extra)
    assert proc.stdout, proc.stderr
    return json.loads(proc.stdout)


def test_a_local_steps_log_through_the_cli(tmp_path, fsx_root: str) -> None:
    config = _config(tmp_path, fsx_root)
    record = _run(config, "tests/pipelines/probes.py:fan-out")
    one = run_cli("logs", record["run_id"][:-2], "per-client[1]", "--config", config)
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip().endswith("probe: b")
    every = run_cli("logs", record["run_id"], "--config", config)
    assert "==> probe <==" in every.stdout and "==> per-client[2] <==" in every.stdout
    assert every.stdout.index("probe: a") < every.stdout.index("probe: c")
    missing = run_cli("logs", record["run_id"], "nope", "--config", config)
    assert missing.returncode == 2 and "has no step 'nope'" in missing.stderr


def test_follow_prints_until_the_step_ends(tmp_path, fsx_root: str) -> None:
    """``--follow`` on a running step: what it writes later arrives, and the command ends by
    itself when the step has ended."""
    config = _config(tmp_path, fsx_root)
    env = {**os.environ, "PYTHONPATH": REPO}
    run = subprocess.Popen([*KUBESAGE, "run", "tests/pipelines/probes.py:chain", "--runner",
                            "subprocess", "--config", config, "--param", "seconds=2"],
                           cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True)
    store = RunStore(str(tmp_path / "store"))
    deadline = time.time() + 60
    while not store.list(limit=1) and time.time() < deadline:
        time.sleep(0.2)
    run_id = store.list(limit=1)[0].run_id
    followed = subprocess.run([*KUBESAGE, "logs", run_id, "probe-3", "--follow", "--config",
                               config], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)
    assert run.wait(timeout=120) == 0, run.stderr.read() if run.stderr else ""
    assert followed.returncode == 0, followed.stderr
    assert followed.stdout.strip() == "probe: 2"
    assert store.get(run_id).step("probe-3").status == "succeeded"


def test_log_pages_cut_at_lines_and_continue(tmp_path) -> None:
    path = tmp_path / "log.txt"
    line = "x" * 99 + "\n"
    path.write_text(line * (PAGE_BYTES // 100 + 50))
    first = read_file(str(path), "")
    assert first.more and first.text.endswith("\n") and len(first.text) <= PAGE_BYTES
    second = read_file(str(path), first.cursor)
    assert not second.more and first.text + second.text == path.read_text()
    assert read_file(str(tmp_path / "absent"), "").text == ""


def _submitted(target: str, remote: dict, step_remote: dict) -> tuple[RunRecord, StepRecord]:
    record = RunRecord("sub-1", "p", "", "h", "service", target=target, status="running",
                       started=time.time(), remote=remote)
    step = StepRecord("train", "train", "train", "1.0.0", "img", status="running",
                      remote=step_remote)
    record.steps = [step]
    return record, step


@pytest.mark.server
def test_a_sagemaker_jobs_log_from_cloudwatch(moto: Moto, monkeypatch, tmp_path) -> None:
    import boto3

    for key, value in moto.environment().items():
        monkeypatch.setenv(key, value)
    logs = boto3.client("logs", region_name="us-east-1")
    group = "/aws/sagemaker/TrainingJobs"
    logs.create_log_group(logGroupName=group)
    for host in ("algo-1-1700000000", "algo-2-1700000000"):
        logs.create_log_stream(logGroupName=group, logStreamName=f"train-abc/{host}")
    logs.create_log_stream(logGroupName=group, logStreamName="other-job/algo-1-1")
    clock = [int(time.time() * 1000)]

    def put(stream: str, *lines: str) -> None:
        events = []
        for line in lines:
            clock[0] += 1
            events.append({"timestamp": clock[0], "message": line})
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    put("train-abc/algo-1-1700000000", "epoch 1 loss 0.9", "epoch 2 loss 0.5")
    put("train-abc/algo-2-1700000000", "rank 1 ready")
    put("other-job/algo-1-1", "not ours")
    record, step = _submitted("sagemaker", {"arn": "arn:x", "region": "us-east-1"},
                              {"kind": "TrainingJob",
                               "job": "arn:aws:sagemaker:us-east-1:123456789012:training-job/train-abc"})
    target = targets.get("sagemaker")
    ws = targets.get("local").workspace(_bare_config(tmp_path))
    first = target.logs(record, step, ws)
    assert first.text.splitlines() == ["[algo-1-1700000000] epoch 1 loss 0.9",
                                       "[algo-1-1700000000] epoch 2 loss 0.5",
                                       "[algo-2-1700000000] rank 1 ready"]
    assert target.logs(record, step, ws, first.cursor).text == ""  # nothing new
    put("train-abc/algo-1-1700000000", "epoch 3 loss 0.2")
    assert target.logs(record, step, ws, first.cursor).text == "[algo-1-1700000000] epoch 3 loss 0.2\n"
    step.remote = {"kind": "ProcessingJob", "job": "arn:aws:sagemaker:us-east-1:1:processing-job/p"}
    assert target.logs(record, step, ws).text == ""  # no group yet: nothing written yet


def _bare_config(tmp_path) -> str:
    path = tmp_path / "bare.yaml"
    path.write_text(f"store: {tmp_path / 'bare-store'}\n")
    return str(path)


def test_a_kubeflow_pods_log_through_the_kubernetes_api(tmp_path, monkeypatch) -> None:
    from tests.test_kfp_submit import KfpApiRecorder

    with KfpApiRecorder() as api:
        api.pod_logs["run-1-train-executor"] = "loading data\nepoch 1 loss 0.8\n"
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "test",
            "clusters": [{"name": "c", "cluster": {"server": api.url}}],
            "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": {"token": "k8s-token"}}]}))
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        record, step = _submitted("kfp", {"run_id": "run-1", "host": api.url,
                                          "namespace": "team-a"},
                                  {"pod": "run-1-train-executor"})
        ws = targets.get("local").workspace(_bare_config(tmp_path))
        target = targets.get("kfp")
        first = target.logs(record, step, ws)
        assert first.text == "loading data\nepoch 1 loss 0.8\n"
        api.pod_logs["run-1-train-executor"] += "epoch 2 loss 0.4\n"
        assert target.logs(record, step, ws, first.cursor).text == "epoch 2 loss 0.4\n"
        asked = [r for r in api.requests if r["path"].endswith("/log")]
        assert asked[0]["path"] == "/api/v1/namespaces/team-a/pods/run-1-train-executor/log"
        assert asked[0]["query"]["container"] == ["main"]
        assert asked[0]["auth"] == "Bearer k8s-token"
        step.remote = {"pod": "not-started-yet"}
        assert target.logs(record, step, ws).text == ""


def test_refresh_keeps_each_kubeflow_tasks_pod(tmp_path) -> None:
    """The run's tasks name their executor pods; reading the run keeps them on the steps."""
    from kubesage.targets.kfp.runs import api_client, read
    from tests.test_kfp_submit import KfpApiRecorder

    with KfpApiRecorder(tasks={"train": ("RUNNING",)}) as api:
        api.runs["run-1"] = {"run_id": "run-1", "state": "RUNNING"}
        record, _ = _submitted("kfp", {"run_id": "run-1", "host": api.url, "namespace": "ns"}, {})
        state = read(api_client(record), record)
    assert [s.remote for s in state.steps] == [{"pod": "run-1-train-executor"}]


def test_follow_reads_the_last_page_after_the_step_ended() -> None:
    """A step that ends between two reads: what it wrote last is still read."""
    texts = iter(["a\n", "b\n", ""])
    states = iter(["running", "succeeded", "succeeded"])

    def current() -> RunRecord:
        record = RunRecord("r", "p", "", "h", "docker", status="running")
        record.steps = [StepRecord("s", "s", "c", "1", "i", status=next(states))]
        return record

    def read(record: RunRecord, step: StepRecord, cursor: str):  # type: ignore[no-untyped-def]
        from kubesage.runs.logs import LogPage

        return LogPage(next(texts), cursor + "x")

    assert "".join(follow(read, current, "s", keep_following=True, poll_s=0.01)) == "a\nb\n"

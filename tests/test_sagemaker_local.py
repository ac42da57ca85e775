"""``kubesage run --target sagemaker``: the compiled definition JSON runs in Docker, locally.

Needs the Docker engine and the kubesage/torch image (make setup). The reference pipeline must
give the same metrics as kubesage's own local runner.
"""

from __future__ import annotations

import glob
import io
import os
import secrets
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from kubesage.config.local import load_local_config
from kubesage.project.loader import load_pipeline
from kubesage.store import RunStore
from kubesage.targets import RunOptions
from kubesage.targets.local.runner import runner_for
from kubesage.targets.sagemaker import TARGET
from tests.conftest import REPO, predictions_sha256
from tests.sagemaker_fixtures import UNFUSED, write_sagemaker_config

SCORES = {"train": ("train_loss", "train_accuracy"), "evaluate": ("accuracy",)}


@pytest.fixture(scope="module")
def image_tag(docker_client: Any) -> Iterator[str]:
    """This module's own tag of kubesage/torch:latest: a rebuild by someone else on the same
    engine mid-test must not change the image (and the cache keys) under these tests."""
    tag = f"sagemaker-test-{secrets.token_hex(3)}"
    docker_client.images.get("kubesage/torch:latest").tag("kubesage/torch", tag)
    yield tag
    docker_client.images.remove(f"kubesage/torch:{tag}", noprune=True)
    for image in docker_client.images.list("kubesage/serve"):  # tagged for a batch transform
        if f"kubesage/serve:{tag}" in image.tags:
            docker_client.images.remove(f"kubesage/serve:{tag}", noprune=True)


@pytest.fixture
def configs(tmp_path, fsx_root: str, image_tag: str) -> dict[str, str]:
    """A SageMaker target config whose local config mounts the sample data and a fresh store
    (fusion: auto, the example config's; ``unfused``: the same with fusion: off)."""
    target = write_sagemaker_config(str(tmp_path), fsx=fsx_root, store=str(tmp_path / "store"),
                                    image_tag=image_tag)
    unfused = tmp_path / "unfused"
    unfused.mkdir()
    write_sagemaker_config(str(unfused), fsx=fsx_root, store=str(tmp_path / "store"),
                           image_tag=image_tag, **UNFUSED)
    return {"sagemaker": target, "local": str(tmp_path / "local.yaml"),
            "store": str(tmp_path / "store"), "unfused": str(unfused / "sagemaker.yaml")}


def run_sagemaker(ref: str, config: str, **params: str) -> dict[str, Any]:
    """``kubesage run REF --target sagemaker`` in this process: the record and the log."""
    pipeline = load_pipeline(ref)[0].build()
    log = io.StringIO()
    record = TARGET.run(pipeline, RunOptions(params=dict(params), config=config,
                                             pipeline_file=ref.partition(":")[0], log=log)).to_dict()
    record["_stderr"] = log.getvalue()
    return record


def scores(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    return {step: {m: metrics[step][m] for m in names} for step, names in SCORES.items()}


def local_runner_record(ref: str, local_config: str, **params: str) -> dict[str, Any]:
    pipeline = load_pipeline(ref)[0].build()
    runner = runner_for("docker", load_local_config(local_config), REPO, log=io.StringIO())
    for _ in range(3):  # other tests on this shared engine may kill "train" containers (137)
        record = runner.run(pipeline, RunOptions(params=dict(params),
                                                 pipeline_file=ref.partition(":")[0]))
        if record.status == "succeeded" or "exit code 137" not in record.step("train").error:
            break
    assert record.status == "succeeded", [(s.name, s.error) for s in record.steps]
    return record.to_dict()


@pytest.mark.docker
def test_reference_pipeline_runs_locally_like_the_local_runner(configs) -> None:
    record = run_sagemaker("pipelines/image_classification.py", configs["sagemaker"])
    assert record["target"] == "sagemaker" and record["status"] == "succeeded", record["_stderr"]
    status = {s["name"]: s["status"] for s in record["steps"]}
    # the plan's steps, as on every path (the ConditionStep and its FailStep are SageMaker's own)
    assert status == {"preprocess": "succeeded", "train": "succeeded", "evaluate": "succeeded",
                      "register": "succeeded", "predict": "succeeded", "postprocess": "succeeded"}
    # fused (the example config's fusion: auto): preprocess, train and evaluate in one training
    # job (preprocess reads the FSx channel there), postprocess in predict's collecting job
    assert "preprocess: 1797 images in 10 classes from /opt/ml/input/data/fsx/digits" in (
        record["_stderr"])
    jobs = {s["name"]: s["job"] for s in record["steps"]}
    assert jobs == {"preprocess": "preprocess-to-evaluate", "train": "preprocess-to-evaluate",
                    "evaluate": "preprocess-to-evaluate", "register": "",
                    "predict": "predict-to-postprocess", "postprocess": "predict-to-postprocess"}
    # predict ran as SageMaker batch inference: its requests, a model in the serving image, a
    # batch transform job that POSTed them to the serving container, then its collect half
    for part in ("preprocess-to-evaluate (Training)", "predict-requests (Processing)",
                 "predict-model (Model)", "predict-transform (Transform)",
                 "predict-to-postprocess (Processing)"):
        assert f"> {part} started" in record["_stderr"]
    assert "predict-transform: 1 object(s) in 1 request(s)" in record["_stderr"]
    local = local_runner_record("pipelines/image_classification.py", configs["local"])
    assert scores(record["metrics"]) == scores(local["metrics"])
    # the same model on the same images: the same predictions, byte for byte (the batch
    # transform's answers included)
    assert predictions_sha256(record) == predictions_sha256(local)
    assert record["metrics"]["postprocess"] == local["metrics"]["postprocess"]
    assert record["metrics"]["evaluate"]["accuracy"] >= 0.9
    register = next(s for s in record["steps"] if s["name"] == "register")
    assert register["returns"]["model_package_arn"].endswith(":model-package/digits-classifier/1")
    registered = glob.glob(os.path.join(configs["store"], "sagemaker", "model-registry",
                                        "digits-classifier", "1.json"))
    assert registered
    listed = RunStore(configs["store"]).list()
    assert any(r.run_id == record["run_id"] and r.target == "sagemaker" for r in listed)

    again = run_sagemaker("pipelines/image_classification.py", configs["sagemaker"])
    cached = {s["name"]: s["cached"] for s in again["steps"]}
    assert cached["preprocess"] and cached["train"] and cached["evaluate"]
    assert scores(again["metrics"]) == scores(record["metrics"])


@pytest.mark.docker
def test_each_client_predicts_through_its_own_batch_transform(configs) -> None:
    """The per-client fan-out: one execution per client, each with its own model and batch
    transform job; each client's predictions are the local runner's, byte for byte."""
    params = {"clients": '["client-a", "client-b"]', "threshold": "0.5"}
    record = run_sagemaker("pipelines/per_client.py", configs["sagemaker"], **params)
    assert record["status"] == "succeeded", record["_stderr"][-3000:]
    assert record["_stderr"].count("predict-transform: 1 object(s) in 1 request(s)") == 2
    local = local_runner_record("pipelines/per_client.py", configs["local"], **params)
    clients = sorted(s["name"] for s in record["steps"] if s["task"] == "predict")
    assert clients == ["predict[0]", "predict[1]"]
    for name in clients:
        assert predictions_sha256(record, name) == predictions_sha256(local, name)


@pytest.mark.docker
def test_missed_bar_runs_the_fail_step(configs) -> None:
    record = run_sagemaker("pipelines/image_classification.py", configs["sagemaker"],
                           epochs="1", threshold="0.999")
    assert record["status"] == "failed"
    status = {s["name"]: s["status"] for s in record["steps"]}
    assert status["register"] == "skipped" and status["condition-1-not-met"] == "failed"
    fail = next(s for s in record["steps"] if s["name"] == "condition-1-not-met")
    assert "Fail step: condition output 'output' of task 'evaluate' >= pipeline parameter " \
           "'threshold' does not hold" in fail["error"]


@pytest.mark.docker
def test_multi_node_training_on_a_private_network(configs) -> None:
    ref = "tests/pipelines/sagemaker_pipelines.py:multi-node"
    pipeline = load_pipeline(ref)[0].build()
    log = io.StringIO()
    record = TARGET.run(pipeline, RunOptions(config=configs["sagemaker"],
                                             pipeline_file=ref.partition(":")[0], log=log))
    assert record.status == "succeeded", log.getvalue()[-3000:]
    text = log.getvalue()
    assert "algo-1: train: rank 0 of 2 on algo-1" in text
    assert "algo-2: train: rank 1 of 2 on algo-2" in text
    assert scores(record.metrics) == scores(local_runner_record(ref, configs["local"])["metrics"])


@pytest.mark.docker
def test_spot_interruption_resumes_from_checkpoints(configs, docker_client) -> None:
    ref = "tests/pipelines/sagemaker_pipelines.py:resumable"
    pipeline = load_pipeline(ref)[0].build()
    log = io.StringIO()
    killed: list[str] = []

    def reclaim_once() -> None:  # what a spot reclaim looks like to the container: SIGKILL
        deadline = time.time() + 600
        pattern = os.path.join(configs["store"], "sagemaker", "s3", "**", "checkpoints", "**",
                               "ckpt-*.pt")
        while time.time() < deadline and not glob.glob(pattern, recursive=True):
            time.sleep(0.2)
        for c in docker_client.containers.list(filters={"label": "kubesage.step"}):
            if c.labels["kubesage.step"] not in ("train", "preprocess-to-train"):
                continue  # the training step, alone or fused with preprocess
            binds = " ".join(c.attrs["HostConfig"].get("Binds") or [])
            if c.labels.get("kubesage.run", "").startswith("resumable-") and \
                    configs["store"] in binds:  # this test's job, not another run's
                c.kill()
                killed.append(c.name)

    watcher = threading.Thread(target=reclaim_once, daemon=True)
    watcher.start()
    record = TARGET.run(pipeline, RunOptions(config=configs["sagemaker"],
                                             pipeline_file=ref.partition(":")[0], log=log))
    watcher.join(timeout=5)
    text = log.getvalue()
    assert killed, text[-2000:]
    assert record.status == "succeeded", text[-3000:]
    assert record.step("train").attempts == 2
    assert "spot interruption (host killed); resuming from its checkpoints" in text
    # fused with preprocess: the restarted job skips the finished preprocess (kept with the
    # checkpoints) and train resumes from its own checkpoint folder
    assert record.step("train").job == "preprocess-to-train"
    assert "kubesage: preprocess done already (kept with the job's checkpoints)" in text
    assert "train: resumed from /opt/ml/checkpoints/train/ckpt-" in text
    # resumed training ends where uninterrupted training ends (deterministic on CPU)
    expected = local_runner_record(ref, configs["local"])["metrics"]
    assert record.metrics["train"]["train_loss"] == pytest.approx(expected["train"]["train_loss"])


@pytest.mark.docker
def test_fan_out_runs_one_execution_per_client(configs) -> None:
    ref = "tests/pipelines/sagemaker_pipelines.py:clients-probe"
    record = run_sagemaker(ref, configs["sagemaker"], clients='["north","south"]')
    assert record["status"] == "succeeded", record["_stderr"]
    returns = {s["name"]: s["returns"].get("output") for s in record["steps"]}
    # the plan's names; a step outside the loop runs in every execution (probe@1: the second)
    assert returns == {"probe": "hello", "per-client[0]": "north",
                       "probe@1": "hello", "per-client[1]": "south"}


@pytest.mark.docker
def test_fsx_channel_is_a_read_only_bind_mount(tmp_path, fsx_root, image_tag) -> None:
    """A hint makes preprocess a training job: it reads the FSx channel, its output travels
    to train inside model.tar.gz."""
    config = write_sagemaker_config(str(tmp_path), fsx=fsx_root, store=str(tmp_path / "store"),
                                    image_tag=image_tag,
                                    components={"preprocess": {"kind": "training"}})
    record = run_sagemaker("tests/pipelines/sagemaker_pipelines.py:resumable", config,
                           epochs="1", checkpoint_every="0")
    assert record["status"] == "succeeded", record["_stderr"][-3000:]
    text = record["_stderr"]
    assert "> preprocess (Training) started" in text
    assert "preprocess: 1797 images in 10 classes from /opt/ml/input/data/fsx/digits" in text
    assert record["metrics"]["train"]["train_loss"] > 0
    preprocess = next(s for s in record["steps"] if s["name"] == "preprocess")
    # its output artifact, unpacked from the job's model.tar.gz (nothing else in the folder)
    assert preprocess["outputs"]["data"]["uri"].endswith("/output/model.tar.gz#data")
    folder = preprocess["outputs"]["data"]["path"]
    assert os.path.isdir(folder) and not any(f.startswith(".kubesage") for f in os.listdir(folder))
    assert preprocess["outputs"]["data"]["metadata"]["classes"] == 10


def test_local_s3_never_writes_into_a_data_mount_folder(tmp_path) -> None:
    from kubesage.dsl.errors import KubesageError
    from kubesage.targets.sagemaker.local_s3 import LocalS3

    data = tmp_path / "fsx"
    (data / "digits").mkdir(parents=True)
    (data / "digits" / "keep.png").write_bytes(b"x")
    s3 = LocalS3(str(tmp_path / "s3"), {"s3://datasets/raw/": str(data)})
    assert s3.path("s3://datasets/raw/digits/keep.png") == str(data / "digits" / "keep.png")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(KubesageError, match=r"inside the data repository s3://datasets/raw/"):
        s3.put_folder(str(out), "s3://datasets/raw/digits")
    assert (data / "digits" / "keep.png").read_bytes() == b"x"
    assert s3.put_folder(str(out), "s3://bucket/run/out") == str(tmp_path / "s3" / "bucket" / "run" / "out")


@pytest.mark.docker
def test_identical_executions_hit_the_cache_and_changes_miss(tmp_path, image_tag) -> None:
    """Processing and training steps are cache hits when nothing that decides them changed
    (the training's checkpoint location included); a changed parameter or input misses."""
    from kubesage.project.sample_data import write_digits

    fsx = tmp_path / "fsx"
    fsx.mkdir(mode=0o755)
    write_digits(str(fsx))
    config = write_sagemaker_config(str(tmp_path), fsx=str(fsx), store=str(tmp_path / "store"),
                                    image_tag=image_tag, **UNFUSED)  # each step its own key
    ref = "tests/pipelines/sagemaker_pipelines.py:resumable"

    def run(**params: str) -> tuple[dict[str, bool], dict[str, Any]]:
        record = run_sagemaker(ref, config, checkpoint_every="0", **params)
        assert record["status"] == "succeeded", record["_stderr"][-3000:]
        return {s["name"]: s["cached"] for s in record["steps"]}, record["metrics"]

    cached, metrics = run(epochs="1")
    assert cached == {"preprocess": False, "train": False}
    cached, again = run(epochs="1")
    assert cached == {"preprocess": True, "train": True}
    assert again["train"] == metrics["train"]
    cached, _ = run(epochs="2")  # a parameter of train only
    assert cached == {"preprocess": True, "train": False}
    rewritten = next(p for p in sorted(fsx.rglob("*")) if p.is_file())  # a data mount's file
    os.utime(rewritten, ns=(rewritten.stat().st_atime_ns, rewritten.stat().st_mtime_ns + 10**9))
    cached, _ = run(epochs="1")  # preprocess runs again, so train reads another job's output
    assert cached == {"preprocess": False, "train": False}


def test_cache_key_is_the_documented_attributes_plus_image_and_input_content(tmp_path) -> None:
    from kubesage.targets.sagemaker.local_cache import cache_key
    from kubesage.targets.sagemaker.local_s3 import LocalS3

    s3 = LocalS3(str(tmp_path / "s3"))
    uri = "s3://bucket/pipeline/exec-1/preprocess/data"
    os.makedirs(s3.path(uri))
    shard = os.path.join(s3.path(uri), "train.pt")
    with open(shard, "wb") as f:
        f.write(b"v1")
    step = {"Type": "Training", "Name": "train"}
    args = {
        "AlgorithmSpecification": {"TrainingImage": "repo/torch:code-1"},
        "CheckpointConfig": {"S3Uri": "s3://bucket/pipeline/checkpoints/train/abc"},
        "HyperParameters": {"epochs": "2"},
        "InputDataConfig": [{"ChannelName": "data",
                             "DataSource": {"S3DataSource": {"S3Uri": uri}}}],
        "OutputDataConfig": {"S3OutputPath": "s3://bucket/pipeline/exec-1/train"},
        "ResourceConfig": {"InstanceType": "ml.g5.2xlarge", "InstanceCount": 1},
    }

    def key(changes: dict[str, Any], image_id: str = "sha256:1") -> str:
        return cache_key(step, {**args, **changes}, image_id, s3, lambda fs: "")

    first = key({})
    # where it writes and what it runs on are not in SageMaker's key of a training step
    assert key({"OutputDataConfig": {"S3OutputPath": "s3://bucket/pipeline/exec-2/train"},
                "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}}) == first
    assert key({"HyperParameters": {"epochs": "3"}}) != first
    assert key({"CheckpointConfig": {"S3Uri": "s3://bucket/pipeline/checkpoints/train/def"}}) != first
    assert key({}, image_id="sha256:2") != first  # locally: the image's ID, not its URI
    with open(shard, "wb") as f:
        f.write(b"v2")  # locally: the inputs' content, not their URIs
    assert key({}) != first


def test_cache_entries_expire_after_the_steps_duration(tmp_path) -> None:
    from kubesage.dsl.errors import KubesageError
    from kubesage.targets.sagemaker import local_cache
    from kubesage.targets.sagemaker.local_s3 import LocalS3

    store, s3 = RunStore(str(tmp_path / "store")), LocalS3(str(tmp_path / "s3"))
    local_cache.put(store, "k", {}, {}, {}, "run-1")
    assert local_cache.lookup(store, s3, "k", "P30D") is not None
    entry = store.cache_get("k")
    assert entry is not None
    assert store.cache_put("k", {**entry, "at": entry["at"] - 31 * 86400}, since=time.time())
    assert local_cache.lookup(store, s3, "k", "P30D") is None
    assert local_cache.lookup(store, s3, "k", "P1Y") is not None
    assert local_cache.expire_after_s("30dT5h") == 30 * 86400 + 5 * 3600
    with pytest.raises(KubesageError, match="not an ISO 8601 duration"):
        local_cache.expire_after_s("soon")


@pytest.mark.docker
def test_rerun_from_failed_reuses_the_jobs_that_succeeded(configs) -> None:
    """The definition executor continues a failed run: the first job's outputs are reused (the
    cache off, as every re-run has it), the failing job runs again."""
    from kubesage.runs.rerun import rerun
    from kubesage.targets import get

    # unfused: a fused processing job runs all its members again (it has no checkpoints)
    first = run_sagemaker(os.path.join(REPO, "tests/pipelines/probes.py:failing-late"),
                          configs["unfused"])
    assert first["status"] == "failed"
    steps = {s["name"]: s["status"] for s in first["steps"]}
    assert steps["probe"] == "succeeded" and steps["bad"] == "failed"
    log = io.StringIO()
    workspace = get("sagemaker").workspace(configs["sagemaker"])
    (again,) = rerun(workspace, first["run_id"], get, log=log, from_failed=True)
    assert again.target == "sagemaker" and again.rerun_of == first["run_id"]
    assert f"= probe reused (from {first['run_id']})" in log.getvalue()
    assert again.step("probe").cached
    assert again.step("probe").outputs == {k: v for k, v in next(
        s for s in first["steps"] if s["name"] == "probe")["outputs"].items()}
    assert again.step("bad").status == "failed" and not again.step("bad").cached  # ran again


def test_a_transform_job_splits_batches_and_names_its_objects_as_the_service_does(tmp_path) -> None:
    """SplitType=Line with MultiRecord packs whole lines up to MaxPayloadInMB; SingleRecord
    sends one line a request; no split sends the object whole. An S3Prefix selects every key
    that starts with it, named below the prefix's folder (its answers: <name>.out)."""
    from kubesage.targets.sagemaker.local_jobs import JobFailed, _batches, _objects

    lines = [b'{"b64": "%s"}' % (b"x" * 400_000) for _ in range(40)]  # 40 x 400 KB
    data = tmp_path / "in" / "requests.jsonl"
    data.parent.mkdir()
    data.write_bytes(b"\n".join(lines) + b"\n\n")
    (tmp_path / "in" / "requests.jsonl.extra").write_bytes(b"{}\n")
    (tmp_path / "in" / "other.jsonl").write_bytes(b"{}\n")
    args = {"TransformInput": {"SplitType": "Line"}, "BatchStrategy": "MultiRecord",
            "MaxPayloadInMB": 6}
    bodies = _batches(str(data), args)
    assert [len(b.split(b"\n")) for b in bodies] == [15, 15, 10]  # 15 x 400 KB fit in 6 MB
    assert b"\n".join(bodies).split(b"\n") == lines  # every line once, in order
    assert all(len(b) <= 6 * 1024 * 1024 for b in bodies)
    assert _batches(str(data), {**args, "BatchStrategy": "SingleRecord"}) == lines
    assert _batches(str(data), {"TransformInput": {}}) == [data.read_bytes()]
    big = tmp_path / "big.jsonl"
    big.write_bytes(b"x" * (1024 * 1024 + 1))
    with pytest.raises(JobFailed, match="a record of 1048577 bytes exceeds MaxPayloadInMB=1"):
        _batches(str(big), {**args, "MaxPayloadInMB": 1})
    assert [name for _, name in _objects(str(data))] == ["requests.jsonl", "requests.jsonl.extra"]
    assert [name for _, name in _objects(str(tmp_path / "in"))] == [
        "other.jsonl", "requests.jsonl", "requests.jsonl.extra"]
    assert _objects(str(tmp_path / "nothing" / "here")) == []

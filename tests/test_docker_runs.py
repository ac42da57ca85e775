"""End to end on a real Docker engine: the reference pipeline, caching, failures, Ctrl-C."""

from __future__ import annotations

import json
import os
import time
from typing import Any

import pytest

from tests.conftest import (
    containers_created,
    predictions_sha256,
    quality,
    run_cli,
    run_json,
    write_config,
)

pytestmark = pytest.mark.docker

REFERENCE = "pipelines/image_classification.py"


@pytest.fixture(scope="module")
def module_config(tmp_path_factory: pytest.TempPathFactory, fsx_root: str) -> str:
    d = tmp_path_factory.mktemp("docker")
    return write_config(str(d / "local.yaml"), fsx_root, str(d / "store"))


@pytest.fixture(scope="module")
def reference_runs(docker_client: Any, module_config: str) -> dict[str, Any]:
    """The reference pipeline run twice in Docker, with the containers each run created."""
    t0 = time.time()
    first = run_json("run", REFERENCE, "--config", module_config)
    t1 = time.time()
    second = run_json("run", REFERENCE, "--config", module_config)
    t2 = time.time()
    return {
        "first": first, "second": second,
        "first_containers": containers_created(docker_client, t0, t1, first["run_id"]),
        "second_containers": containers_created(docker_client, t1, t2, second["run_id"]),
    }


def test_reference_pipeline_runs_every_step_in_a_container(reference_runs: dict[str, Any]) -> None:
    first = reference_runs["first"]
    assert first["_returncode"] == 0, first["_stderr"]
    assert first["status"] == "succeeded" and first["runner"] == "docker"
    steps = {s["name"]: s for s in first["steps"]}
    assert list(steps) == ["preprocess", "train", "evaluate", "register", "predict", "postprocess"]
    assert all(s["status"] == "succeeded" and not s["cached"] for s in steps.values())
    assert sorted(reference_runs["first_containers"]) == sorted(steps)
    assert all(s["environment_id"].startswith("sha256:") for s in steps.values())
    assert first["metrics"]["evaluate"]["accuracy"] >= 0.90
    data = steps["preprocess"]["outputs"]["data"]
    assert len(data["sha256"]) == 64 and os.path.isfile(os.path.join(data["path"], "manifest.json"))
    card = os.path.join(steps["register"]["outputs"]["registered"]["path"], "model_card.json")
    with open(card) as f:
        card_doc = json.load(f)
    assert card_doc["metrics"]["accuracy"] == first["metrics"]["evaluate"]["accuracy"]
    assert card_doc["lineage"]["run_id"] == first["run_id"]
    # the demo ends with predictions of the validation split and their report
    predictions = steps["predict"]["outputs"]["predictions"]["path"]
    with open(os.path.join(predictions, "predictions.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == data["metadata"]["val"] and lines[0]["file"] == "val/000000"
    with open(os.path.join(steps["postprocess"]["outputs"]["report"]["path"], "report.json")) as f:
        report = json.load(f)
    assert report["count"] == len(lines) == report["labelled"]
    # the same model on the same images: predict's top class is evaluate's
    accuracy = first["metrics"]["evaluate"]["accuracy"]
    assert report["accuracy_raw"] == round(accuracy, 6) == first["metrics"]["postprocess"][
        "accuracy_raw"]


def test_registered_model_is_in_the_mlflow_registry(
    reference_runs: dict[str, Any], module_config: str
) -> None:
    from mlflow import MlflowClient

    from kubesage.config.local import load_local_config

    first = reference_runs["first"]
    register = next(s for s in first["steps"] if s["name"] == "register")
    assert register["returns"]["output"] == "digits-classifier/1"
    client = MlflowClient(load_local_config(module_config).tracking_uri)
    version = client.get_model_version("digits-classifier", "1")
    assert version.tags["kubesage.run_id"] == first["run_id"]
    run = client.get_run(version.run_id)
    assert run.data.metrics["accuracy"] == first["metrics"]["evaluate"]["accuracy"]
    files = {f.path for f in client.list_artifacts(version.run_id, "model")}
    assert "model/model.pt" in files and "model/model_card.json" not in files


def test_identical_rerun_is_fully_cached_and_starts_no_container(
    reference_runs: dict[str, Any],
) -> None:
    second = reference_runs["second"]
    assert second["status"] == "succeeded"
    assert [s["cached"] for s in second["steps"]] == [True] * 6
    assert reference_runs["second_containers"] == []
    assert second["metrics"] == reference_runs["first"]["metrics"]


def test_run_is_recorded(reference_runs: dict[str, Any], module_config: str) -> None:
    run_id = reference_runs["first"]["run_id"]
    shown = json.loads(run_cli("runs", "--config", module_config, "show", run_id, "--json",
                               check=True).stdout)
    assert shown["run_id"] == run_id and shown["metrics"] == reference_runs["first"]["metrics"]
    listed = run_cli("runs", "--config", module_config, "list", check=True).stdout
    assert run_id in listed and reference_runs["second"]["run_id"] in listed


def test_subprocess_runner_gives_the_same_metrics(
    reference_runs: dict[str, Any], tmp_path, fsx_root: str
) -> None:
    config = write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"))
    record = run_json("run", REFERENCE, "--runner", "subprocess", "--config", config)
    assert record["status"] == "succeeded" and record["runner"] == "subprocess"
    assert quality(record["metrics"]) == quality(reference_runs["first"]["metrics"])
    assert predictions_sha256(record) == predictions_sha256(reference_runs["first"])


def test_invalid_pipeline_fails_before_any_container(docker_client: Any, config_file: str) -> None:
    t0 = time.time()
    proc = run_cli("run", "tests/pipelines/invalid.py", "--config", config_file)
    assert proc.returncode == 2
    assert ("task 'evaluate' (component 'evaluate'): input 'data' expects a Dataset artifact but "
            "gets output 'model' of task 'train', a Model") in proc.stderr
    assert containers_created(docker_client, t0, time.time()) == []


def test_an_image_the_project_builds_is_built_when_missing(
    docker_client: Any, tmp_path, fsx_root: str
) -> None:
    config = write_config(str(tmp_path / "l.yaml"), fsx_root, str(tmp_path / "s"),
                          image_tag="built-on-demand")
    try:
        proc = run_cli("run", "tests/pipelines/probes.py:chain", "--config", config)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert "image kubesage/torch:built-on-demand is not built; building it" in proc.stderr
    finally:
        docker_client.images.remove("kubesage/torch:built-on-demand", noprune=True)


def test_a_missing_image_the_project_does_not_build_fails_before_any_container(
    docker_client: Any, config_file: str
) -> None:
    t0 = time.time()
    proc = run_cli("run", "tests/pipelines/probes.py:foreign", "--config", config_file)
    assert proc.returncode == 2
    assert "image elsewhere/not-built:1 is not built; run 'kubesage build'" in proc.stderr
    assert containers_created(docker_client, t0, time.time()) == []


def test_failing_step_in_docker_shows_its_log_and_fails_the_run(
    docker_client: Any, config_file: str
) -> None:
    record = run_json("run", "tests/pipelines/probes.py:failing", "--config", config_file)
    assert record["_returncode"] == 1 and record["status"] == "failed"
    bad = next(s for s in record["steps"] if s["name"] == "bad")
    assert bad["status"] == "failed" and bad["attempts"] == 2
    assert "failing on purpose with exit code 3" in record["_stderr"]  # the log tail is shown
    assert not any(n.startswith("result") for n in os.listdir(os.path.dirname(bad["log"])))


def _container_starts(client: Any, since: float, until: float, run_id: str) -> dict[str, float]:
    """Step -> when the engine started its container (seconds since the epoch)."""
    events = client.events(since=int(since) - 1, until=int(until) + 1, decode=True,
                           filters={"type": "container", "event": "start",
                                    "label": f"kubesage.run={run_id}"})
    return {ev["Actor"]["Attributes"]["kubesage.step"]: ev["timeNano"] / 1e9 for ev in events}


def test_steps_start_warm_while_their_upstream_runs(docker_client: Any, config_file: str) -> None:
    t0 = time.time()
    record = run_json("run", "tests/pipelines/probes.py:chain", "--config", config_file)
    assert record["status"] == "succeeded", record["_stderr"]
    steps = record["steps"]
    assert [s["returns"]["output"] for s in steps] == ["0", "1", "2"]
    starts = _container_starts(docker_client, t0, time.time(), record["run_id"])
    assert sorted(starts) == sorted(s["name"] for s in steps)
    for upstream, step in zip(steps[:-1], steps[1:], strict=True):  # each probe sleeps 1 s
        assert starts[step["name"]] < upstream["ended"], (step["name"], starts, upstream)
    label = {"label": f"kubesage.run={record['run_id']}"}
    assert docker_client.containers.list(all=True, filters=label) == []


def test_warm_containers_of_steps_that_never_run_are_removed(
    docker_client: Any, config_file: str
) -> None:
    failed = run_json("run", "tests/pipelines/probes.py:failing", "--config", config_file)
    fanned = run_json("run", "tests/pipelines/probes.py:fan_out", "--config", config_file,
                      "--no-cache")
    assert {s["name"]: s["status"] for s in failed["steps"]}["after-bad"] == "not_run"
    assert {s["name"]: s["status"] for s in fanned["steps"]}["gated"] == "skipped"
    for record in (failed, fanned):
        label = {"label": f"kubesage.run={record['run_id']}"}
        assert docker_client.containers.list(all=True, filters=label) == []


def test_rerun_reproduces_the_reference_metrics_exactly(
    reference_runs: dict[str, Any], module_config: str
) -> None:
    first = reference_runs["first"]
    again = run_json("rerun", first["run_id"], "--config", module_config)
    assert again["status"] == "succeeded", again["_stderr"]
    assert again["rerun_of"] == first["run_id"] and again["images"] == first["images"]
    assert not any(s["cached"] for s in again["steps"])
    assert quality(again["metrics"]) == quality(first["metrics"])


@pytest.mark.docker
def test_a_reused_runner_records_the_image_a_tag_names_now(docker_client: Any, tmp_path,
                                                           fsx_root: str) -> None:
    """One runner, two runs, the image tag moved to another image in between: the second run
    records (and its cache key uses) the image the tag names now, not the one it named before."""
    import contextlib
    import io
    import tarfile

    from kubesage.config.local import LocalConfig
    from kubesage.project.loader import load_pipeline
    from kubesage.targets import RunOptions
    from kubesage.targets.local.runner import runner_for
    from tests.conftest import REPO

    repo, tag = "kubesage/torch", "reused-runner"
    first_image = docker_client.images.get("kubesage/torch:latest")
    first_image.tag(repo, tag)
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:  # the same code, another image ID
        text = f"FROM {first_image.id}\nLABEL io.kubesage.test=reused-runner\n".encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
    context.seek(0)
    second_image = docker_client.images.build(fileobj=context, custom_context=True, rm=True)[0]
    assert second_image.id != first_image.id
    config = LocalConfig(mounts={"fsx": fsx_root}, store=str(tmp_path / "store"), image_tag=tag,
                         warm_start=False)
    runner = runner_for("docker", config, REPO, log=io.StringIO())
    pipeline = load_pipeline(os.path.join(REPO, "tests/pipelines/probes.py:chain"))[0].build()
    try:
        before = runner.run(pipeline, RunOptions(params={"seconds": 0.0}))
        second_image.tag(repo, tag)
        after = runner.run(pipeline, RunOptions(params={"seconds": 0.0}, use_cache=False))
    finally:
        docker_client.images.remove(f"{repo}:{tag}", noprune=True)
        with contextlib.suppress(Exception):
            docker_client.images.remove(second_image.id)
    assert before.status == after.status == "succeeded"
    assert before.images[repo] == first_image.id
    assert after.images[repo] == second_image.id
    assert {s.environment_id for s in after.steps} == {second_image.id}

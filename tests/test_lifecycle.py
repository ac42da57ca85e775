"""One run lifecycle on every target: stop signals, abandoned runs, per-run state, re-runs.

On a real Docker engine (the images of ``make setup``); signals go to a real ``kubesage run``
process started in its own process group, as a CI system, ``timeout`` or a terminal would.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from typing import Any

import pytest
import yaml

from kubesage.config.local import LocalConfig
from kubesage.project.loader import load_pipeline
from kubesage.runs.record import RunRecord
from kubesage.runs.sweep import alive, owner, sweep
from kubesage.store import RunStore
from kubesage.targets import RunOptions
from kubesage.targets.local.runner import runner_for
from tests.conftest import KUBESAGE, REPO, run_cli, run_json, write_config
from tests.sagemaker_fixtures import write_sagemaker_config

PROBES = "tests/pipelines/probes.py"


def kfp_config(folder: str, local_config: str) -> str:
    with open(os.path.join(REPO, "config", "kfp.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["local"] = {"config": local_config}
    path = os.path.join(folder, "kfp.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def target_args(target: str, tmp_path: Any, fsx_root: str) -> tuple[list[str], str]:
    """(``--target ... --config ...``, the local config holding the run store) for ``target``."""
    local = write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"))
    if target == "kfp":
        return ["--target", "kfp", "--config", kfp_config(str(tmp_path), local)], local
    if target == "sagemaker":
        config = write_sagemaker_config(str(tmp_path), fsx=fsx_root, store=str(tmp_path / "store"),
                                        conditions=None)  # unmet conditions skip, as elsewhere
        return ["--target", "sagemaker", "--config", config], str(tmp_path / "local.yaml")
    return ["--config", local], local


def start_run(*args: str) -> tuple[subprocess.Popen[str], str]:
    """``kubesage run ARGS`` in its own process group; its run ID (from its first line)."""
    proc = subprocess.Popen([*KUBESAGE, "run", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith("run "):  # "run <run_id>: ..."
            return proc, line.split()[1].rstrip(":")
    raise AssertionError(f"kubesage run printed no run ID: {proc.communicate()}")


def wait_for_containers(client: Any, run_id: str, timeout: float = 120) -> list[Any]:
    label = {"label": f"kubesage.run={run_id}"}
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = client.containers.list(filters=label)
        if found:
            return list(found)
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} never started a container")


def leftovers(client: Any, run_id: str) -> list[str]:
    label = {"label": f"kubesage.run={run_id}"}
    return ([c.name for c in client.containers.list(all=True, filters=label)]
            + [n.name for n in client.networks.list(filters=label)])


@pytest.mark.docker
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_stop_signals_cancel_the_run_and_remove_its_containers(
    signum: int, docker_client: Any, config_file: str
) -> None:
    proc, run_id = start_run(f"{PROBES}:slow", "--config", config_file)
    wait_for_containers(docker_client, run_id)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum, err
    assert f"run {run_id} cancelled; its containers were removed" in err
    assert leftovers(docker_client, run_id) == []
    shown = json.loads(run_cli("runs", "--config", config_file, "show", run_id, "--json").stdout)
    assert shown["status"] == "cancelled" and shown["steps"][0]["status"] == "cancelled"


@pytest.mark.docker
@pytest.mark.parametrize("target", ["kfp", "sagemaker"])
def test_sigterm_cancels_compiled_runs_too(target: str, docker_client: Any, tmp_path,
                                           fsx_root: str) -> None:
    args, local = target_args(target, tmp_path, fsx_root)
    proc, run_id = start_run(f"{PROBES}:slow", *args)
    wait_for_containers(docker_client, run_id)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, err
    assert leftovers(docker_client, run_id) == []
    shown = json.loads(run_cli("runs", "--config", local, "show", run_id, "--json").stdout)
    assert (shown["target"], shown["status"]) == (target, "cancelled")


@pytest.mark.docker
def test_a_killed_run_is_found_abandoned_and_its_containers_removed(
    docker_client: Any, config_file: str
) -> None:
    proc, run_id = start_run(f"{PROBES}:slow", "--config", config_file)
    wait_for_containers(docker_client, run_id)
    proc.send_signal(signal.SIGKILL)  # no chance to clean up
    proc.communicate(timeout=30)
    assert leftovers(docker_client, run_id), "its container outlives a SIGKILLed kubesage"
    listed = run_cli("runs", "--config", config_file, "list", "--json", check=True)
    assert f"run {run_id} was abandoned (its process is gone)" in listed.stderr
    assert {r["run_id"]: r["status"] for r in json.loads(listed.stdout)}[run_id] == "abandoned"
    assert leftovers(docker_client, run_id) == []
    shown = json.loads(run_cli("runs", "--config", config_file, "show", run_id, "--json").stdout)
    assert shown["steps"][0]["status"] == "abandoned"


def test_the_sweep_leaves_live_runs_alone(tmp_path) -> None:
    store = RunStore(str(tmp_path))
    mine = RunRecord("live", "p", "", "h", "docker", owner=owner())
    gone = RunRecord("gone", "p", "", "h", "docker", owner={**owner(), "start": "0"})
    elsewhere = RunRecord("far", "p", "", "h", "docker", owner={**owner(), "host": "other-host"})
    for record in (mine, gone, elsewhere):
        store.save(record)
    assert alive(mine.owner) and not alive(gone.owner)
    cleaned: list[str] = []
    assert sweep(store, clean_up=lambda record: cleaned.append(record.run_id) or 0) == ["gone"]
    assert [store.get(r).status for r in ("live", "gone", "far")] == ["running", "abandoned", "running"]
    assert cleaned == ["gone"], "only the abandoned run's leftovers are cleaned up"


def test_one_runner_runs_two_pipelines_at_once_and_again_after_a_cancel(
    local_config: LocalConfig
) -> None:
    runner = runner_for("subprocess", local_config, REPO, log=io.StringIO())
    chain = load_pipeline(os.path.join(REPO, f"{PROBES}:chain"))[0].build()
    fan_out = load_pipeline(os.path.join(REPO, f"{PROBES}:fan_out"))[0].build()
    results: dict[str, RunRecord] = {}

    def run(name: str, pipeline: Any, params: dict[str, Any]) -> None:
        results[name] = runner.run(pipeline, RunOptions(params=params))

    threads = [threading.Thread(target=run, args=("chain", chain, {"seconds": "0.5"})),
               threading.Thread(target=run, args=("fan-out", fan_out, {"clients": '["p", "q"]'}))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert {n: r.status for n, r in results.items()} == {"chain": "succeeded", "fan-out": "succeeded"}
    assert results["chain"].run_id != results["fan-out"].run_id
    assert [s.status for s in results["chain"].steps] == ["succeeded"] * 3
    assert {s.name: s.returns.get("output") for s in results["fan-out"].steps
            if s.task == "per-client"} == {"per-client[0]": "p", "per-client[1]": "q"}

    slow = load_pipeline(os.path.join(REPO, f"{PROBES}:slow"))[0].build()
    timer = threading.Timer(3.0, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        runner.run(slow)
    cancelled = RunStore(local_config.store).list(limit=1)[0]
    assert (cancelled.pipeline, cancelled.status) == ("slow", "cancelled")
    again = runner.run(chain, RunOptions(params={"seconds": "0"}))  # the same runner, reusable
    assert again.status == "succeeded"


@pytest.mark.docker
@pytest.mark.parametrize("target", ["kfp", "sagemaker"])
def test_rerun_works_on_the_target_the_run_ran_on(target: str, docker_client: Any, tmp_path,
                                                   fsx_root: str) -> None:
    args, local = target_args(target, tmp_path, fsx_root)
    first = run_json("run", f"{PROBES}:fan_out", *args, "--tag", "study=rerun",
                     "--param", 'clients=["x","y"]')
    assert first["status"] == "succeeded", first["_stderr"][-2000:]
    # the same lineage fields as a local run of the same pipeline
    local_run = run_json("run", f"{PROBES}:fan_out", "--config", local, "--runner", "subprocess",
                         "--param", 'clients=["x","y"]')
    for field in ("pipeline_hash", "source_sha256", "git", "parameters", "data"):
        assert first[field] == local_run[field], field
    assert first["tags"] == {"study": "rerun"} and first["compiled_sha256"] and first["config"]
    assert first["images"]["kubesage/torch"].startswith("sha256:")
    again = run_json("rerun", first["run_id"], "--config", local)
    assert again["status"] == "succeeded", again["_stderr"][-2000:]
    assert (again["target"], again["rerun_of"], again["tags"]) == (target, first["run_id"],
                                                                   {"study": "rerun"})
    assert again["images"] == first["images"] and again["pipeline_hash"] == first["pipeline_hash"]
    assert not any(s["cached"] for s in again["steps"])  # the cache is off in a re-run
    assert {s["name"]: s["returns"] for s in again["steps"]} == \
        {s["name"]: s["returns"] for s in first["steps"]}

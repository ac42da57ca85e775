"""The local runner with the subprocess executor: scheduling, caching, failures, fan-out."""

from __future__ import annotations

import io
import os

import pytest

from kubesage.config.local import ConfigError, LocalConfig, load_local_config
from kubesage.project.loader import load_pipeline
from kubesage.store import RunStore
from kubesage.targets import RunOptions
from kubesage.targets.local.runner import runner_for
from tests.conftest import REPO


def _runner(config: LocalConfig):
    return runner_for("subprocess", config, REPO, log=io.StringIO())


def _pipeline(ref: str):
    return load_pipeline(os.path.join(REPO, ref))[0].build()


def test_failing_step_fails_the_run_and_leaves_no_complete_artifact(local_config) -> None:
    record = _runner(local_config).run(_pipeline("tests/pipelines/probes.py:failing"))
    assert record.status == "failed"
    first, bad, after = (record.step(n) for n in ("probe", "bad", "after-bad"))
    assert first.status == "succeeded"
    assert bad.status == "failed" and bad.attempts == 2  # set_retries(1)
    assert "exit code 3" in bad.error and "failing on purpose" in bad.error
    assert after.status == "not_run"
    step_dir = os.path.dirname(bad.log)
    assert sorted(os.listdir(step_dir)) == ["log.txt", "task.json"]  # no result, no artifact
    assert os.path.isfile(os.path.join(first.outputs["result"]["path"], "message.txt"))
    stored = RunStore(local_config.store).get(record.run_id)
    assert stored.status == "failed" and stored.step("bad").error == bad.error


def test_fan_out_and_condition(local_config) -> None:
    record = _runner(local_config).run(_pipeline("tests/pipelines/probes.py:fan_out"),
                                       RunOptions(params={"clients": '["x", "y", "z"]'}))
    assert record.status == "succeeded"
    per_client = {s.name: s.returns["output"] for s in record.steps if s.task == "per-client"}
    assert per_client == {"per-client[0]": "x", "per-client[1]": "y", "per-client[2]": "z"}
    assert record.step("gated").status == "skipped"


def test_cache_reuses_unchanged_steps_only(local_config) -> None:
    pipe = _pipeline("tests/pipelines/probes.py:fan_out")
    first = _runner(local_config).run(pipe, RunOptions(params={"clients": '["x", "y"]'}))
    second = _runner(local_config).run(pipe, RunOptions(params={"clients": '["x", "q"]'}))
    cached = {s.name: s.cached for s in second.steps if s.status == "succeeded"}
    assert cached == {"probe": True, "per-client[0]": True, "per-client[1]": False, "score": True}
    assert second.step("per-client[1]").returns["output"] == "q"
    assert second.step("probe").outputs == first.step("probe").outputs


def test_missing_mount_in_config_is_named(tmp_path) -> None:
    config = LocalConfig(mounts={}, store=str(tmp_path / "s"), source="my.yaml")
    with pytest.raises(ConfigError, match=r"component 'preprocess' mounts 'fsx' at /fsx, but "
                       r"my.yaml has no 'mounts.fsx'"):
        _runner(config).run(_pipeline("pipelines/image_classification.py"))
    config.mounts["fsx"] = str(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=r"mounts.fsx in my.yaml: folder .*nowhere does not exist"):
        _runner(config).run(_pipeline("pipelines/image_classification.py"))


@pytest.mark.parametrize("text, message", [
    ("mounts: [a]\n", r"'mounts' must be a mapping, got \['a'\]; e.g. mounts: \{fsx: "),
    ("paralelism: 2\n", r"'paralelism' is not a known setting \(did you mean 'parallelism'\?\)"),
    ("parallelism: 0\n", r"'parallelism' must be >= 1"),
    ("parallelism: true\n", r"'parallelism' must be an integer, got True"),
    ("warm_start: 1\n", r"'warm_start' must be true or false, got 1"),
    ("store: [\n", r"not valid YAML"),
])
def test_config_errors_name_the_key(tmp_path, text: str, message: str) -> None:
    path = tmp_path / "local.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_local_config(str(path))


def test_a_warm_start_waits_for_its_task_file_then_runs_it(tmp_path) -> None:
    """``local --await``: wait, preload when told (a failing preload is reported, not fatal), run."""
    import json
    import subprocess
    import sys
    import time

    from kubesage.runtime.invoke import Invocation
    from kubesage.runtime.local import task_file

    task, result = str(tmp_path / "task.json"), str(tmp_path / "result.json")
    proc = subprocess.Popen(
        [sys.executable, "-m", "kubesage.runtime", "local", "--await", task, "no_such_module",
         "kubesage.testing.probes"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": REPO})
    time.sleep(1.0)
    assert proc.poll() is None, "it must wait for the task file"
    open(task + ".preload", "w").close()  # the runner's "you are next": import now
    time.sleep(0.5)
    doc = task_file("components.probe:probe",
                    Invocation({"message": "warm"}, {}, {"result": str(tmp_path / "out")}),
                    result, env={"KUBESAGE_STEP": "warm-step"})
    with open(task + ".tmp", "w") as f:
        json.dump(doc, f)
    os.replace(task + ".tmp", task)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "preloading no_such_module failed" in err
    with open(result) as f:
        assert json.load(f)["returns"] == {"output": "warm"}


def test_a_warm_start_gives_up_when_no_task_comes(tmp_path) -> None:
    from kubesage.runtime.local import await_task

    with pytest.raises(SystemExit) as stop:
        await_task(str(tmp_path / "never.json"), [], limit_s=0.05)
    assert stop.value.code == 3


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def test_a_run_leaves_the_process_umask_as_it_found_it(local_config) -> None:
    """Opening a store and running a pipeline change no process-wide state for good (as root,
    the run makes what it creates group-writable for the non-root steps, then restores)."""
    before = os.umask(0o027)
    try:
        RunStore(local_config.store)
        assert _umask() == 0o027
        record = _runner(local_config).run(_pipeline("tests/pipelines/probes.py:fan_out"))
        assert record.status == "succeeded"
        assert _umask() == 0o027
    finally:
        os.umask(before)


def test_shared_with_steps_restores_the_umask_after_the_last_of_overlapping_blocks() -> None:
    from kubesage.runs.step_user import shared_with_steps

    inside = 0o002 if os.getuid() == 0 else 0o022  # only root shares with the steps' user
    before = os.umask(0o022)
    try:
        with shared_with_steps():
            assert _umask() == inside
            with shared_with_steps():  # another run in another thread, say
                assert _umask() == inside
            assert _umask() == inside, "the first block still needs it"
        assert _umask() == 0o022
    finally:
        os.umask(before)

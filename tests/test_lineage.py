"""Lineage and re-run: what a run record knows of its origin, and exact re-runs."""

from __future__ import annotations

import io
import os
import shutil

import pytest

from kubesage.config.local import LocalConfig
from kubesage.project.loader import load_pipeline
from kubesage.runs.rerun import RerunError, rerun
from kubesage.store import RunStore
from kubesage.targets import RunOptions, Workspace, get
from kubesage.targets.local.runner import runner_for
from tests.conftest import REPO, run_cli, write_config

PIPELINE = '''
from components.probe import probe
from kubesage import pipeline


@pipeline(name="tiny")
def tiny(message: str = "hello") -> None:
    probe(message=message, seconds=0.0)
'''


def _run(config: LocalConfig, path: str, **kwargs):  # type: ignore[no-untyped-def]
    definition, path = load_pipeline(path)
    runner = runner_for("subprocess", config, REPO, log=io.StringIO())
    return runner.run(definition.build(), RunOptions(pipeline_file=path, **kwargs))


def _workspace(config: LocalConfig) -> Workspace:
    return Workspace(config, config, RunStore(config.store))


def test_record_carries_lineage(local_config: LocalConfig) -> None:
    record = _run(local_config, os.path.join(REPO, "tests/pipelines/probes.py:fan_out"),
                  tags={"team": "vision"})
    assert len(record.source_sha256) == 64 and record.tags == {"team": "vision"}
    assert len(record.git.get("commit", "")) == 40
    assert record.images["kubesage/torch"].startswith("code:")


def test_rerun_checks_pipeline_and_data(tmp_path, fsx_root: str) -> None:
    data = tmp_path / "fsx"
    shutil.copytree(os.path.join(fsx_root, "digits", "0"), data / "digits" / "0")
    pipe = tmp_path / "tiny.py"
    pipe.write_text(PIPELINE)
    config = LocalConfig(mounts={"fsx": str(data)}, store=str(tmp_path / "store"))
    first = _run(config, str(pipe))
    (again,) = rerun(_workspace(config), first.run_id, get, log=io.StringIO())
    assert again.status == "succeeded" and again.rerun_of == first.run_id
    assert not any(s.cached for s in again.steps)  # executed again, not taken from the cache
    assert again.step("probe").returns == first.step("probe").returns

    pipe.write_text(PIPELINE.replace('"hello"', '"changed"'))
    with pytest.raises(RerunError, match=r"pipeline 'tiny' in .*tiny.py has changed since run"):
        rerun(_workspace(config), first.run_id, get, log=io.StringIO())
    with pytest.raises(RerunError, match=r"no run 'nope'"):
        rerun(_workspace(config), "nope", get, log=io.StringIO())


RESUMABLE = '''
from components.probe import probe
from kubesage.testing.probes import diag_flaky
from kubesage import pipeline


@pipeline(name="resumable")
def resumable(message: str = "hello") -> None:
    first = probe(message=message, seconds=0.0)
    diag_flaky(marker="resume").set_retries(0).after(first)
'''


def test_rerun_from_failed_reuses_what_succeeded(tmp_path, fsx_root: str) -> None:
    """The flaky step fails its first attempt (no retries here); the continued run reuses the
    probe's recorded outputs, with the cache off, and runs only the flaky step again."""
    pipe = tmp_path / "resumable.py"
    pipe.write_text(RESUMABLE)
    from kubesage.config.local import load_local_config

    config = load_local_config(write_config(str(tmp_path / "l.yaml"), fsx_root,
                                            str(tmp_path / "store")))
    first = _run(config, str(pipe))
    assert first.status == "failed" and first.step("diag-flaky").status == "failed"
    assert first.step("probe").status == "succeeded"
    ws = _workspace(config)
    log = io.StringIO()
    (again,) = rerun(ws, first.run_id, get, log=log, from_failed=True)
    assert again.status == "succeeded" and again.rerun_of == first.run_id
    probe_step = again.step("probe")
    assert probe_step.cached and probe_step.outputs == first.step("probe").outputs
    assert f"= probe reused (from {first.run_id})" in log.getvalue()
    assert not again.step("diag-flaky").cached and again.step("diag-flaky").returns == {"output": 2}
    with pytest.raises(RerunError, match="is succeeded; --from-failed continues a failed"):
        rerun(ws, again.run_id, get, log=io.StringIO(), from_failed=True)


def test_kfp_local_refuses_from_failed_by_name(tmp_path) -> None:
    """kfp.local keeps its own cache and outputs; it cannot be told to reuse a run's steps."""
    from kubesage.targets import Unsupported, get

    definition, _ = load_pipeline(os.path.join(REPO, "tests/pipelines/probes.py:fan_out"))
    with pytest.raises(Unsupported, match="target 'kfp' cannot honour rerun --from-failed"):
        get("kfp").check(definition.build(), RunOptions(resume_from="some-run"))


def test_rerun_refuses_changed_data(tmp_path, fsx_root: str) -> None:
    data = tmp_path / "fsx"
    shutil.copytree(os.path.join(fsx_root, "digits", "1"), data / "digits" / "1")
    config = LocalConfig(mounts={"fsx": str(data)}, store=str(tmp_path / "store"))
    first = _run(config, os.path.join(REPO, "tests/pipelines/training.py:train-only"))
    assert first.data["fsx"]
    victim = next((data / "digits" / "1").iterdir())
    victim.write_bytes(victim.read_bytes() + b"\0")
    with pytest.raises(RerunError, match=r"the data under mounts.fsx .* has changed since it ran"):
        rerun(_workspace(config), first.run_id, get, log=io.StringIO())


def test_runs_list_filters_by_tag(tmp_path, fsx_root: str) -> None:
    config = write_config(str(tmp_path / "l.yaml"), fsx_root, str(tmp_path / "s"),
                          mlflow_autolog=False)
    for tag in ("a", "b"):
        run_cli("run", "tests/pipelines/probes.py:fan_out", "--runner", "subprocess", "--config",
                config, "--tag", f"exp={tag}", check=True)
    listed = run_cli("runs", "--config", config, "list", "--tag", "exp=b", "--json", check=True)
    import json

    runs = json.loads(listed.stdout)
    assert [r["tags"] for r in runs] == [{"exp": "b"}]

"""Experiments: runs in MLflow (in the background), and ``kubesage compare``."""

from __future__ import annotations

import time
from typing import Any

from PIL import Image

from kubesage.config.local import load_local_config
from tests.conftest import mlflow_client, run_cli, run_json, write_config


def test_runs_reach_mlflow_and_compare_draws_learning_curves(tmp_path, fsx_root: str) -> None:
    """The second run goes to MLflow in the background; the first ran with ``mlflow_autolog:
    false`` (no logger started: its log file is opened before it starts; no MLflow database
    made) and reaches MLflow when ``kubesage experiments`` asks."""
    store = tmp_path / "s"
    config = write_config(str(tmp_path / "l.yaml"), fsx_root, str(store))
    quiet = write_config(str(tmp_path / "q.yaml"), fsx_root, str(store), mlflow_autolog=False)
    runs = []
    for epochs, cfg in ((2, quiet), (3, config)):
        runs.append(run_json("run", "tests/pipelines/training.py:train-only", "--runner",
                             "subprocess", "--config", cfg, "--param", f"epochs={epochs}",
                             "--param", "image_size=8", "--tag", "study=epochs"))
        assert runs[-1]["status"] == "succeeded", runs[-1]["_stderr"]
        if cfg == quiet:
            assert not (store / "logs" / "experiments.log").exists()
            assert not (store / "mlflow" / "mlflow.db").exists()

    client = mlflow_client(load_local_config(config).tracking_uri)

    def logged() -> list[Any]:
        deadline, found = time.time() + 90, []
        while time.time() < deadline:  # logged by a background process; complete once tagged
            exp = client.get_experiment_by_name("train-only")
            found = client.search_runs([exp.experiment_id]) if exp else []
            if found and all(r.data.tags.get("kubesage.logged") == "1" for r in found):
                break
            time.sleep(1)
        return found

    assert [r.data.tags["kubesage.run_id"] for r in logged()] == [runs[1]["run_id"]]
    # on demand: logs the first run; the second again is a no-op (the same MLflow run)
    again = run_cli("experiments", runs[0]["run_id"], runs[1]["run_id"], "--config", config,
                    check=True).stdout
    found = logged()
    assert {r.data.tags["kubesage.run_id"] for r in found} == {r["run_id"] for r in runs}
    assert all(r.info.run_id in again for r in found) and len(found) == 2
    mine = next(r for r in found if r.data.tags["kubesage.run_id"] == runs[1]["run_id"])
    assert mine.data.params["epochs"] == "3" and mine.data.tags["study"] == "epochs"
    history = client.get_metric_history(mine.info.run_id, "train.train_loss")
    assert [m.step for m in history] == [1, 2, 3]
    assert history[-1].value == runs[1]["metrics"]["train"]["train_loss"]

    png = tmp_path / "cmp.png"
    out = run_cli("compare", runs[0]["run_id"], runs[1]["run_id"], "--config", config, "-o",
                  str(png), check=True).stdout
    header, *rows = out.splitlines()
    assert runs[0]["run_id"] in header and runs[1]["run_id"] in header
    assert any(row.split()[:3] == ["param", "epochs", "2"] for row in rows)
    assert any(row.startswith("train.train_loss") for row in rows)
    assert "learning curves (train.train_accuracy, train.train_loss)" in out
    with Image.open(png) as img:
        assert img.width > 800 and img.height > 300


def test_a_half_logged_mlflow_run_is_replaced_not_taken_as_done(tmp_path) -> None:
    """A logger that died after creating the MLflow run: the next one logs the whole run."""
    from mlflow import MlflowClient

    from kubesage.runs.record import RunRecord, StepRecord
    from kubesage.tracking.experiments import LOGGED_TAG, log_run

    uri = f"sqlite:///{tmp_path}/mlflow.db"
    record = RunRecord(run_id="p-1", pipeline="p", pipeline_file="", pipeline_hash="h",
                       runner="docker", status="succeeded", parameters={"epochs": 3},
                       started=time.time() - 5, ended=time.time())
    record.steps.append(StepRecord(name="train", task="train", component="train", version="1",
                                   image="i", metrics={"acc": 0.5}))
    client = MlflowClient(uri)
    exp = client.create_experiment("p")
    half = client.create_run(exp, tags={"kubesage.run_id": "p-1"}).info.run_id
    logged = log_run(record, uri)
    assert logged != half and client.get_run(half).info.lifecycle_stage == "deleted"
    run = client.get_run(logged)
    assert run.data.tags[LOGGED_TAG] == "1" and run.data.params == {"epochs": "3"}
    assert run.data.metrics == {"train.acc": 0.5} and run.info.status == "FINISHED"
    assert log_run(record, uri) == logged  # complete: logged once


def test_compare_without_matplotlib_prints_the_table_and_how_to_install_it(
        tmp_path, monkeypatch, capsys) -> None:
    """matplotlib is the ``plots`` extra: without it ``compare`` still prints the table, and says
    in one line how to get the learning curves."""
    import sys

    from kubesage.cli import main
    from kubesage.runs.record import RunRecord, StepRecord
    from kubesage.store import RunStore

    config = write_config(str(tmp_path / "l.yaml"), str(tmp_path), str(tmp_path / "s"))
    store = RunStore(str(tmp_path / "s"))
    for run_id, epochs in (("p-1", 2), ("p-2", 3)):
        record = RunRecord(run_id=run_id, pipeline="p", pipeline_file="", pipeline_hash="h",
                           runner="docker", status="succeeded", parameters={"epochs": epochs},
                           started=time.time() - 5, ended=time.time())
        record.steps.append(StepRecord(
            name="train", task="train", component="train", version="1", image="i",
            status="succeeded", metrics={"loss": 1.0 / epochs},
            series={"loss": [[e, 1.0 / e] for e in range(1, epochs + 1)]}))
        store.save(record)
    store.close()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` fails
    png = tmp_path / "cmp.png"
    assert main(["compare", "p-1", "p-2", "--config", config, "-o", str(png)]) == 0
    out = capsys.readouterr().out
    assert any(row.split()[:3] == ["param", "epochs", "2"] for row in out.splitlines())
    assert any(row.startswith("train.loss") for row in out.splitlines())
    hint = [line for line in out.splitlines() if "kubesage[plots]" in line]
    assert hint == ["no plot: matplotlib is not installed: pip install 'kubesage[plots]' draws "
                    "the learning curves"]
    assert not png.exists()

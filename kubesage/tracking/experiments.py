"""Experiment tracking: each run's parameters, final metrics and learning curves in MLflow.

The run record is the source of truth; MLflow is a sink. ``kubesage run`` hands the logging to a
background process (``python -m kubesage.tracking.experiments``), so MLflow's import and database time
never slow a run and a tracking server that is down never fails one. Logging is idempotent: a run
already in the experiment (tag ``kubesage.run_id``) is not logged twice. An MLflow run is complete
once it has the tag ``kubesage.logged``, set last; one without it (its logger died half-way) is
deleted and logged again.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from kubesage.runs.record import RunRecord
from kubesage.runtime.context import mlflow_store_lock

LOGGED_TAG = "kubesage.logged"  # set last: the MLflow run holds the whole kubesage run
ATTEMPTS = 3  # a background logging that fails is tried again (MLflow creating its tables, ...)


def log_run(record: RunRecord, tracking_uri: str) -> str:
    """Log ``record`` into the MLflow experiment named after its pipeline; the MLflow run ID."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric, Param, RunTag

    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(record.pipeline)
    if found is None:
        location = None
        if tracking_uri.startswith("sqlite:///"):
            location = os.path.join(os.path.dirname(tracking_uri.removeprefix("sqlite:///")),
                                    "artifacts")
        exp_id = client.create_experiment(record.pipeline, artifact_location=location)
    else:
        exp_id = found.experiment_id
    for earlier in client.search_runs([exp_id], f"tags.`kubesage.run_id` = '{record.run_id}'"):
        if earlier.data.tags.get(LOGGED_TAG) == "1":
            return str(earlier.info.run_id)
        client.delete_run(earlier.info.run_id)  # half-logged by a logger that died
    tags = {"kubesage.run_id": record.run_id, "kubesage.pipeline_hash": record.pipeline_hash,
            "kubesage.runner": record.runner, "kubesage.target": record.target,
            "kubesage.status": record.status, "kubesage.rerun_of": record.rerun_of,
            "mlflow.source.git.commit": record.git.get("commit", ""), **record.tags}
    run = client.create_run(exp_id, start_time=int(record.started * 1000), run_name=record.run_id,
                            tags=tags)
    now = int(time.time() * 1000)
    metrics: list[Metric] = []
    for step in record.steps:
        for name, series in step.series.items():
            metrics += [Metric(f"{step.name}.{name}", float(v), now, int(s)) for s, v in series]
        for name, value in step.metrics.items():
            if name not in step.series:
                metrics.append(Metric(f"{step.name}.{name}", float(value), now, 0))
    params = [Param(k, str(v)[:6000]) for k, v in sorted(record.parameters.items())]
    for i in range(0, max(len(metrics), 1), 900):  # MLflow takes at most 1000 entries a batch
        client.log_batch(run.info.run_id, metrics=metrics[i:i + 900],
                         params=params if i == 0 else [],
                         tags=[RunTag("kubesage.steps", str(len(record.steps)))] if i == 0 else [])
    status = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
    client.set_terminated(run.info.run_id, status.get(record.status, "FINISHED"),
                          int((record.ended or time.time()) * 1000))
    client.set_tag(run.info.run_id, LOGGED_TAG, "1")  # last: everything above is in
    return str(run.info.run_id)


def log_in_background(store: str, tracking_uri: str, run_id: str) -> None:
    """Start ``python -m kubesage.tracking.experiments`` for ``run_id``; output to ``<store>/logs``."""
    logs = os.path.join(store, "logs")
    os.makedirs(logs, exist_ok=True)
    with open(os.path.join(logs, "experiments.log"), "a") as out:
        # As root, what the logger creates (the MLflow database, its lock) stays writable by the
        # steps' non-root user, which registers models there: the child's umask, not ours.
        subprocess.Popen([sys.executable, "-m", "kubesage.tracking.experiments", "--store", store,
                          "--tracking-uri", tracking_uri, run_id],
                         stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
                         umask=0o002 if os.getuid() == 0 else -1)


def main(argv: list[str] | None = None) -> int:
    from kubesage.store import RunStore

    ap = argparse.ArgumentParser(prog="python -m kubesage.tracking.experiments")
    ap.add_argument("--store", required=True)
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("run_ids", nargs="+")
    args = ap.parse_args(argv)
    store = RunStore(args.store)
    for run_id in args.run_ids:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                with mlflow_store_lock(args.tracking_uri):
                    mlflow_id = log_run(store.get(run_id), args.tracking_uri)
                break
            except Exception as e:  # e.g. another MLflow client creating the tables right now
                if attempt == ATTEMPTS:
                    raise
                print(f"{run_id}: logging failed ({type(e).__name__}: {str(e)[:200]}); "
                      f"again in {attempt * 2}s", flush=True)
                time.sleep(attempt * 2)  # logging is idempotent: a half-logged run is replaced
        print(f"{run_id} -> MLflow run {mlflow_id} at {args.tracking_uri}", flush=True)
    return 0




if __name__ == "__main__":
    sys.exit(main())

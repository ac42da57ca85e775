"""Submitted Kubeflow runs as runs: read their state back, retry failed ones.

``read`` asks the API for the run (``GET /apis/v2beta1/runs/{id}``): its state and each task's
state, times and error. Metrics and artifacts live in the cluster's metadata store (MLMD), which
the runs API does not serve, so a Kubeflow run's record holds states and times only.

``resume`` is the run retry API (``POST /apis/v2beta1/runs/{id}:retry``): the service runs the
failed tasks again and what follows them, in the same run; the tasks that succeeded keep their
outputs. kfp.Client has no method for it, so its generated API client is called.
"""

from __future__ import annotations

import os
from datetime import datetime
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.runs.record import RunRecord
from kubesage.runs.submitted import ServiceState, StepState, resumed
from kubesage.store import RunStore

# the API's RuntimeState -> kubesage's run and step statuses (anything else is still running)
STATUS = {"SUCCEEDED": "succeeded", "FAILED": "failed", "CANCELED": "cancelled",
          "SKIPPED": "skipped", "CACHED": "succeeded"}


class RunError(KubesageError):
    """The service cannot do what a re-run of a submitted run needs."""


def api_client(record: RunRecord) -> Any:
    """kfp.Client on the run's host and namespace (``KFP_TOKEN``: a bearer token)."""
    from kubesage.targets.kfp.submit import Endpoint, _client

    remote = record.remote
    return _client(Endpoint(host=remote["host"], namespace=remote.get("namespace", ""),
                            experiment="", service_account="", run_name="",
                            token=os.environ.get("KFP_TOKEN") or None))


def _time(value: Any) -> float | None:
    return value.timestamp() if isinstance(value, datetime) else None


def read(client: Any, record: RunRecord) -> ServiceState:
    """The run of ``record`` as the API reports it; tasks are matched to the record's steps by
    name (the API also lists the DAG and driver tasks behind them, which are left out); a fused
    task's state is each of its members' (the API does not see inside the task)."""
    try:
        run = client.get_run(record.remote["run_id"])
    except Exception as e:  # kfp_server_api.ApiException, urllib3 errors
        raise RunError(f"reading run {record.remote['run_id']} from {record.remote['host']} "
                       f"failed: {type(e).__name__}: {str(e).strip()[:160]}") from None
    state = str(run.state or "PENDING")
    status = STATUS.get(state, "running")
    names = {s.name for s in record.steps}
    fused = _fused(record)
    steps = []
    for task in getattr(getattr(run, "run_details", None), "task_details", None) or []:
        name = str(task.display_name or "")
        members = [m for m in fused.get(name, []) if m in names]
        if name not in names and not members:
            continue
        task_state = str(task.state or "")
        error = getattr(task, "error", None)
        for each in members or [name]:  # a fused task's members share its state
            steps.append(StepState(
                name=each, status=STATUS.get(task_state, "running"),
                started=_time(getattr(task, "start_time", None)),
                ended=_time(getattr(task, "end_time", None)),
                error=str(getattr(error, "message", "") or "") if error else "",
                cached=task_state == "CACHED", remote=_pod(task)))
    return ServiceState("cancelled" if status == "skipped" else status, steps)


def _fused(record: RunRecord) -> dict[str, list[str]]:
    """A fused task -> its members, from the compiled file the record kept."""
    import yaml

    from kubesage.targets.kfp.fused import compiled_members

    try:
        with open(record.remote.get("compiled", "")) as f:
            return compiled_members(next(yaml.safe_load_all(f)))
    except (OSError, ValueError, StopIteration, yaml.YAMLError):
        return {}


def _pod(task: Any) -> dict[str, Any]:
    """The pod that ran a task's container (its executor child's, else its own): its logs."""
    pods = [str(c.pod_name) for c in getattr(task, "child_tasks", None) or []
            if getattr(c, "pod_name", None)]
    own = getattr(task, "pod_name", None)
    pod = pods[-1] if pods else str(own or "")
    return {"pod": pod} if pod else {}


def resume(client: Any, record: RunRecord, store: RunStore) -> RunRecord:
    """Retry the failed run of ``record``; the new record continuing it."""
    run_id = record.remote["run_id"]
    state = str(client.get_run(run_id).state or "")
    if state not in ("FAILED", "CANCELED"):
        raise RunError(f"run {record.run_id}: Kubeflow run {run_id} is {state or 'unknown'}; only "
                       f"a failed or cancelled run can be retried (an exact 'kubesage rerun "
                       f"{record.run_id}' starts it again)")
    try:
        client._run_api.run_service_retry_run(run_id=run_id)
    except Exception as e:
        raise RunError(f"retrying run {run_id} on {record.remote['host']} failed: "
                       f"{type(e).__name__}: {str(e).strip()[:160]}") from None
    return resumed(record, {"how": "retry"}, store)

"""What every command shares: ``NAME=VALUE`` pairs, the workspace a command opens once, handing
ended runs to MLflow, and printing a run record."""

from __future__ import annotations

import json
import sys
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.runs.record import RunRecord
from kubesage.targets import base as targets
from kubesage.targets.base import Workspace

EXIT_FAILED, EXIT_ERROR, EXIT_REFUSED = 1, 2, 3


def pairs(given: list[str], flag: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` -> ``{"a": "1", "b": "2"}``; a pair without ``=`` names ``flag``."""
    out = {}
    for pair in given:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise KubesageError(f"{flag} {pair!r}: write it as name=value")
        out[name] = value
    return out


def say(text: str) -> None:
    """One line of progress on stderr (stdout is the command's result)."""
    print(text, file=sys.stderr, flush=True)


def workspace(config: str | None, target: str = "local") -> Workspace:
    """The workspace of ``target``'s config: the config read once, the run store opened once
    (runs whose process died marked abandoned, their containers removed)."""
    return targets.get(target).workspace(config, say=say)


def track(workspace: Workspace, record: RunRecord) -> None:
    """Hand an ended run to MLflow in the background (never slows or fails the run), unless
    the config's ``mlflow_autolog`` is off."""
    if not workspace.local.mlflow_autolog:
        return
    from kubesage.tracking.experiments import log_in_background

    log_in_background(workspace.local.store, workspace.local.tracking_uri, record.run_id)


def get_run(workspace: Workspace, run_id: str) -> RunRecord:
    """Run ``run_id`` (or the one run its prefix names) of the workspace's store."""
    try:
        return workspace.store.get(run_id)
    except KeyError:
        raise KubesageError(f"no run '{run_id}'; 'kubesage runs list' shows the runs") from None


def emit(record: RunRecord, as_json: bool) -> int:
    """Print a run record (as JSON, or for a person); the exit code its status means."""
    if as_json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        print_record(record.to_dict())
    return 0 if record.status == "succeeded" else EXIT_FAILED


def print_record(r: dict[str, Any]) -> None:
    print(f"run {r['run_id']}  {r['status']}  ({r['runner']}, {r['duration_s']}s)")
    remote = r.get("remote") or {}
    if remote:
        print(f"  on {r['target']}: {remote.get('arn') or remote.get('url')}")
    print(f"  pipeline {r['pipeline']}  sha256 {r['pipeline_hash'][:12]}")
    print(f"  parameters {json.dumps(r['parameters'])}")
    for s in r["steps"]:
        extra = " (cached)" if s["cached"] else ""
        print(f"  {s['name']:28} {s['status']:10}{extra:9} {s['duration_s'] or 0:>7.1f}s")
        for name, out in sorted(s["outputs"].items()):
            print(f"      -> {name}: {out['path']}")
        shown = sorted(s["metrics"].items(), key=lambda kv: ("_" in kv[0], kv[0]))
        for name, value in shown[:4]:
            print(f"      {name} = {value:.4f}")
        if len(shown) > 4:
            print(f"      (+{len(shown) - 4} more metrics: kubesage runs show {r['run_id']} --json)")
        if s["status"] == "failed":
            print("      " + s["error"].replace("\n", "\n      "))

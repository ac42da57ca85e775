"""The per-client view: for a pipeline that fans out over clients, one row per client with its
newest run, its accuracy, the model version registered for it and the endpoint serving it.

A client is an item of the pipeline's outermost loop (a local, kfp.local or definition run runs
every client in one run) or the client of a submitted execution (SageMaker starts one per
client, ``remote.client``); a run tagged ``client=NAME`` counts for that client too.
"""

from __future__ import annotations

import re
from typing import Any

from kubesage.console.views import took, when
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.store import RunStore

RUNS_SCANNED = 200  # newest runs of the pipeline read for the view
_FIRST_INDEX = re.compile(r"^\[(\d+)\]")


def clients_of(record: RunRecord) -> dict[str, list[StepRecord]]:
    """Client -> the steps that ran for it in ``record``."""
    own = record.remote.get("client") or record.tags.get("client")
    if own:
        return {str(own): list(record.steps)}
    loops = [g for g, doc in record.groups.items() if doc.get("kind") == "loop"]
    if not loops:
        return {}
    outer, items = loops[0], record.groups[loops[0]].get("items") or []
    found: dict[str, list[StepRecord]] = {}
    for step in record.steps:
        if not step.groups or step.groups[0] != outer:
            continue
        index = _FIRST_INDEX.match(step.name[len(step.task):])
        if index and int(index.group(1)) < len(items):
            item = items[int(index.group(1))]
            name = item.get("client", item) if isinstance(item, dict) else item
            found.setdefault(str(name), []).append(step)
    return found


def _accuracy(steps: list[StepRecord]) -> float | None:
    for step in steps:
        if "accuracy" in step.metrics:
            return step.metrics["accuracy"]
    return None


def _registered(steps: list[StepRecord]) -> str:
    for step in steps:
        if step.component == "register" or step.task.startswith("register"):
            if step.status == "succeeded":
                return str(step.returns.get("output", "registered"))
            return f"not registered ({step.status})"
    return ""


def _endpoints(deploys: list[dict[str, Any]], client: str, run_id: str) -> list[str]:
    """Endpoints whose newest deploy serves this client's model from this run."""
    found = []
    seen: set[str] = set()
    for deploy in deploys:  # newest first: the newest deploy of an endpoint says what it serves
        endpoint = str(deploy.get("endpoint"))
        if endpoint in seen:
            continue
        seen.add(endpoint)
        runs = deploy.get("runs") or {}
        if runs.get(client) == run_id or (list(runs.values()) == [run_id] and len(runs) == 1):
            found.append(endpoint)
    return found


def clients_page(store: RunStore, pipeline: str) -> dict[str, Any]:
    """The rows of the per-client view of ``pipeline`` (or the pipelines to choose from)."""
    pipelines = store.facets()["pipeline"]
    if not pipeline:
        return {"pipeline": "", "pipelines": pipelines, "rows": []}
    deploys = store.deploys()
    rows: dict[str, dict[str, Any]] = {}
    for record in store.list(limit=RUNS_SCANNED, pipeline=pipeline):
        for client, steps in clients_of(record).items():
            if client in rows:  # newest first: this client's newest run is in already
                continue
            failed = [s.name for s in steps if s.status == "failed"]
            rows[client] = {"client": client, "run_id": record.run_id, "target": record.target,
                            "status": "failed" if failed else record.status,
                            "started": when(record.started),
                            "took": took(record.started, record.ended),
                            "accuracy": _accuracy(steps), "registered": _registered(steps),
                            "endpoints": _endpoints(deploys, client, record.run_id)}
    return {"pipeline": pipeline, "pipelines": pipelines,
            "rows": [rows[c] for c in sorted(rows)]}

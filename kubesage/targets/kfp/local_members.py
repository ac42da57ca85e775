"""The members of a fused task, as a kfp.local run records them.

A fused task (``fused.py``) is one kfp task running several of the pipeline's tasks; each member
keeps its own record: its part of the task's executor output (the names prefixed by its task),
its times from ``.kubesage-members.json``, and the task it ran in (``StepRecord.job``). When the
task failed, the members it finished are in that file; the first one missing failed, the ones
after it did not run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from kubesage.plan import Step
from kubesage.runs.record import StepRecord
from kubesage.runtime.kfp import MEMBERS_FILE, STEP_FILE, with_exact_metadata
from kubesage.targets.kfp.fused import FusedTask

Member = tuple[str, dict[str, str]]  # (the fused task's name, its name -> the member's name)


def members_of(fused: list[FusedTask]) -> dict[str, Member]:
    """Task name -> (its fused task, the names of its outputs there), for every member."""
    return {t.name: (f.name, {n: o for (task, o), n in f.names.items() if task == t.name})
            for f in fused for t in f.members}


def own_part(result: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """A member's part of a fused task's executor output, under its own names."""
    def mine(section: dict[str, Any]) -> dict[str, Any]:
        return {names[k]: v for k, v in section.items() if k in names}

    return {"parameterValues": mine(result.get("parameterValues", {})),
            "artifacts": mine(result.get("artifacts", {}))}


def _read(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def collect_member(step: Step, record: StepRecord, root: str, member: Member,
                   outputs: Callable[[Step, StepRecord, dict[str, Any]], None],
                   earlier_failed: bool) -> bool:
    """Fill a member's record from its fused task's root; True when the member failed."""
    task, names = member
    record.job = task
    note = _read(os.path.join(root, STEP_FILE)) or {}
    attempts = note.get("attempts", [])
    record.attempts = len(attempts)
    finished = (_read(os.path.join(root, MEMBERS_FILE)) or {}).get(step.task.name)
    result = _read(os.path.join(root, "executor_output.json"))
    if finished is not None:
        record.status = "succeeded"
        record.started, record.ended = finished.get("started"), finished.get("ended")
        if result is not None:
            outputs(step, record, own_part(result, names))
        else:  # the task failed later: what this member wrote is where it wrote it
            outputs(step, record, _as_output(finished))
        return False
    if earlier_failed:
        record.status = "not_run"
        return True
    record.status = "failed"
    error = attempts[-1].get("error", "") if attempts else ""
    record.error = error or f"the fused task {task} ended before {step.name}; see {root}"
    if attempts:
        record.started, record.ended = attempts[-1].get("started"), attempts[-1].get("ended")
    return True


def _as_output(finished: dict[str, Any]) -> dict[str, Any]:
    metadata = finished.get("artifacts", {})
    artifacts = {name: {"artifacts": [{"uri": path, "metadata": with_exact_metadata(
        metadata.get(name, {}))}]} for name, path in finished.get("outputs", {}).items()}
    return {"parameterValues": dict(finished.get("returns", {})), "artifacts": artifacts}


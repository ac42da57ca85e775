"""The members of a fused job, as a local execution of a definition records them.

A fused job (``fused.py``) is one definition step running several plan steps; each member keeps
its own record (state, times, parameters, returned values, metrics, artifacts) plus the job it
ran in (``StepRecord.job``). What a member left is read where the job put it: a processing
job's ``kubesage-members/<member>/``; a training job's ``model.tar.gz`` (the training member)
and ``output.tar.gz`` (the others), or, when the job failed, the finished members kept with its
checkpoints. A member that left no result failed if the job failed (the first such one) or did
not run (the ones after it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from kubesage.dsl.types import masked, text_form
from kubesage.plan import Step
from kubesage.runs.artifacts import sha256_tree
from kubesage.runs.record import StepRecord
from kubesage.runtime.members import (
    DONE_DIR,
    MEMBER_FLAG,
    MEMBER_KEY,
    MEMBERS_KEY,
    MEMBERS_OUTPUT,
    RESULTS_DIR,
)
from kubesage.runtime.sagemaker_processing import METADATA_DIR, RESULT_FILE, RESULT_OUTPUT

Left = tuple[dict[str, Any], dict[str, tuple[str, str]]]  # (result document, output -> (path, uri))


def members_of(step: dict[str, Any]) -> list[str]:
    """The members a definition step runs, in order ([] for a step that is no fused job)."""
    args = step.get("Arguments", {})
    if step.get("Type") == "Processing":
        items = args.get("AppSpecification", {}).get("ContainerArguments") or []
        return [str(items[i + 1]) for i, item in enumerate(items[:-1]) if item == MEMBER_FLAG]
    if step.get("Type") == "Training":
        names = args.get("HyperParameters", {}).get(MEMBERS_KEY)
        return list(json.loads(names)) if isinstance(names, str) else []
    return []


def member_parameters(kind: str, args: dict[str, Any], member: str,
                      returned: Callable[[str, str], Any]) -> dict[str, Any]:
    """The parameters (as text) the job passed one member; one an earlier member returned
    (``returned(member, name)``) as the text an unfused step would have received."""
    if kind == "Training":
        hyper = args.get("HyperParameters", {})
        prefix = member + "."
        found = {k[len(prefix):]: v for k, v in hyper.items() if k.startswith(prefix)}
        layout = json.loads(hyper.get(MEMBER_KEY + member, "{}"))
        sources = {p: tuple(src) for p, src in layout.get("param_from", {}).items()}
    else:
        items = list(args.get("AppSpecification", {}).get("ContainerArguments", []))
        found, sources, current = {}, {}, None
        for i, item in enumerate(items):
            if item == MEMBER_FLAG:
                current = items[i + 1]
            elif item in ("--param", "--param-from") and current == member and i + 2 < len(items):
                if item == "--param":
                    found[items[i + 1]] = items[i + 2]
                else:
                    sources[items[i + 1]] = tuple(str(items[i + 2]).partition(":")[::2])
    for name, (source, value) in sources.items():
        given = returned(source, value)
        if given is not None:
            found[name] = text_form(given)
    return dict(sorted(found.items()))


def _read(path: str) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            doc: dict[str, Any] = json.load(f)
            return doc
    except (OSError, ValueError):
        return None


def left_by_processing(folder: str, uri: str, members: list[str]) -> dict[str, Left]:
    """What each member of a processing job left in its one output (``folder``, at ``uri``)."""
    found = {}
    for member in members:
        doc = _read(os.path.join(folder, member, RESULT_OUTPUT, RESULT_FILE))
        if doc is None:
            continue
        outputs = {name: (os.path.join(folder, member, name), f"{uri}/{member}/{name}")
                   for name in doc.get("artifacts", {})}
        found[member] = (doc, outputs)
    return found


def left_by_training(args: dict[str, Any], outputs: dict[str, tuple[str, str]],
                     anchor_result: dict[str, Any], unpacked: Callable[[str], str],
                     checkpoints: str | None) -> dict[str, Left]:
    """What each member of a training job left: in its archives, else with its checkpoints."""
    members = members_of({"Type": "Training", "Arguments": args})
    layouts = {m: json.loads(args["HyperParameters"][MEMBER_KEY + m]) for m in members}
    found: dict[str, Left] = {}
    for member in members:
        anchor = bool(layouts[member].get("anchor"))
        archive = outputs.get("model" if anchor else "output")
        if archive is not None and os.path.isfile(archive[1]):
            folder = unpacked(archive[1])
            doc = anchor_result if anchor else _read(os.path.join(folder, RESULTS_DIR,
                                                                   member + ".json"))
            inner = "" if anchor else member + "/"
            if doc:
                found[member] = (doc, {n: (os.path.join(folder, inner + n),
                                           f"{archive[0]}#{inner}{n}")
                                       for n in doc.get("artifacts", {})})
                continue
        kept = os.path.join(checkpoints or "", DONE_DIR, member)
        doc = _read(os.path.join(kept, "result.json")) if checkpoints else None
        if doc is not None and os.path.exists(os.path.join(kept, "complete")):
            found[member] = (doc, {n: (os.path.join(kept, "outputs", n), "")
                                   for n in doc.get("artifacts", {})})
    return found


def settle(step: dict[str, Any], args: dict[str, Any], members: list[tuple[Step, StepRecord]],
           left: dict[str, Left], job: StepRecord) -> None:
    """Fill each member's record from what it left, and from the job's record."""
    from kubesage.targets.sagemaker.compiler import sagemaker_name

    failed = job.status == "failed"
    missing_seen = False
    for plan_step, record in members:
        name = sagemaker_name(plan_step)
        record.job = step["Name"]
        record.cache_key, record.cached = job.cache_key, job.cached
        record.environment_id, record.attempts = job.environment_id, job.attempts
        types = {p.name: p.type for p in plan_step.task.spec.parameters}
        record.parameters = masked(member_parameters(
            step["Type"], args, name,
            lambda m, r: left[m][0].get("returns", {}).get(r) if m in left else None), types)
        if name not in left:
            record.status = "not_run" if (missing_seen or not failed) else "failed"
            record.error = job.error if record.status == "failed" else ""
            record.started = job.started if record.status == "failed" else None
            record.ended = job.ended if record.status == "failed" else None
            missing_seen = True
            continue
        doc, outputs = left[name]
        record.status = "succeeded"
        record.started = doc.get("started") or job.started
        record.ended = doc.get("ended") or job.ended
        record.returns = doc.get("returns", {})
        record.metrics = doc.get("metrics", {})
        record.series = doc.get("series", {})
        metadata = doc.get("artifacts", {})
        for output, (path, uri) in sorted(outputs.items()):
            if output == METADATA_DIR:
                continue
            record.outputs[output] = {"path": path, "uri": uri, "sha256": sha256_tree(path)
                                      if os.path.exists(path) else "",
                                      "metadata": metadata.get(output, {})}


def job_outputs_folder(outputs: dict[str, tuple[str, str]]) -> tuple[str, str] | None:
    """(local folder, URI) of a fused processing job's one output."""
    found = outputs.get(MEMBERS_OUTPUT)
    return (found[1], found[0]) if found else None

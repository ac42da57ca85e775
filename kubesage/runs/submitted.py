"""Runs a service executes: recorded like local runs, read back, watched.

``kubesage submit`` records each execution it starts (a SageMaker pipeline execution, a Kubeflow
run) in the run store, with the schema of a local run: the cloud identifiers in ``remote``, the
parameters, the image digests, the compiled file's sha256 (and a copy of that file, kept for an
exact re-run), the git state and the tags. A target reads the service (``Target.read``) into a
``ServiceState``; this module applies it to the record (``update``), printing each step's
transition as the local runner prints it (and posting it to the local config's webhooks, as a
local run does), and polls until the run ends (``watch``). The
neutral core knows no service: only the targets talk to one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from kubesage.dsl.errors import KubesageError
from kubesage.dsl.types import MASK
from kubesage.project.loader import project_root
from kubesage.runs.lifecycle import new_run_id
from kubesage.runs.lineage import file_sha256, git_state, made_by
from kubesage.runs.notify import Notifier, event
from kubesage.runs.record import TERMINAL, RunRecord, StepRecord
from kubesage.util.atomic import write_atomic

if TYPE_CHECKING:
    from kubesage.runs.options import SubmitOptions
    from kubesage.runs.workspace import Workspace
    from kubesage.store import RunStore


class Service(Protocol):
    """What watching a submitted run needs of its target."""

    def read(self, record: RunRecord) -> ServiceState: ...

    def poll_s(self, config: Any) -> float: ...

RUNNER = "service"  # a submitted run's runner: the service runs its steps


@dataclass
class StepState:
    """One step as the service reports it, in kubesage's step statuses."""

    name: str
    status: str
    started: float | None = None
    ended: float | None = None
    error: str = ""
    cached: bool = False
    attempts: int = 0
    metrics: dict[str, float] = field(default_factory=dict)
    returns: dict[str, Any] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"uri": ...}
    remote: dict[str, Any] = field(default_factory=dict)  # the service's job or pod behind it


@dataclass
class ServiceState:
    """A submitted run as the service reports it. ``note`` says what it could not tell."""

    status: str  # running, succeeded, failed or cancelled
    steps: list[StepState] = field(default_factory=list)
    note: str = ""


@dataclass
class Submission:
    """What a target's submit sent and started, for the records."""

    target: str
    pipeline: str
    compiled_text: str  # the file sent; kept in the store for an exact re-run
    compiled_name: str  # the kept copy's file name (SageMaker names a .json's pipeline after it)
    pipeline_file: str  # the .py submitted ('' for a compiled file)
    pipeline_hash: str  # the neutral pipeline's digest, or the compiled file's sha256
    images: dict[str, str]  # image reference -> its digest in the registry
    steps: list[tuple[str, str]]  # (step name, component or step type), in definition order
    config: str  # the target config file used
    secrets: list[str] = field(default_factory=list)  # secret parameters: recorded as ***
    executions: list[tuple[dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    # ^ (remote identifiers, parameters given) per execution started


def record_submission(sub: Submission, workspace: Workspace, tags: dict[str, str] | None = None,
                      rerun_of: str = "") -> list[RunRecord]:
    """One record per execution started, each saved ``running`` with a copy of the compiled file
    (kept under the workspace's local folder)."""
    store = workspace.store
    digest = hashlib.sha256(sub.compiled_text.encode()).hexdigest()
    path = sub.pipeline_file
    root = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    git = git_state(root)
    records = []
    for remote, parameters in sub.executions:
        record = RunRecord(
            run_id=new_run_id(sub.pipeline), pipeline=sub.pipeline,
            pipeline_file=os.path.abspath(path) if path else "", pipeline_hash=sub.pipeline_hash,
            runner=RUNNER, target=sub.target, started=time.time(),
            parameters={k: MASK if k in sub.secrets else v for k, v in parameters.items()},
            source_sha256=file_sha256(path) if path else "", compiled_sha256=digest, git=git,
            images=dict(sub.images), tags=dict(tags or {}), rerun_of=rerun_of,
            config=os.path.abspath(sub.config) if sub.config else "")
        record.user, record.host, record.checkout = made_by(project_root(root))
        kept = os.path.join(os.path.abspath(workspace.local.store), "submitted", record.run_id,
                            sub.compiled_name)
        write_atomic(kept, sub.compiled_text)
        record.remote = {**remote, "compiled": kept}
        record.steps = [StepRecord(name=n, task=n, component=c, version="", image="")
                        for n, c in sub.steps]
        store.save(record)
        records.append(record)
    return records


Notify = Callable[[dict[str, Any]], None]


def update(record: RunRecord, state: ServiceState, say: Callable[[str], None],
           notify: Notify | None = None) -> bool:
    """Apply what the service reports to ``record``, printing each step's transition (and
    telling ``notify`` of it, as a local run tells its webhooks); whether the run has ended."""
    was = record.status
    steps = {s.name: s for s in record.steps}
    for s in state.steps:
        step = steps.get(s.name)
        if step is None:  # a step the definition does not list by that name (a loop's item)
            step = steps[s.name] = StepRecord(name=s.name, task=s.name, component="", version="",
                                               image="")
            record.steps.append(step)
        before = step.status
        step.status, step.cached, step.error = s.status, s.cached, s.error
        step.started, step.ended = s.started or step.started, s.ended or step.ended
        step.attempts = max(step.attempts, s.attempts)
        step.metrics = s.metrics or step.metrics
        step.returns = s.returns or step.returns
        step.outputs = s.outputs or step.outputs
        step.remote = s.remote or step.remote
        if s.status != before:
            say(transition(step))
            if notify is not None:
                notify(event(record, step))
    if state.note and record.remote.get("note") != state.note:
        record.remote["note"] = state.note
        say(f"  ({state.note})")
    ended = state.status in ("succeeded", "failed", "cancelled")
    record.status = state.status
    if ended:
        last = max([s.ended for s in record.steps if s.ended] or [0.0])
        record.ended = last if last > record.started else time.time()
        for step in record.steps:
            if step.status not in TERMINAL and step.status != "pending":
                step.status = "not_run" if state.status != "cancelled" else "cancelled"
        if notify is not None and was != record.status:
            notify(event(record))
    return ended


@contextlib.contextmanager
def notifications(webhooks: list[str], say: Callable[[str], None]) -> Iterator[Notify]:
    """Send to ``webhooks`` (the local config's ``webhooks:``) while reading submitted runs;
    delivered before the block ends."""
    notifier = Notifier(webhooks, say)
    try:
        yield notifier.send
    finally:
        notifier.close()


def transition(step: StepRecord) -> str:
    """A step's new state, worded as the local runner words it."""
    took = f" in {step.duration_s:.1f}s" if step.duration_s is not None else ""
    if step.status == "running":
        return f"> {step.name} started"
    if step.status == "succeeded":
        return f"= {step.name} cached" if step.cached else f"+ {step.name} succeeded{took}"
    if step.status == "failed":
        return f"x {step.name} failed" + (f": {step.error}" if step.error else "")
    if step.status == "skipped":
        return f"- {step.name} skipped (condition not met)"
    return f"{step.name} {step.status}"


def watch(record: RunRecord, store: RunStore, read: Callable[[RunRecord], ServiceState],
          poll_s: float, say: Callable[[str], None], notify: Notify | None = None) -> RunRecord:
    """Read the service every ``poll_s`` seconds until the run ends, saving every change."""
    say(f"run {record.run_id}: {len(record.steps)} steps ({record.target} service)")
    while True:
        ended = update(record, read(record), say, notify)
        store.save(record)
        if ended:
            took = (record.ended or time.time()) - record.started
            say(f"run {record.run_id} {record.status} in {took:.1f}s")
            return record
        time.sleep(poll_s)


def resumed(old: RunRecord, remote: dict[str, Any], store: RunStore) -> RunRecord:
    """A new record continuing ``old`` on the service (``rerun --from-failed``): its steps that
    succeeded keep their state; the rest are pending again."""
    record = RunRecord.from_dict(old.to_dict())
    record.run_id, record.rerun_of, record.started, record.ended = (
        new_run_id(old.pipeline), old.run_id, time.time(), None)
    record.status = "running"
    record.remote = {**old.remote, **remote, "resumes": old.run_id}
    record.remote.pop("note", None)
    for step in record.steps:
        if step.status != "succeeded":
            step.status, step.started, step.ended, step.error = "pending", None, None, ""
    store.save(record)
    return record


class SubmissionError(KubesageError):
    """A submission failed part-way; ``submission`` holds the executions already started."""

    submission: Submission | None = None


def recorded(target: Service, options: SubmitOptions, workspace: Workspace,
             send: Callable[[], tuple[dict[str, Any], Submission]]
             ) -> tuple[dict[str, Any], list[RunRecord]]:
    """Submit with ``send``, record every execution it started (those started before a failure
    too) in the workspace's store, then (``--wait``) watch each until it ends."""
    store = workspace.store
    try:
        result, sub = send()
    except SubmissionError as e:
        if e.submission is not None and e.submission.executions:
            record_submission(e.submission, workspace, options.tags, options.rerun_of)
        raise
    records = record_submission(sub, workspace, options.tags, options.rerun_of)
    if options.wait:
        out, poll = options.out(), target.poll_s(workspace.config)

        def say(text: str) -> None:
            print(text, file=out, flush=True)

        with notifications(workspace.local.webhooks, say) as notify:
            for record in records:
                watch(record, store, target.read, poll, say, notify)
    return result, records


def refresh(workspace: Workspace, run_id: str | None, target_of: Callable[[str], Any],
            say: Callable[[str], None]) -> list[tuple[RunRecord, bool]]:
    """Read submitted runs' states from their services: ``run_id``, else every one still
    running. Each record (saved), and whether it ended since it was last read."""
    store = workspace.store
    if run_id:
        try:
            records = [store.get(run_id)]
        except KeyError:
            raise KubesageError(f"no run '{run_id}'; 'kubesage runs list' shows the runs") from None
        if not records[0].remote:
            raise KubesageError(f"run {records[0].run_id} ran here ({records[0].target}); its "
                                "record is written as it runs, there is nothing to refresh")
    else:
        records = [r for r in store.running() if r.remote]
    out = []
    with notifications(workspace.local.webhooks, say) as notify:
        for record in records:
            def prefixed(text: str, prefix: str = record.run_id) -> None:
                say(f"{prefix}: {text}")

            was = record.status
            ended = update(record, target_of(record.target).read(record), prefixed, notify)
            store.save(record)
            out.append((record, ended and was == "running"))
    return out


def deployable(records: list[RunRecord]) -> tuple[dict[str, str], dict[str, str]]:
    """Which runs' models a deploy serves: client (or ``model``) -> run ID of each run that
    succeeded whole (every step, its conditions held), and client -> why the others are not."""
    models: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for record in records:
        name = str(record.remote.get("client") or "model")
        unmet = [s.name for s in record.steps if s.status != "succeeded"]
        if record.status != "succeeded":
            skipped[name] = f"run {record.run_id} {record.status}"
        elif unmet:
            skipped[name] = (f"run {record.run_id}: {', '.join(unmet)} did not run (a condition "
                             "did not hold)")
        else:
            models[name] = record.run_id
    return models, skipped

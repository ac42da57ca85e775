"""One run's lifecycle, the same on every target: its ID, its record, its state changes, its end.

The run path (``kubesage.runs.launch``) creates the record with ``new_record`` (so every record
carries the same lineage: pipeline hash, source and compiled file hashes, git state, images, data
fingerprints, tags, the config used) and drives it through a ``Run``:

    run = Run(record, store, webhooks=..., log=...)
    with run.active():          # owner recorded; SIGINT/SIGTERM/SIGHUP cancel; cleanup on exit
        ... run.changed(step) ...
    run.finish()                # succeeded or failed, from the steps

A ``Run`` holds every piece of per-run state (the cancellation flag, the webhook notifier), so a
runner object can execute several runs at once and is usable again after one was cancelled.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from kubesage.dsl.types import masked
from kubesage.project.loader import project_root
from kubesage.runs.lineage import file_sha256, git_state, made_by
from kubesage.runs.notify import Notifier, event
from kubesage.runs.record import TERMINAL, RunRecord, StepRecord
from kubesage.runs.signals import stop_on_signals
from kubesage.runs.sweep import owner

if TYPE_CHECKING:
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.plan import Plan
    from kubesage.runs.options import RunOptions
    from kubesage.store import RunStore


def new_run_id(pipeline: str) -> str:
    """``<pipeline>-<UTC time>-<random>``: sortable by start, unique across processes."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{pipeline}-{stamp}-{secrets.token_hex(3)}"


def new_record(pipeline: Pipeline, options: RunOptions, *, target: str, runner: str,
               values: dict[str, Any], data: dict[str, str], images: dict[str, str],
               code: dict[str, str] | None = None, compiled: str = "",
               config: str = "", run_id: str = "") -> RunRecord:
    """A record with every lineage field, whichever target runs the pipeline.

    ``data``: mount name -> fingerprint; ``images``: logical image -> image ID; ``code``: logical
    image -> hash of the code it holds (``kubesage.docker_engine.images``); ``compiled``: the
    compiled file the target executes (its sha256 is kept); ``config``: the target config file;
    ``run_id``: the run's ID, when it was chosen before (default: a new one).
    """
    path = options.pipeline_file
    root = os.path.dirname(os.path.abspath(path)) if path else os.getcwd()
    record = RunRecord(
        run_id=run_id or new_run_id(pipeline.name),
        pipeline=pipeline.name,
        pipeline_file=os.path.abspath(path) if path else "",
        pipeline_hash=pipeline.digest(),
        runner=runner,
        target=target,
        parameters=masked(values, {p.name: p.type for p in pipeline.parameters}),
        data=data,
        started=time.time(),
        source_sha256=file_sha256(path) if path else "",
        compiled_sha256=file_sha256(compiled) if compiled else "",
        git=git_state(root),
        images=images,
        code=dict(code or {}),
        tags=dict(options.tags),
        rerun_of=options.rerun_of,
        config=os.path.abspath(config) if config else "",
    )
    record.user, record.host, record.checkout = made_by(project_root(root))
    return record


def plan_steps(plan: Plan, image: Callable[[str], str]) -> list[StepRecord]:
    """One pending step record per step of the plan, with its place in the graph (upstream
    steps, loops and conditions); ``image`` names a logical image as run."""
    from kubesage.plan.graph import step_graph

    out = []
    for s in plan.steps:
        deps, groups = step_graph(s)
        out.append(StepRecord(name=s.name, task=s.task.name, component=s.task.spec.name,
                              version=s.task.spec.version, image=image(s.task.spec.image),
                              deps=deps, groups=groups))
    return out


class Run:
    """A run in progress: saves its record on every change and tells the webhooks."""

    def __init__(self, record: RunRecord, store: RunStore, *, webhooks: list[str] | None = None,
                 log: TextIO | None = None) -> None:
        self.record = record
        self.store = store
        self.out = log or sys.stderr
        self.cancelled = threading.Event()
        self._print_lock = threading.Lock()
        self._notifier = Notifier(list(webhooks or []), self.say)

    @property
    def run_id(self) -> str:
        return self.record.run_id

    def say(self, text: str) -> None:
        """One line of progress on the run's log."""
        with self._print_lock:
            print(text, file=self.out, flush=True)

    def changed(self, step: StepRecord | None = None) -> None:
        """Save the record and tell the webhooks about the new state (of ``step``, or the run)."""
        self.store.save(self.record)
        self._notifier.send(event(self.record, step))

    @contextlib.contextmanager
    def active(self, on_cancel: Callable[[], object] | None = None) -> Iterator[Run]:
        """The run is ``running`` inside the block, owned by this process.

        SIGINT, SIGTERM and SIGHUP interrupt it (``stop_on_signals``): ``on_cancel`` stops its
        containers, unfinished steps and the run become ``cancelled``, and the interruption goes
        on up. Any other error ends the run ``failed`` (the steps that did not end, ``not_run``).
        """
        self.record.status = "running"
        self.record.owner = owner()
        self.changed()
        with stop_on_signals():
            try:
                yield self
            except KeyboardInterrupt:
                self.cancelled.set()
                if on_cancel is not None:
                    with contextlib.suppress(Exception):
                        on_cancel()
                self._end_steps("cancelled")
                self._end("cancelled")
                self.say(f"run {self.run_id} cancelled; its containers were removed")
                raise
            except BaseException:
                if on_cancel is not None:
                    with contextlib.suppress(Exception):
                        on_cancel()
                self._end_steps("not_run")
                self._end("failed")
                raise

    def finish(self) -> RunRecord:
        """End the run: ``failed`` if a step failed, else ``succeeded``."""
        failed = any(s.status == "failed" for s in self.record.steps)
        self._end_steps("not_run")
        self._end("failed" if failed else "succeeded")
        took = (self.record.ended or 0) - self.record.started
        self.say(f"run {self.run_id} {self.record.status} in {took:.1f}s")
        return self.record

    def _end_steps(self, status: str) -> None:
        now = time.time()
        for step in self.record.steps:
            if step.status not in TERMINAL:
                step.status, step.ended = status, step.ended or now

    def _end(self, status: str) -> None:
        self.record.status, self.record.ended = status, time.time()
        self.changed()
        self._notifier.close()

"""The local runner: executes a pipeline's plan on this machine, step by step.

Steps run in dependency order, independent steps in parallel (``scheduler``); each step is
built (``step``: values, inputs, cache key), taken from the cache or attempted (``attempts``)
by an executor (Docker containers or local processes) that runs ``python -m kubesage.runtime
local``. A step's container can start ahead of its turn (``warm_start``). What every run is made
of (parameters, plan, mounts, images, record, lifecycle) is the one run path's
(``kubesage.runs.launch``); a ``LocalRun`` is this target's ``Execution`` of it.

A ``LocalRunner`` holds what outlives a run (a workspace, an executor); everything about one run
lives in its ``LocalRun``, so one runner can execute several runs at once (threads) and is
usable again after a run was cancelled.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from kubesage.config.local import LocalConfig
from kubesage.dsl.channel import Channel, evaluate
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.plan import Step
from kubesage.runs.artifacts import ArtifactStore
from kubesage.runs.launch import RunSetup
from kubesage.runs.lifecycle import Run
from kubesage.runs.options import RunOptions
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.runs.workspace import Workspace
from kubesage.targets.local.attempts import run_attempts
from kubesage.targets.local.executor import Executor, WarmStarts
from kubesage.targets.local.scheduler import schedule
from kubesage.targets.local.step import from_cache, prepare
from kubesage.targets.local.warm_start import WarmStarter

RUNNERS = ("docker", "subprocess")


class LocalRun:
    """Everything about one local run: its plan, records, pins and warm starts."""

    def __init__(self, setup: RunSetup, executor: Executor) -> None:
        self.setup = setup
        self.config = setup.local
        self.executor = executor
        self.runner = executor.kind
        self.compiled = ""
        self.store = setup.workspace.store
        self.artifacts = ArtifactStore(self.config.store)
        # Subprocess steps see host paths: rewrite values under a mount path onto its folder.
        self.path_rewrite = executor.kind == "subprocess"
        self.run_id = setup.run_id
        self.plan = setup.plan
        self.mounts = setup.mounts
        self.use_cache = setup.options.use_cache
        # what steps that want GPUs get here (refused before anything runs when impossible)
        self.gpu_note = executor.gpu_plan(
            sorted({s.task.name for s in self.plan.steps if s.task.resources.gpus}),
            self.config.source)
        # rerun --from-failed: the steps of the failed run, whose successes are reused
        resume_from = setup.options.resume_from
        self.resumes: dict[str, StepRecord] = (
            {s.name: s for s in self.store.get(resume_from).steps} if resume_from else {})
        self.warm = (WarmStarter(self, executor)
                     if self.config.warm_start and isinstance(executor, WarmStarts) else None)
        self.lifecycle: Run | None = None
        self.records: dict[str, StepRecord] = {}

    @property
    def record(self) -> RunRecord:
        assert self.lifecycle is not None, "the run has not started"
        return self.lifecycle.record

    def say(self, text: str) -> None:
        if self.lifecycle is not None:
            self.lifecycle.say(text)
        else:
            self.setup.say(text)

    @property
    def cancelled(self) -> Any:
        assert self.lifecycle is not None, "the run has not started"
        return self.lifecycle.cancelled

    def image(self, logical: str) -> str:
        """The image a logical name runs as: a pinned image ID, else the configured tag."""
        return self.setup.image(logical)

    def step_image(self, logical: str) -> str:
        return self.setup.image(logical)

    def execute(self, run: Run) -> None:
        """Run the plan's steps in dependency order; called inside ``run.active``."""
        self.lifecycle = run
        self.records = {s.name: s for s in run.record.steps}
        self.say(f"run {self.run_id}: {len(self.plan.steps)} steps ({self.executor.kind})")
        if self.gpu_note:
            self.say(self.gpu_note)
        try:
            schedule(self.plan.steps, self.records, parallelism=self.config.parallelism,
                     execute=self._execute, conditions_hold=self._conditions_hold,
                     changed=run.changed, released=self.released, say=self.say,
                     on_interrupt=self._interrupted)
        finally:
            if self.warm is not None:
                self.warm.release()
            elif isinstance(self.executor, WarmStarts):  # finished containers are removed
                self.executor.release(self.run_id)

    def cancel(self) -> None:
        self.executor.cancel(self.run_id)

    def _interrupted(self) -> None:
        """Stop the steps before the scheduler waits for its threads to end."""
        self.cancelled.set()
        self.executor.cancel(self.run_id)

    def released(self, step: Step) -> None:
        """``step`` ran, or will not: its warm container (if any) goes."""
        if self.warm is not None:
            self.warm.release(step.name)

    def output_value(self, producer: Step, name: str) -> Any:
        return self.records[producer.name].returns[name]

    def _conditions_hold(self, step: Step) -> bool:
        for cond in step.conditions:
            cmp = cond.comparison
            left = self.plan.resolve(cmp.left, step, self.output_value)
            right = (self.plan.resolve(cmp.right, step, self.output_value)
                     if isinstance(cmp.right, Channel) else cmp.right)
            if not evaluate(cmp.op, left, right):
                return False
        return True

    def _execute(self, step: Step) -> None:
        record = self.records[step.name]
        record.started = time.time()
        call = prepare(self, step)
        if from_cache(self, step):
            self.released(step)
            return
        run_attempts(self, step, call, self.warm.prewarm if self.warm is not None else None)


def make_executor(kind: str, config: LocalConfig, project_root: str) -> Executor:
    """The ``docker`` or ``subprocess`` executor."""
    if kind == "docker":
        from kubesage.targets.local.docker_executor import DockerExecutor

        return DockerExecutor(config.gpus)
    if kind == "subprocess":
        from kubesage.targets.local.process_executor import ProcessExecutor

        return ProcessExecutor(project_root, config.gpus)
    raise KubesageError(f"unknown runner '{kind}'; use {' or '.join(RUNNERS)}")


class LocalRunner:
    """Runs pipelines with one executor in one workspace (config read and store opened once),
    each run through the one run path."""

    def __init__(self, workspace: Workspace, executor: Executor, *, log: TextIO = sys.stderr
                 ) -> None:
        from kubesage.targets.local import LocalTarget

        self.workspace = workspace
        self.config = workspace.local
        self.store = workspace.store
        self.executor = executor
        self.log = log
        self.target = LocalTarget(executor)

    def run(self, pipeline: Pipeline, options: RunOptions | None = None) -> RunRecord:
        """Run ``pipeline`` to the end and return its record (also saved in the store).

        ``options.images`` pins logical image names to exact images (IDs), as a re-run does;
        ``options.use_cache=False`` executes every step even where the cache has its outputs.
        """
        options = options or RunOptions()
        if options.log is None:
            options = options.replace(log=self.log)
        if options.runner is None:
            options = options.replace(runner=self.executor.kind)
        return self.target.run(pipeline, options, self.workspace)


def runner_for(kind: str, config: LocalConfig, project_root: str,
               log: TextIO = sys.stderr) -> LocalRunner:
    """A local runner with the ``docker`` or ``subprocess`` executor."""
    executor = make_executor(kind, config, project_root)
    return LocalRunner(Workspace.open(config, config), executor, log=log)

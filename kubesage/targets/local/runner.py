"""The local runner: executes a pipeline's plan on this machine, step by step.

Steps run in dependency order, independent steps in parallel (``scheduler``); each step is
built (``step``: values, inputs, cache key), taken from the cache or attempted (``attempts``)
by an executor (Docker containers or local processes) that runs ``python -m kubesage.runtime
local``. A step's container can start ahead of its turn (``warm_start``). The run's lifecycle
(record, signals, cancellation) is ``kubesage.runs.lifecycle``.

A ``LocalRunner`` holds what outlives a run (config, executor, stores); everything about one
run lives in its ``LocalRun``, so one runner can execute several runs at once (threads) and is
usable again after a run was cancelled.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from kubesage.config.local import LocalConfig, data_mounts
from kubesage.docker_engine.images import ensure_fresh
from kubesage.dsl.channel import Channel, evaluate
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.plan import Plan, Step
from kubesage.runs.artifacts import ArtifactStore, fingerprint_tree
from kubesage.runs.inputs import resolve_inputs
from kubesage.runs.lifecycle import Run, new_record, plan_steps
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.runs.store import RunStore
from kubesage.targets.base import RunOptions
from kubesage.targets.local.attempts import run_attempts
from kubesage.targets.local.executor import Executor, WarmStarts
from kubesage.targets.local.scheduler import schedule
from kubesage.targets.local.step import from_cache, prepare
from kubesage.targets.local.warm_start import WarmStarter

RUNNERS = ("docker", "subprocess")


class LocalRunner:
    """Runs pipelines with one executor, recording every run in ``config.store``."""

    def __init__(self, config: LocalConfig, executor: Executor, *, log: TextIO = sys.stderr,
                 path_rewrite: bool = False, project_root: str = ".") -> None:
        self.config = config
        self.project_root = project_root  # where the images' code comes from (containers/)
        self.executor = executor
        self.store = RunStore(config.store)
        self.artifacts = ArtifactStore(config.store)
        self.log = log
        # Subprocess steps see host paths: rewrite values under a mount path onto its folder.
        self.path_rewrite = path_rewrite

    def run(self, pipeline: Pipeline, options: RunOptions | None = None) -> RunRecord:
        """Run ``pipeline`` to the end and return its record (also saved in the store).

        ``options.images`` pins logical image names to exact images (IDs), as a re-run does;
        ``options.use_cache=False`` executes every step even where the cache has its outputs.
        """
        options = options or RunOptions()
        values = pipeline.resolve_parameters(options.params)
        plan = Plan(pipeline, values)
        mounts = data_mounts(pipeline, self.config)
        foreign = sorted({s.task.spec.name for s in plan.steps if s.task.spec.container})
        if foreign and self.executor.kind != "docker":
            from kubesage.targets.base import Unsupported

            raise Unsupported(
                f"{', '.join(foreign)}: container components (imported Kubeflow YAML) run their "
                f"own image, which the {self.executor.kind} runner cannot do; use --runner docker")

        def image(logical: str) -> str:
            return options.images.get(logical) or self.config.image(logical)

        logical = {s.task.spec.image for s in plan.steps}
        out = options.log or self.log
        if self.executor.kind == "docker":  # the code a step runs is the working tree's
            code = ensure_fresh(self.project_root, logical - set(options.images),
                                self.config.image_tag, lambda text: print(text, file=out, flush=True))
        else:
            code = {name: self.executor.environment_id(name) for name in logical}
        # Fail before anything runs: every image must exist, every mount folder too.
        env_ids = {name: self.executor.environment_id(image(name))
                   for name in sorted({s.task.spec.image for s in plan.steps})}
        inputs = resolve_inputs(pipeline, options.inputs, self.store)
        # what steps that want GPUs get here (refused before anything runs when impossible)
        gpu_note = self.executor.gpu_plan(
            sorted({s.task.name for s in plan.steps if s.task.resources.gpus}), self.config.source)
        record = new_record(pipeline, options, target="local", runner=self.executor.kind,
                            values=values, images=env_ids, code=code,
                            config=self.config.source_file,
                            data={name: fingerprint_tree(src) for name, (_, src) in mounts.items()})
        record.inputs = inputs
        record.steps = plan_steps(plan, image)
        run = Run(record, self.store, webhooks=self.config.webhooks, log=out)
        return LocalRun(self, run, plan, mounts, options, gpu_note).execute()


class LocalRun:
    """Everything about one run of a ``LocalRunner``: its plan, records, pins and warm starts."""

    def __init__(self, runner: LocalRunner, run: Run, plan: Plan,
                 mounts: dict[str, tuple[str, str]], options: RunOptions,
                 gpu_note: str | None = None) -> None:
        self.runner = runner
        self.config = runner.config
        self.executor = runner.executor
        self.store = runner.store
        self.artifacts = runner.artifacts
        self.path_rewrite = runner.path_rewrite
        self.lifecycle = run
        self.record = run.record
        self.run_id = run.run_id
        self.cancelled = run.cancelled
        self.say = run.say
        self.plan = plan
        self.gpu_note = gpu_note  # said once at the start: what GPU-wanting steps get here
        self.mounts = mounts
        self.pins = dict(options.images)
        self.use_cache = options.use_cache
        self.records: dict[str, StepRecord] = {s.name: s for s in run.record.steps}
        # rerun --from-failed: the steps of the failed run, whose successes are reused
        self.resumes: dict[str, StepRecord] = (
            {s.name: s for s in runner.store.get(options.resume_from).steps}
            if options.resume_from else {})
        self.warm = (WarmStarter(self, self.executor)
                     if self.config.warm_start and isinstance(self.executor, WarmStarts) else None)

    def image(self, logical: str) -> str:
        """The image a logical name runs as: a pinned image ID, else the configured tag."""
        return self.pins.get(logical) or self.config.image(logical)

    def execute(self) -> RunRecord:
        run = self.lifecycle
        self.say(f"run {self.run_id}: {len(self.plan.steps)} steps ({self.executor.kind})")
        if self.gpu_note:
            self.say(self.gpu_note)
        try:
            with run.active(on_cancel=lambda: self.executor.cancel(self.run_id)):
                schedule(self.plan.steps, self.records, parallelism=self.config.parallelism,
                         execute=self._execute, conditions_hold=self._conditions_hold,
                         changed=run.changed, released=self.released, say=self.say,
                         on_interrupt=self._interrupted)
        finally:
            if self.warm is not None:
                self.warm.release()
            elif isinstance(self.executor, WarmStarts):  # finished containers are removed
                self.executor.release(self.run_id)
        return run.finish()

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


def runner_for(kind: str, config: LocalConfig, project_root: str,
               log: TextIO = sys.stderr) -> LocalRunner:
    """A local runner with the ``docker`` or ``subprocess`` executor."""
    executor: Executor
    if kind == "docker":
        from kubesage.targets.local.docker_executor import DockerExecutor

        executor = DockerExecutor(config.gpus)
    elif kind == "subprocess":
        from kubesage.targets.local.process_executor import ProcessExecutor

        executor = ProcessExecutor(project_root, config.gpus)
    else:
        raise KubesageError(f"unknown runner '{kind}'; use {' or '.join(RUNNERS)}")
    return LocalRunner(config, executor, log=log, path_rewrite=kind == "subprocess",
                       project_root=project_root)

"""The one run path: every run on this machine, whatever its target, starts and ends here.

``run_pipeline`` decides once, for every target, what a run is made of:

1. the target refuses what it cannot honour (``RunTarget.check``), once per run;
2. the parameters, the plan, the data mounts and their fingerprints, the input artifacts;
3. the images: the working tree's code in each (``Images.fresh``), then each logical image's
   ID: a pinned image (a re-run), else the configured tag (``RunSetup.image``);
4. the target prepares what differs (``RunTarget.prepare``: compile the pipeline, start an
   executor) and returns an ``Execution``;
5. the record with its lineage, and the ``Run``: the execution runs inside ``Run.active`` (signals,
   cancellation, cleanup), then the run ends from its steps' states.

A target says only how its steps, or its compiled file, execute. The neutral core knows no
backend: targets reach it through the small protocols below.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from kubesage.config.local import data_mounts
from kubesage.plan import Plan
from kubesage.plan.graph import plan_groups
from kubesage.runs.artifacts import fingerprint_tree
from kubesage.runs.inputs import resolve_inputs
from kubesage.runs.lifecycle import Run, new_record, new_run_id, plan_steps
from kubesage.runs.step_user import shared_with_steps

if TYPE_CHECKING:
    from kubesage.config.local import LocalConfig
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.options import RunOptions
    from kubesage.runs.record import RunRecord
    from kubesage.runs.workspace import Workspace


class Images(Protocol):
    """Where a run's step environments come from: images on a Docker engine, or the project's
    own code for steps that run as local processes."""

    def fresh(self, logical: set[str], say: Callable[[str], None]) -> dict[str, str]:
        """Make the environments of ``logical`` hold the working tree's code (rebuilding what
        is stale); logical image -> code hash."""
        ...

    def image_id(self, ref: str) -> str:
        """The identity of what ``ref`` runs (an image ID, or a code hash); a clear error when
        it does not exist."""
        ...

    def pins(self, recorded: dict[str, str]) -> dict[str, str]:
        """What a re-run pins: logical image -> the recorded ID, refused (``KubesageError``)
        when a recorded environment no longer exists or its code changed."""
        ...


class Execution(Protocol):
    """One run as a target executes it, prepared by ``RunTarget.prepare``."""

    runner: str  # how steps execute, as the record says (docker, subprocess, kfp.local-docker)
    compiled: str  # the compiled file executed ("" when none); its sha256 is recorded

    def step_image(self, logical: str) -> str:
        """The image a step record names for a logical image."""
        ...

    def execute(self, run: Run) -> None:
        """Run every step, updating ``run.record``; called inside ``run.active``."""
        ...

    def cancel(self) -> None:
        """Stop everything still running (the run was interrupted or failed)."""
        ...


class RunTarget(Protocol):
    """What the run path needs of a target (``kubesage.targets.base.Target`` provides it)."""

    @property
    def name(self) -> str: ...

    @property
    def local_config_hint(self) -> str: ...

    def check(self, pipeline: Pipeline, options: RunOptions) -> None: ...

    def logical_images(self, pipeline: Pipeline, config: Any) -> set[str]: ...

    def images(self, setup: RunSetup) -> Images: ...

    def prepare(self, setup: RunSetup) -> Execution: ...


@dataclass
class RunSetup:
    """Everything the core decided for one run, handed to the target that executes it."""

    run_id: str
    pipeline: Pipeline
    plan: Plan
    values: dict[str, Any]
    options: RunOptions
    config: Any  # the target's config, read once for the command
    local: LocalConfig  # the local config it names: store, data mounts, image tags, webhooks
    workspace: Workspace
    root: str  # the project whose images hold the code that runs
    mounts: dict[str, tuple[str, str]]  # mount name -> (path in the container, host folder)
    data: dict[str, str] = field(default_factory=dict)  # mount name -> fingerprint
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)  # input artifacts, resolved
    images: dict[str, str] = field(default_factory=dict)  # logical image -> image ID
    code: dict[str, str] = field(default_factory=dict)  # logical image -> code hash
    out: TextIO = sys.stderr

    def image(self, logical: str) -> str:
        """The image a logical name runs as: a pinned image (a re-run), else the configured tag."""
        return self.options.images.get(logical) or self.local.image(logical)

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


def project_root_of(path: str) -> str:
    """The project a pipeline file belongs to (the folder holding ``containers/``), else the
    current folder's."""
    from kubesage.project.loader import project_root

    return project_root(path or os.getcwd())


def run_pipeline(workspace: Workspace, target: RunTarget, pipeline: Pipeline,
                 options: RunOptions) -> RunRecord:
    """Run ``pipeline`` on ``target`` here, recorded in the workspace's store; its record."""
    target.check(pipeline, options)
    setup = _setup(workspace, target, pipeline, options)
    with shared_with_steps():  # folders made for the steps (outputs, checkpoints) accept them
        execution = target.prepare(setup)
        record = new_record(
            pipeline, options, run_id=setup.run_id, target=target.name, runner=execution.runner,
            values=setup.values, data=setup.data, images=setup.images, code=setup.code,
            compiled=execution.compiled, config=_config_file(workspace))
        record.inputs = setup.inputs
        record.steps = plan_steps(setup.plan, execution.step_image)
        record.groups = plan_groups(setup.plan)
        run = Run(record, workspace.store, webhooks=setup.local.webhooks, log=setup.out)
        with run.active(on_cancel=execution.cancel):
            execution.execute(run)
            publish_outputs(run, workspace)
        return run.finish()


def publish_outputs(run: Run, workspace: Workspace) -> None:
    """Every succeeded step's outputs and logs in the team's artifact store (a target whose
    steps published their own, as the local one does, left nothing to do); a step whose outputs
    cannot be published fails with the cause."""
    artifacts = workspace.artifacts
    if not artifacts.shared:
        return
    from kubesage.store.artifacts import ArtifactStoreError

    for step in run.record.steps:
        try:
            for out in step.outputs.values():
                if step.status == "succeeded" and not out.get("uri") and os.path.exists(out["path"]):
                    out["uri"] = artifacts.publish(out["path"], out["sha256"])
            if step.log and os.path.isfile(step.log) and not step.log_uri:
                step.log_uri = artifacts.publish_file(step.log,
                                                      f"logs/{run.run_id}/{step.name}/log.txt")
        except ArtifactStoreError as e:
            step.status, step.error = "failed", str(e)
            run.say(f"x {step.name} failed: {e}")
        run.changed(step)


def _setup(workspace: Workspace, target: RunTarget, pipeline: Pipeline,
           options: RunOptions) -> RunSetup:
    """Parameters, plan, mounts, fingerprints and images: everything decided before a step."""
    values = pipeline.resolve_parameters(options.params)
    local = workspace.local
    mounts = data_mounts(pipeline, local, target.local_config_hint)
    setup = RunSetup(
        run_id=new_run_id(pipeline.name), pipeline=pipeline, plan=Plan(pipeline, values),
        values=values, options=options, config=workspace.config, local=local,
        workspace=workspace, root=project_root_of(options.pipeline_file), mounts=mounts,
        data={name: fingerprint_tree(folder) for name, (_, folder) in mounts.items()},
        out=options.out())
    setup.inputs = resolve_inputs(pipeline, options.inputs, workspace.store)
    logical = target.logical_images(pipeline, workspace.config)
    images = target.images(setup)
    setup.code = images.fresh(logical - set(options.images), setup.say)
    # Fail before anything runs: every image must exist.
    setup.images = {name: images.image_id(setup.image(name)) for name in sorted(logical)}
    return setup


def _config_file(workspace: Workspace) -> str:
    """The target config file the run used, absolute ("" for the defaults)."""
    source = getattr(workspace.config, "source", "") or ""
    return "" if source in ("", "(defaults)") else os.path.abspath(source)

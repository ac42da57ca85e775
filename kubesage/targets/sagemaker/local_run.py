"""Execute a compiled SageMaker definition on this machine: no AWS account, no SageMaker SDK.

The definition JSON itself is the program (``local_execution``): steps run in dependency order,
pipeline expressions are evaluated against parameters, execution variables and the properties
of finished steps, property files are read from processing outputs, conditions pick a branch,
a Fail step fails the run. Job steps run in Docker under SageMaker's container contract
(``local_jobs``); S3 is a folder of the local run store (``local_s3``); FSx for Lustre is a
bind mount of the local config's folder; steps with ``CacheConfig`` are reused as the service
reuses them (``local_cache``).

``DefinitionRun`` is this target's execution of the one run path (``kubesage.runs.launch``); its
step records are the plan's steps, named as on every other path (``train``, ``per-client[1]``):
a definition step maps back onto the plan step it was compiled from. A pipeline fanned out over a
list parameter runs one execution per item, as ``kubesage submit --clients`` starts them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

from kubesage.config.local import ConfigError, LocalConfig
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.plan import Plan, Step
from kubesage.runs.launch import RunSetup
from kubesage.runs.lifecycle import Run
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.targets.base import Unsupported
from kubesage.targets.sagemaker.config import SageMakerConfig
from kubesage.targets.sagemaker.expressions import references, step_of
from kubesage.targets.sagemaker.local_s3 import LocalS3
from kubesage.util.atomic import write_atomic

DefinitionStep = tuple[dict[str, Any], tuple[str, str] | None]  # (step, (condition, branch))


def refusals(pipeline: Pipeline) -> None:
    """Refuse, by name, what SageMaker cannot run the way the other paths do."""
    retried = sorted(t.name for t in pipeline.tasks if t.retries)
    if retried:
        raise Unsupported(
            f"task {', '.join(retried)} sets retries, but SageMaker Pipelines retries a step only "
            "after a service fault (JOB_INTERNAL_ERROR, CAPACITY_ERROR), never after its component "
            "failed, as the other targets do; drop .set_retries() for this target (managed spot "
            "training resumes interrupted jobs from their checkpoints)")


class DefinitionRun:
    """One run of the compiled definition by ``DefinitionExecutor`` (the run path's
    ``Execution``): compiled, validated and kept in the run's folder before any step."""

    runner = "docker"

    def __init__(self, setup: RunSetup) -> None:
        from kubesage.targets.sagemaker import with_content_tags
        from kubesage.targets.sagemaker.compiler import definition_json
        from kubesage.targets.sagemaker.parameters import fan_out_parameters
        from kubesage.targets.sagemaker.validate import DefinitionInvalid, validate_definition

        self.setup = setup
        config = with_content_tags(setup.config, setup.pipeline, setup.options.pipeline_file)
        text = definition_json(setup.pipeline, config)
        doc = json.loads(text)
        problems = validate_definition(doc)
        if problems:
            raise DefinitionInvalid("the compiled definition is invalid:\n  " + "\n  ".join(problems))
        self.fan_out = fan_out_parameters(setup.pipeline)
        self.executor = DefinitionExecutor(doc, config, setup.local, image=setup.image,
                                           use_cache=setup.options.use_cache)
        if setup.options.resume_from:  # rerun --from-failed: the failed run's steps that succeeded
            self.executor.resumes = {s.name: s for s in
                                     setup.workspace.store.get(setup.options.resume_from).steps}
        self.steps = self.executor.ordered_steps()
        folder = os.path.join(self.executor.root, "runs", setup.run_id)
        self.compiled = os.path.join(folder, "definition.json")
        write_atomic(self.compiled, text)
        self.jobs: Any = None

    def step_image(self, logical: str) -> str:
        return self.setup.image(logical)

    def cancel(self) -> None:
        if self.jobs is not None:
            self.jobs.cancel()

    def execute(self, run: Run) -> None:
        from kubesage.targets.sagemaker.local_jobs import JobRunner

        values = self.setup.values
        base = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in values.items()}
        loops = sorted(set(self.fan_out.values()))
        # one execution per item, as `kubesage submit --clients` starts them
        executions = [{**base, loops[0]: item} for item in values[loops[0]]] if loops else [base]
        self.jobs = JobRunner(self.executor.docker(), self.executor.s3, run.run_id,
                              self.executor.local_image_of, self.executor.filesystem_for, run.say)
        self.executor.run(run, self.setup.plan, set(self.fan_out), self.steps, executions,
                          self.jobs)


class DefinitionExecutor:
    """Runs the steps of one definition (one execution per parameter set)."""

    def __init__(self, doc: dict[str, Any], config: SageMakerConfig, local: LocalConfig,
                 image: Callable[[str], str] | None = None, use_cache: bool = True) -> None:
        self.doc = doc
        self.config = config
        self.local = local
        self.image = image or local.image  # logical image -> what it runs as (a pin, a tag)
        self.use_cache = use_cache
        self.resumes: dict[str, StepRecord] = {}  # rerun --from-failed: step name -> its record
        self.root = os.path.join(os.path.abspath(local.store), "sagemaker")
        aliases = {m.s3_uri: local.mounts[name] for name, m in config.mounts.items()
                   if name in local.mounts}
        self.s3 = LocalS3(os.path.join(self.root, "s3"), aliases)
        self._client: Any = None
        self._image_ids: dict[str, str] = {}

    # -- the run ----------------------------------------------------------------------
    def run(self, run: Run, plan: Plan, fan_out: set[str], steps: list[DefinitionStep],
            executions: list[dict[str, Any]], jobs: Any) -> None:
        """Every execution's steps, in order; called inside ``run.active``."""
        from kubesage.targets.sagemaker.local_execution import Execution

        run.say(f"run {run.run_id}: {len(plan.steps)} steps of the SageMaker definition "
                f"({len(executions)} execution{'s' if len(executions) > 1 else ''}, docker)")
        for i, params in enumerate(executions):
            planned = self.records_of(plan, fan_out, steps, run.record, i)
            Execution(self, run, jobs, steps, planned, params, i).run()

    def records_of(self, plan: Plan, fan_out: set[str], steps: list[DefinitionStep],
                   record: RunRecord, execution: int) -> dict[str, tuple[Step, StepRecord]]:
        """Definition step name -> the plan step it runs and its record, for one execution.

        A step inside the fan-out loop is that loop's item ``execution``; a step outside it runs
        in every execution, and gets a record of its own (``probe@1``) after the first.
        """
        from kubesage.targets.sagemaker.compiler import sagemaker_name
        from kubesage.targets.sagemaker.local_members import members_of

        by_name = {r.name: r for r in record.steps}
        found: dict[str, tuple[Step, StepRecord]] = {}
        # a fused job's members are plan steps too (named as the compiler names them)
        wanted = {s["Name"] for s, _ in steps} | {m for s, _ in steps for m in members_of(s)}
        for step in plan.steps:
            in_fan_out = [g for g in step.loops if g.id in fan_out]
            if in_fan_out and step.index[step.loops.index(in_fan_out[0])] != execution:
                continue
            name = sagemaker_name(_literal_only(step, fan_out))
            if name not in wanted:
                continue
            own = by_name[step.name]
            if execution and not in_fan_out:  # ran in the first execution already
                own = StepRecord(name=f"{step.name}@{execution}", task=own.task,
                                 component=own.component, version=own.version, image=own.image)
                record.steps.append(own)
            found[name] = (step, own)
        return found

    def ordered_steps(self) -> list[DefinitionStep]:
        """Every step (condition branches included) after everything it refers to."""
        flat: list[DefinitionStep] = []

        def walk(steps: list[dict[str, Any]], branch: tuple[str, str] | None) -> None:
            for step in steps:
                flat.append((step, branch))
                if step["Type"] == "Condition":
                    walk(step["Arguments"].get("IfSteps", []), (step["Name"], "if"))
                    walk(step["Arguments"].get("ElseSteps", []), (step["Name"], "else"))

        walk(self.doc["Steps"], None)
        by_name = {s["Name"]: (s, b) for s, b in flat}
        ordered: list[DefinitionStep] = []
        state: dict[str, str] = {}

        def visit(name: str) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                raise KubesageError(f"definition: steps refer to each other in a cycle at '{name}'")
            state[name] = "active"
            step, branch = by_name[name]
            for dep in dependencies(step, branch):
                visit(dep)
            state[name] = "done"
            ordered.append(by_name[name])

        for step, _ in flat:
            visit(step["Name"])
        return ordered

    # -- environment ------------------------------------------------------------------
    def docker(self) -> Any:
        if self._client is None:
            import docker

            try:
                self._client = docker.from_env()
                self._client.ping()
            except Exception as e:
                raise KubesageError(f"cannot reach a Docker engine ({e}); start dockerd") from None
        return self._client

    def local_image_of(self, uri: str) -> str:
        """The local image an image URI of the definition runs as (a pinned ID in a re-run)."""
        for name, mapped in [*self.config.pinned.items(), *self.config.images.items()]:
            if mapped == uri:
                return self.image(name)
        return uri

    def image_id(self, image: str) -> str:
        if image not in self._image_ids:
            import docker.errors

            try:
                self._image_ids[image] = self.docker().images.get(image).id
            except docker.errors.ImageNotFound:
                raise KubesageError(f"image {image} is not built; run 'kubesage build' first") from None
        return self._image_ids[image]

    def filesystem_for(self, fs: dict[str, Any]) -> str:
        for name, mount in self.config.mounts.items():
            if (mount.file_system_id, mount.directory_path) == (fs["FileSystemId"], fs["DirectoryPath"]):
                folder = self.local.mounts.get(name)
                if folder is None:
                    raise ConfigError(
                        f"{self.local.source} has no 'mounts.{name}', which plays FSx file system "
                        f"{fs['FileSystemId']} in local runs; add mounts: {{{name}: /path/to/folder}}")
                if not os.path.isdir(folder):
                    raise ConfigError(f"mounts.{name} in {self.local.source}: folder {folder} does not "
                                      "exist; create it (or run 'kubesage sample-data')")
                return folder
        raise ConfigError(
            f"the definition mounts FSx file system {fs['FileSystemId']}:{fs['DirectoryPath']}, "
            f"which no 'mounts' entry of {self.config.source} names")


def _literal_only(step: Step, fan_out: set[str]) -> Step:
    """The step as the compiler named it: only literal loops' items are in its name."""
    index = tuple(i for i, g in zip(step.index, step.loops, strict=True) if g.id not in fan_out)
    loops = tuple(g for g in step.loops if g.id not in fan_out)
    return Step(step.task, index, step.name, loops)


def image_uri(step: dict[str, Any]) -> str | None:
    """The image URI a job step runs."""
    args = step.get("Arguments", {})
    uri = (args.get("AppSpecification", {}).get("ImageUri")
           or args.get("AlgorithmSpecification", {}).get("TrainingImage")
           or args.get("PrimaryContainer", {}).get("Image"))  # a model a transform job serves
    return uri if isinstance(uri, str) else None


def dependencies(step: dict[str, Any], branch: tuple[str, str] | None) -> list[str]:
    """Names of the steps ``step`` refers to or depends on (its condition's, in a branch)."""
    own = step.get("Arguments", {})
    if step["Type"] == "Condition":  # its branches are its own business
        own = {"Conditions": own.get("Conditions", [])}
    deps = [d for d in (step_of(p) for p in references({**own, "_": step.get("PropertyFiles")}))
            if d]
    deps += list(step.get("DependsOn", []))
    if branch:
        deps.append(branch[0])
    return sorted(set(deps) - {step["Name"]})

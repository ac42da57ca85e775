"""Execute a compiled SageMaker definition on this machine: no AWS account, no SageMaker SDK.

The definition JSON itself is the program (``local_execution``): steps run in dependency order,
pipeline expressions are evaluated against parameters, execution variables and the properties
of finished steps, property files are read from processing outputs, conditions pick a branch,
a Fail step fails the run. Job steps run in Docker under SageMaker's container contract
(``local_jobs``); S3 is a folder of the local run store (``local_s3``); FSx for Lustre is a
bind mount of the local config's folder; steps with ``CacheConfig`` are reused as the service
reuses them (``local_cache``).

The run has the lifecycle of every run (``kubesage.runs.lifecycle``) and its step records are
the plan's steps, named as on every other path (``train``, ``per-client[1]``): a definition step
maps back onto the plan step it was compiled from. A pipeline fanned out over a list parameter
runs one execution per item, as ``kubesage submit --clients`` starts them.
"""

from __future__ import annotations

import json
import os
from typing import Any

from kubesage.config.local import ConfigError, LocalConfig, data_mounts, load_local_config
from kubesage.docker_engine.images import ensure_fresh
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.plan import Plan, Step
from kubesage.project.loader import project_root
from kubesage.runs.artifacts import fingerprint_tree
from kubesage.runs.lifecycle import Run, new_record, plan_steps
from kubesage.runs.lineage import file_sha256
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.runs.store import RunStore
from kubesage.targets.base import RunOptions, Unsupported
from kubesage.targets.sagemaker.config import SageMakerConfig, load_config
from kubesage.targets.sagemaker.expressions import references, step_of
from kubesage.targets.sagemaker.local_s3 import LocalS3

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


def run_compiled(pipeline: Pipeline, options: RunOptions) -> RunRecord:
    """Compile ``pipeline`` for SageMaker, then execute the definition JSON locally."""
    from kubesage.targets.sagemaker import images_of, with_content_tags
    from kubesage.targets.sagemaker.compiler import definition_json
    from kubesage.targets.sagemaker.parameters import fan_out_parameters
    from kubesage.targets.sagemaker.validate import DefinitionInvalid, validate_definition

    config = load_config(options.config)
    local = load_local_config(config.local_config)
    values = pipeline.resolve_parameters(options.params)
    root = project_root(options.pipeline_file or os.getcwd())
    code = ensure_fresh(root, set(images_of(pipeline, config)) - set(options.images),
                        local.image_tag, lambda text: print(text, file=options.out(), flush=True))
    config = with_content_tags(config, pipeline, options.pipeline_file)
    text = definition_json(pipeline, config)
    doc = json.loads(text)
    problems = validate_definition(doc)
    if problems:
        raise DefinitionInvalid("the compiled definition is invalid:\n  " + "\n  ".join(problems))
    fan_out = fan_out_parameters(pipeline)
    executor = DefinitionExecutor(doc, config, local, pins=options.images,
                                  use_cache=options.use_cache)
    if options.resume_from:  # rerun --from-failed: the failed run's steps that succeeded
        executor.resumes = {s.name: s for s in RunStore(local.store).get(options.resume_from).steps}
    steps = executor.ordered_steps()
    images = executor.check_images(steps)
    plan = Plan(pipeline, values)
    record = new_record(
        pipeline, options, target="sagemaker", runner="docker", values=values, images=images,
        code=code,
        data={name: fingerprint_tree(folder) for name, (_, folder) in data_mounts(
            pipeline, local, "the local config (config/sagemaker.yaml's local_config names it)").items()},
        config=config.source)
    folder = os.path.join(executor.root, "runs", record.run_id)
    os.makedirs(folder, exist_ok=True)
    compiled = os.path.join(folder, "definition.json")
    with open(compiled, "w") as f:
        f.write(text)
    record.compiled_sha256 = file_sha256(compiled)
    record.steps = plan_steps(plan, lambda logical: options.images.get(logical) or local.image(logical))
    base = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in values.items()}
    loops = sorted(set(fan_out.values()))
    if loops:  # one execution per item, as `kubesage submit --clients` starts them
        executions = [{**base, loops[0]: item} for item in values[loops[0]]]
    else:
        executions = [base]
    run = Run(record, RunStore(local.store), webhooks=local.webhooks, log=options.out())
    return executor.run(run, plan, set(fan_out), steps, executions)


class DefinitionExecutor:
    """Runs the steps of one definition (one execution per parameter set)."""

    def __init__(self, doc: dict[str, Any], config: SageMakerConfig, local: LocalConfig,
                 pins: dict[str, str] | None = None, use_cache: bool = True) -> None:
        self.doc = doc
        self.config = config
        self.local = local
        self.pins = dict(pins or {})  # logical image -> image ID (a re-run)
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
            executions: list[dict[str, Any]]) -> RunRecord:
        from kubesage.targets.sagemaker.local_execution import Execution
        from kubesage.targets.sagemaker.local_jobs import JobRunner

        record = run.record
        run.say(f"run {run.run_id}: {len(plan.steps)} steps of the SageMaker definition "
                f"({len(executions)} execution{'s' if len(executions) > 1 else ''}, docker)")
        jobs = JobRunner(self._docker(), self.s3, run.run_id, self.local_image_of,
                         self.filesystem_for, run.say)
        with run.active(on_cancel=jobs.cancel):
            for i, params in enumerate(executions):
                planned = self.records_of(plan, fan_out, steps, record, i)
                Execution(self, run, jobs, steps, planned, params, i).run()
        return run.finish()

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
    def _docker(self) -> Any:
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
                return self.pins.get(name) or self.local.image(name)
        return uri

    def image_id(self, image: str) -> str:
        if image not in self._image_ids:
            import docker.errors

            try:
                self._image_ids[image] = self._docker().images.get(image).id
            except docker.errors.ImageNotFound:
                raise KubesageError(f"image {image} is not built; run 'kubesage build' first") from None
        return self._image_ids[image]

    def check_images(self, steps: list[DefinitionStep]) -> dict[str, str]:
        """Logical image -> image ID of every image the definition runs; fails if one is missing."""
        found = {}
        for step, _ in steps:
            uri = image_uri(step)
            if uri is None:
                continue
            logical = next((n for n, mapped in [*self.config.pinned.items(),
                                                *self.config.images.items()] if mapped == uri), uri)
            found[logical] = self.image_id(self.local_image_of(uri))
        return dict(sorted(found.items()))

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

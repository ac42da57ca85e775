"""One execution of a SageMaker definition: its parameters, step properties, property files and
branch outcomes, and what each step type does (processing, training and transform jobs,
model creation, condition, fail, model registration).

A definition step that was compiled from a plan step fills that step's record; a fused job (one
step running several plan steps) fills each member's record (``local_members``); the steps that
SageMaker adds (a ``ConditionStep``, its ``FailStep``, the model, transform and requests steps of
a batch transform) are kept out of the record, except one that fails (a Fail step that runs),
which fails the run and says why.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import time
import traceback
from typing import TYPE_CHECKING, Any

from kubesage.dsl.channel import evaluate
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.interface import ComponentSpec
from kubesage.dsl.types import masked, parse_value
from kubesage.plan import Step
from kubesage.runs.artifacts import sha256_tree
from kubesage.runs.lifecycle import Run
from kubesage.runs.record import StepRecord
from kubesage.runtime.sagemaker_processing import METADATA_DIR, RESULT_OUTPUT
from kubesage.targets.sagemaker import local_cache
from kubesage.targets.sagemaker.expressions import Evaluator, split_path
from kubesage.targets.sagemaker.local_jobs import JobFailed, JobRunner
from kubesage.targets.sagemaker.local_members import (
    Left,
    job_outputs_folder,
    left_by_processing,
    left_by_training,
    members_of,
    settle,
)

if TYPE_CHECKING:
    from kubesage.targets.sagemaker.local_run import DefinitionExecutor, DefinitionStep

_OPERATORS = {"Equals": "==", "GreaterThan": ">", "GreaterThanOrEqualTo": ">=",
              "LessThan": "<", "LessThanOrEqualTo": "<="}


RESUME = "resume:"  # the cache index entry of a step without caching, for --from-failed


class Execution:
    """Runs every step of the definition once, in dependency order."""

    def __init__(self, owner: DefinitionExecutor, run: Run, jobs: JobRunner,
                 steps: list[DefinitionStep], planned: dict[str, tuple[Step, StepRecord]],
                 params: dict[str, Any], number: int) -> None:
        self.owner = owner
        self.run_ = run
        self.jobs = jobs
        self.steps = steps
        self.planned = planned  # definition step name -> (plan step, its record)
        self.records = {name: record for name, (_, record) in planned.items()}
        self.params = params
        self.number = number
        self.status: dict[str, str] = {}  # every definition step's state in this execution
        suffix = f"-{number}" if number else ""
        self.execution_id = f"local-{run.run_id}{suffix}"
        self.properties: dict[str, Any] = {}
        self.property_files: dict[tuple[str, str], Any] = {}
        self.outcomes: dict[str, bool] = {}
        self.models: dict[str, dict[str, Any]] = {}  # models created: name -> CreateModel request
        self.evaluate = Evaluator(self._lookup, self._property_file)
        # a fused job's definition step -> its members' plan steps and records, in order
        self.fused = {s["Name"]: [planned[m] for m in members_of(s) if m in planned]
                      for s, _ in steps if members_of(s)}
        self.left: dict[str, dict[str, Left]] = {}  # a fused job -> what each member left
        self.requests: dict[str, dict[str, Any]] = {}  # a fused job -> its resolved request

    # -- expressions ------------------------------------------------------------------
    def _lookup(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            if rest not in self.params:
                raise KubesageError(f"parameter '{rest}' has no value; pass --param {rest}=...")
            return self.params[rest]
        if head == "Execution":
            record = self.run_.record
            config = self.owner.config
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return {"PipelineExecutionId": self.execution_id,
                    "PipelineName": self.owner.doc.get("PipelineName", record.pipeline),
                    "PipelineExecutionArn": f"arn:aws:sagemaker:{config.region}:{config.account_id}"
                    f":pipeline/{record.pipeline}/execution/{self.execution_id}",
                    "StartDateTime": now, "CurrentDateTime": now}[rest]
        if head == "Steps":
            step, _, prop = rest.partition(".")
            value: Any = self.properties[step]
            for key in split_path(prop):
                value = value[key]
            return value
        raise KubesageError(f"cannot evaluate {{'Get': {path!r}}} locally")

    def _property_file(self, step: str, name: str) -> Any:
        return self.property_files[(step, name)]

    # -- the steps --------------------------------------------------------------------
    def run(self) -> None:
        from kubesage.targets.sagemaker.local_run import dependencies

        failed_run = False
        for step, branch in self.steps:
            name = step["Name"]
            members = self.fused.get(name, [])
            record = self.records.get(name) or StepRecord(
                name=name, task="", component=step["Type"], version="",
                image=members[0][1].image if members else "")
            deps = [self.status[d] for d in dependencies(step, branch)]
            if failed_run or any(d in ("failed", "not_run", "cancelled") for d in deps):
                record.status = "not_run"  # a failed condition runs neither branch
            elif branch and (self.status[branch[0]] != "succeeded"
                             or self.outcomes[branch[0]] != (branch[1] == "if")):
                record.status = "skipped"
                if name in self.records:
                    self.run_.say(f"- {record.name} skipped ({branch[0]}: {branch[1]} branch not taken)")
            elif any(d == "skipped" for d in deps):
                record.status = "skipped"
            else:
                self._run_step(step, record)
                failed_run = record.status == "failed"
                if name not in self.records and record.status == "failed" and not members:
                    if self.number:
                        record.name = f"{record.name}@{self.number}"
                    self.run_.record.steps.append(record)  # it fails the run: the record says why
            self.status[name] = record.status
            self.run_.changed(record)
            if members:
                self._settle(step, record, members)

    def _settle(self, step: dict[str, Any], job: StepRecord,
                members: list[tuple[Step, StepRecord]]) -> None:
        """A fused job's members: what each left, or the job's own state (skipped, not run)."""
        if job.status in ("skipped", "not_run", "cancelled"):
            for _, record in members:
                record.status, record.job = job.status, step["Name"]
                self.run_.changed(record)
            return
        settle(step, self.requests.get(step["Name"], {}), members,
               self.left.get(step["Name"], {}), job)
        for _, record in members:
            self.run_.say(f"  {record.name} {record.status} (in job {step['Name']})")
            self.run_.changed(record)

    def _run_step(self, step: dict[str, Any], record: StepRecord) -> None:
        record.status, record.started = "running", time.time()
        self.run_.changed(record)
        self.run_.say(f"> {record.name} ({step['Type']}) started")
        try:
            {"Processing": self._job, "Training": self._job, "Transform": self._job,
             "Model": self._model, "Condition": self._condition, "Fail": self._fail,
             "RegisterModel": self._register}.get(
                step["Type"], self._unsupported)(step, record)
        except (JobFailed, KubesageError) as e:
            record.status, record.error = "failed", str(e)
        except Exception as e:  # a bug here must still leave a record that says what happened
            record.status, record.error = "failed", "".join(traceback.format_exception(e))
        record.ended = time.time()
        if record.status == "running":
            record.status = "succeeded"
        took = record.ended - (record.started or record.ended)
        if record.status == "failed":
            self.run_.say(f"x {record.name} failed: {record.error}")
        else:
            self.run_.say(f"+ {record.name} {record.status} in {took:.1f}s"
                          + (" (cached)" if record.cached else ""))

    def _unsupported(self, step: dict[str, Any], record: StepRecord) -> None:
        raise KubesageError(f"step type {step['Type']} has no local executor yet")

    # -- step types -------------------------------------------------------------------
    def _condition(self, step: dict[str, Any], record: StepRecord) -> None:
        holds = all(self._holds(c) for c in step["Arguments"]["Conditions"])
        self.outcomes[step["Name"]] = holds
        record.returns = {"outcome": holds}

    def _holds(self, cond: dict[str, Any]) -> bool:
        kind = cond["Type"]
        if kind == "Not":
            return not self._holds(cond["Expression"])
        if kind == "Or":
            return any(self._holds(c) for c in cond["Conditions"])
        if kind == "In":
            return self.evaluate(cond["QueryValue"]) in self.evaluate(cond["Values"])
        return evaluate(_OPERATORS[kind], self.evaluate(cond["LeftValue"]),
                        self.evaluate(cond["RightValue"]))

    def _fail(self, step: dict[str, Any], record: StepRecord) -> None:
        message = self.evaluate(step["Arguments"].get("ErrorMessage", "Fail step"))
        record.status, record.error = "failed", f"Fail step: {message}"

    def _register(self, step: dict[str, Any], record: StepRecord) -> None:
        request = self.evaluate(step["Arguments"])
        group = request.get("ModelPackageGroupName", "unversioned")
        folder = os.path.join(self.owner.root, "model-registry", group)
        os.makedirs(folder, exist_ok=True)
        version = len([f for f in os.listdir(folder) if f.endswith(".json")]) + 1
        config = self.owner.config
        arn = f"arn:aws:sagemaker:{config.region}:{config.account_id}:model-package/{group}/{version}"
        with open(os.path.join(folder, f"{version}.json"), "w") as f:
            json.dump({"ModelPackageArn": arn, "ModelPackageVersion": version,
                       "Request": request, "RunId": self.run_.run_id}, f, indent=2)
        self.properties[step["Name"]] = {"ModelPackageArn": arn}
        record.returns = {"model_package_arn": arn}
        planned = self.planned.get(step["Name"])
        types = {p.name: p.type for p in planned[0].task.spec.parameters} if planned else {}
        record.parameters = masked(dict(request.get("CustomerMetadataProperties", {})), types)

    def _model(self, step: dict[str, Any], record: StepRecord) -> None:
        """CreateModel: kept for the transform jobs that name it (no container starts here)."""
        args = self.evaluate(step["Arguments"])
        name = f"{step['Name']}-{self.run_.run_id[-6:]}{'-' + str(self.number) if self.number else ''}"
        self.models[name] = args
        self.properties[step["Name"]] = {"ModelName": name, "PrimaryContainer": {
            "Image": args["PrimaryContainer"]["Image"]}}

    def _job(self, step: dict[str, Any], record: StepRecord) -> None:
        args = self.evaluate(step["Arguments"])
        planned = self.planned.get(step["Name"])
        types = {p.name: p.type for p in planned[0].task.spec.parameters} if planned else {}
        record.parameters = masked(_parameters(step["Type"], args), types)
        model = self.models.get(args.get("ModelName", "")) if step["Type"] == "Transform" else None
        if step["Type"] == "Transform" and model is None:
            raise KubesageError(f"transform job '{step['Name']}' names model "
                                f"{args.get('ModelName')!r}, which no step of this execution "
                                "created")
        image = model["PrimaryContainer"]["Image"] if model else ""
        record.environment_id = (self.owner.image_id(record.image) if record.image else
                                 self.owner.image_id(self.owner.local_image_of(image)) if image
                                 else "")
        key = local_cache.cache_key(step, args, record.environment_id, self.owner.s3,
                                    self.owner.filesystem_for)
        record.cache_key = key
        cacheable = bool(step.get("CacheConfig", {}).get("Enabled"))
        self.requests[step["Name"]] = args
        names = [r.name for _, r in self.fused.get(step["Name"], [])] or [record.name]
        befores = [self.owner.resumes.get(n) for n in names]  # rerun --from-failed: reuse success
        reuse = all(b is not None and b.status == "succeeded" and b.cache_key == key
                    for b in befores)
        if reuse or (cacheable and self.owner.use_cache):
            hit = local_cache.lookup(self.run_.store, self.owner.s3, key if cacheable else
                                     RESUME + key,
                                     None if reuse else step["CacheConfig"].get("ExpireAfter"))
            if hit is not None:
                self._finish(step, record, hit["properties"], hit["result"], hit["outputs"])
                record.cached, record.cached_from = True, str(hit.get("run_id") or "")
                self.run_.say(f"= {record.name} {'reused' if reuse else 'cached'} "
                              f"(from {hit['run_id']})")
                return
        name = record.name.replace("[", "-").replace("]", "").replace("@", "-")
        work = os.path.join(self.owner.root, "runs", self.run_.run_id, name)
        shutil.rmtree(work, ignore_errors=True)
        job = f"{name}-{self.run_.run_id[-6:]}"[-63:].lstrip("-")
        if step["Type"] == "Processing":
            try:
                result = self.jobs.processing(record.name, args, work, job)
            except JobFailed as e:  # a fused job's finished members left their outputs
                partial = getattr(e, "partial", None)
                if partial is not None and step["Name"] in self.fused:
                    self._members_left(step, partial.outputs, {})
                raise
        elif model is not None:
            data = model["PrimaryContainer"]["ModelDataUrl"]
            source = self.owner.s3.path(data)
            if not os.path.exists(source):
                raise JobFailed(f"{record.name}: no model data at {data}")
            folder = self._unpacked(source) if os.path.isfile(source) else source
            result = self.jobs.transform(record.name, args, model, folder, work, job)
        else:
            checkpoints = None
            if "CheckpointConfig" in args:  # kept, as in S3: a spot restart resumes from them
                checkpoints = self.owner.s3.path(args["CheckpointConfig"]["S3Uri"])
                os.makedirs(checkpoints, exist_ok=True)
            try:
                result = self.jobs.training(record.name, args, work, job, checkpoints)
            except JobFailed:
                if step["Name"] in self.fused:
                    self._members_left(step, {}, {})
                raise
        record.attempts = result.attempts
        self._finish(step, record, result.properties, result.result, result.outputs)
        # every job is entered: a step without caching only for a later --from-failed
        local_cache.put(self.run_.store, key if cacheable else RESUME + key, result.properties,
                        result.result, result.outputs, self.run_.run_id,
                        since=record.started or time.time())
        shutil.rmtree(work, ignore_errors=True)

    def _members_left(self, step: dict[str, Any], outputs: dict[str, tuple[str, str]],
                      result: dict[str, Any]) -> None:
        """Read what each member of a fused job left."""
        args = self.requests[step["Name"]]
        names = members_of(step)
        if step["Type"] == "Processing":
            found = job_outputs_folder(outputs)
            self.left[step["Name"]] = left_by_processing(found[0], found[1], names) if found else {}
            return
        checkpoints = (self.owner.s3.path(args["CheckpointConfig"]["S3Uri"])
                       if "CheckpointConfig" in args else None)
        self.left[step["Name"]] = left_by_training(args, outputs, result, self._unpacked,
                                                   checkpoints)

    def _finish(self, step: dict[str, Any], record: StepRecord, properties: dict[str, Any],
                result: dict[str, Any], outputs: dict[str, tuple[str, str]]) -> None:
        if step["Name"] in self.fused:
            self._members_left(step, outputs, result)
        self.properties[step["Name"]] = properties
        for pf in step.get("PropertyFiles", []):
            uri, local = outputs[pf["OutputName"]]
            with open(os.path.join(local, pf["FilePath"])) as f:
                self.property_files[(step["Name"], pf["PropertyFileName"])] = json.load(f)
        record.returns = result.get("returns", {})
        planned = self.planned.get(step["Name"])
        spec = planned[0].task.spec if planned else None
        if spec is not None and spec.container is not None and RESULT_OUTPUT in outputs:
            record.returns = _output_parameters(spec, outputs[RESULT_OUTPUT][1])
        record.metrics = result.get("metrics", {})
        record.series = result.get("series", {})
        metadata = result.get("artifacts", {})
        for name, (uri, local) in outputs.items():
            if name == RESULT_OUTPUT or (step["Type"] == "Training" and name == "output"):
                continue  # the training job's output.tar.gz: its members' (local_members)
            if os.path.isfile(local) and local.endswith(".tar.gz"):  # a training job's model
                folder = self._unpacked(local)
                names = sorted(metadata) or [n for n in sorted(os.listdir(folder))
                                             if n != METADATA_DIR]
                for inner in names:
                    path = os.path.join(folder, inner)
                    record.outputs[inner] = {"path": path, "uri": f"{uri}#{inner}",
                                             "sha256": sha256_tree(path),
                                             "metadata": metadata.get(inner, {})}
                continue
            record.outputs[name] = {"path": local, "uri": uri, "sha256": sha256_tree(local),
                                    "metadata": metadata.get(name, {})}

    def _unpacked(self, archive: str) -> str:
        """``model.tar.gz`` unpacked once (beside the local S3, by content): one folder per
        output artifact of the training job."""
        folder = os.path.join(self.owner.root, "unpacked", sha256_tree(archive)[:24])
        if not os.path.isdir(folder):
            partial = folder + ".partial"
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            with tarfile.open(archive) as tar:
                tar.extractall(partial, filter="data")
            os.replace(partial, folder)
        return folder


def _output_parameters(spec: ComponentSpec, folder: str) -> dict[str, Any]:
    """A container component's output parameters: the files its command wrote them to, typed
    as Kubeflow's launcher types them (kept in S3; SageMaker itself reads JSON property files)."""
    found = {}
    for r in spec.returns:
        path = os.path.join(folder, r.name)
        if os.path.isfile(path):
            with open(path) as f:
                found[r.name] = parse_value(r.type, f.read())
    return found


def _parameters(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """The component parameters a job received (container arguments or hyperparameters)."""
    if kind == "Training":
        return dict(args.get("HyperParameters", {}))
    items = list(args.get("AppSpecification", {}).get("ContainerArguments", []))
    out = {}
    for i, item in enumerate(items[:-2]):
        if item == "--param":
            out[items[i + 1]] = items[i + 2]
    return out

"""Execute a compiled SageMaker definition on this machine: no AWS account, no SageMaker SDK.

The definition JSON itself is the program: steps run in dependency order, pipeline
expressions are evaluated against parameters, execution variables and the properties of
finished steps, property files are read from processing outputs, conditions pick a branch, a
Fail step fails the run. Job steps run in Docker under SageMaker's container contract
(``local_jobs``); S3 is a folder of the local run store (``local_s3``); FSx for Lustre is a
bind mount of the local config's folder. Steps with ``CacheConfig`` are reused when their
resolved request, image and input contents are unchanged. Every run is a ``RunRecord``
(``target="sagemaker"``) in the local run store, so ``kubesage runs list`` shows it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
import traceback
from typing import Any, TextIO

from kubesage.dsl.channel import evaluate
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.runs.artifacts import fingerprint_tree, sha256_tree
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.runs.store import RunStore
from kubesage.targets.local.config import ConfigError, LocalConfig, load_local_config
from kubesage.targets.local.runner import new_run_id
from kubesage.targets.sagemaker.config import SageMakerConfig, load_config
from kubesage.targets.sagemaker.expressions import Evaluator, references, split_path, step_of
from kubesage.targets.sagemaker.local_jobs import JobFailed, JobRunner
from kubesage.targets.sagemaker.local_s3 import LocalS3

_OPERATORS = {"Equals": "==", "GreaterThan": ">", "GreaterThanOrEqualTo": ">=",
              "LessThan": "<", "LessThanOrEqualTo": "<="}


def run_compiled(pipeline: Pipeline, params: dict[str, Any], config_path: str | None,
                 pipeline_file: str = "", log: TextIO | None = None) -> RunRecord:
    """Compile ``pipeline`` for SageMaker, then execute the definition JSON locally."""
    from kubesage.targets.sagemaker.compiler import definition_json
    from kubesage.targets.sagemaker.parameters import fan_out_parameters
    from kubesage.targets.sagemaker.validate import DefinitionInvalid, validate_definition

    config = load_config(config_path)
    local = load_local_config(config.local_config)
    values = pipeline.resolve_parameters(params)
    text = definition_json(pipeline, config)
    doc = json.loads(text)
    problems = validate_definition(doc)
    if problems:
        raise DefinitionInvalid("the compiled definition is invalid:\n  " + "\n  ".join(problems))
    fan_out = sorted(set(fan_out_parameters(pipeline).values()))
    executions: list[dict[str, Any]] = []
    base = {k: (json.dumps(v) if isinstance(v, (list, dict)) else v) for k, v in values.items()}
    if fan_out:  # one execution per item, as `kubesage submit --clients` starts them
        name = fan_out[0]
        executions = [{**base, name: item} for item in values[name]]
    else:
        executions = [base]
    executor = DefinitionExecutor(doc, config, local, log or sys.stderr)
    return executor.run(pipeline, values, executions, pipeline_file, text)


class DefinitionExecutor:
    """Runs the steps of one definition (one execution per parameter set)."""

    def __init__(self, doc: dict[str, Any], config: SageMakerConfig, local: LocalConfig,
                 log: TextIO) -> None:
        self.doc = doc
        self.config = config
        self.local = local
        self.log = log
        self.store = RunStore(local.store)
        self.root = os.path.join(os.path.abspath(local.store), "sagemaker")
        aliases = {m.s3_uri: local.mounts[name] for name, m in config.mounts.items()
                   if name in local.mounts}
        self.s3 = LocalS3(os.path.join(self.root, "s3"), aliases)
        self._client: Any = None
        self._image_ids: dict[str, str] = {}

    # -- the run ----------------------------------------------------------------------
    def run(self, pipeline: Pipeline, values: dict[str, Any], executions: list[dict[str, Any]],
            pipeline_file: str, text: str) -> RunRecord:
        run_id = new_run_id(pipeline.name)
        steps = self._ordered_steps()
        self._check_images(steps)
        record = RunRecord(
            run_id=run_id, pipeline=pipeline.name,
            pipeline_file=os.path.abspath(pipeline_file) if pipeline_file else "",
            pipeline_hash=hashlib.sha256(text.encode()).hexdigest(), runner="docker",
            target="sagemaker", parameters=values, started=time.time(),
            data={name: fingerprint_tree(folder) for name, folder in self.local.mounts.items()
                  if name in self.config.mounts and os.path.isdir(folder)},
        )
        os.makedirs(os.path.join(self.root, "runs", run_id), exist_ok=True)
        with open(os.path.join(self.root, "runs", run_id, "definition.json"), "w") as f:
            f.write(text)
        for i in range(len(executions)):
            suffix = f"[{i}]" if len(executions) > 1 else ""
            for step, _ in steps:
                record.steps.append(self._step_record(step, suffix))
        self.store.save(record)
        self._say(f"run {run_id}: {len(record.steps)} steps of the SageMaker definition "
                  f"({len(executions)} execution{'s' if len(executions) > 1 else ''}, docker)")
        jobs = JobRunner(self._docker(), self.s3, run_id, self._image_for, self._filesystem_for,
                         self._say)
        try:
            for i, params in enumerate(executions):
                suffix = f"[{i}]" if len(executions) > 1 else ""
                _Execution(self, jobs, record, steps, params, suffix).run()
        except BaseException as e:  # Ctrl-C, or a fault of kubesage's: the record says so
            jobs.cancel()
            interrupted = isinstance(e, KeyboardInterrupt)
            for s in record.steps:
                if s.status in ("pending", "running"):
                    s.status, s.ended = ("cancelled" if interrupted else "not_run"), time.time()
            record.status, record.ended = ("cancelled" if interrupted else "failed"), time.time()
            self.store.save(record)
            raise
        record.status = "failed" if any(s.status == "failed" for s in record.steps) else "succeeded"
        record.ended = time.time()
        self.store.save(record)
        self._say(f"run {run_id} {record.status} in {record.ended - record.started:.1f}s")
        return record

    def _ordered_steps(self) -> list[tuple[dict[str, Any], tuple[str, str] | None]]:
        """Every step (condition branches included) after everything it refers to."""
        flat: list[tuple[dict[str, Any], tuple[str, str] | None]] = []

        def walk(steps: list[dict[str, Any]], branch: tuple[str, str] | None) -> None:
            for step in steps:
                flat.append((step, branch))
                if step["Type"] == "Condition":
                    walk(step["Arguments"].get("IfSteps", []), (step["Name"], "if"))
                    walk(step["Arguments"].get("ElseSteps", []), (step["Name"], "else"))

        walk(self.doc["Steps"], None)
        by_name = {s["Name"]: (s, b) for s, b in flat}
        ordered: list[tuple[dict[str, Any], tuple[str, str] | None]] = []
        state: dict[str, str] = {}

        def visit(name: str) -> None:
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                raise KubesageError(f"definition: steps refer to each other in a cycle at '{name}'")
            state[name] = "active"
            step, branch = by_name[name]
            for dep in self.dependencies(step, branch):
                visit(dep)
            state[name] = "done"
            ordered.append(by_name[name])

        for step, _ in flat:
            visit(step["Name"])
        return ordered

    @staticmethod
    def dependencies(step: dict[str, Any], branch: tuple[str, str] | None) -> list[str]:
        own = step.get("Arguments", {})
        if step["Type"] == "Condition":  # its branches are its own business
            own = {"Conditions": own.get("Conditions", [])}
        deps = [d for d in (step_of(p) for p in references({**own, "_": step.get("PropertyFiles")}))
                if d]
        deps += list(step.get("DependsOn", []))
        if branch:
            deps.append(branch[0])
        return sorted(set(deps) - {step["Name"]})

    def _step_record(self, step: dict[str, Any], suffix: str) -> StepRecord:
        spec = self._spec(step)
        image = ""
        args = step.get("Arguments", {})
        uri = (args.get("AppSpecification", {}).get("ImageUri")
               or args.get("AlgorithmSpecification", {}).get("TrainingImage"))
        if isinstance(uri, str):
            image = self._image_for(uri)
        return StepRecord(
            name=step["Name"] + suffix, task=step["Name"],
            component=spec.name if spec else step["Type"],
            version=spec.version if spec else "", image=image)

    @staticmethod
    def _spec(step: dict[str, Any]) -> Any:
        from kubesage.runtime.invoke import load_component

        args = step.get("Arguments", {})
        entry = args.get("Environment", {}).get("KUBESAGE_ENTRY")
        container_args = args.get("AppSpecification", {}).get("ContainerArguments", [])
        if "--entry" in container_args:
            entry = container_args[container_args.index("--entry") + 1]
        if not isinstance(entry, str):
            return None
        try:
            return load_component(entry).spec
        except Exception:
            return None

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

    def _image_for(self, uri: str) -> str:
        for name, mapped in self.config.images.items():
            if mapped == uri:
                return self.local.image(name)
        return uri

    def image_id(self, image: str) -> str:
        if image not in self._image_ids:
            import docker.errors

            try:
                self._image_ids[image] = self._docker().images.get(image).id
            except docker.errors.ImageNotFound:
                raise KubesageError(f"image {image} is not built; run 'kubesage build' first") from None
        return self._image_ids[image]

    def _check_images(self, steps: list[tuple[dict[str, Any], Any]]) -> None:
        for step, _ in steps:
            record = self._step_record(step, "")
            if record.image:
                self.image_id(record.image)

    def _filesystem_for(self, fs: dict[str, Any]) -> str:
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

    def _say(self, text: str) -> None:
        print(text, file=self.log, flush=True)


class _Execution:
    """One execution: parameter values, step properties, property files, branch outcomes."""

    def __init__(self, owner: DefinitionExecutor, jobs: JobRunner, record: RunRecord,
                 steps: list[tuple[dict[str, Any], tuple[str, str] | None]],
                 params: dict[str, Any], suffix: str) -> None:
        self.owner = owner
        self.jobs = jobs
        self.record = record
        self.steps = steps
        self.params = params
        self.suffix = suffix
        self.execution_id = f"local-{record.run_id}{suffix.strip('[]') and '-' + suffix.strip('[]')}"
        self.properties: dict[str, Any] = {}
        self.property_files: dict[tuple[str, str], Any] = {}
        self.outcomes: dict[str, bool] = {}
        self.evaluate = Evaluator(self._lookup, self._property_file)

    def _lookup(self, path: str) -> Any:
        head, _, rest = path.partition(".")
        if head == "Parameters":
            if rest not in self.params:
                raise KubesageError(f"parameter '{rest}' has no value; pass --param {rest}=...")
            return self.params[rest]
        if head == "Execution":
            now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return {"PipelineExecutionId": self.execution_id,
                    "PipelineName": self.owner.doc.get("PipelineName", self.record.pipeline),
                    "PipelineExecutionArn": f"arn:aws:sagemaker:{self.owner.config.region}:"
                    f"{self.owner.config.account_id}:pipeline/{self.record.pipeline}/execution/"
                    f"{self.execution_id}", "StartDateTime": now, "CurrentDateTime": now}[rest]
        if head == "Steps":
            step, _, prop = rest.partition(".")
            value: Any = self.properties[step]
            for key in split_path(prop):
                value = value[key]
            return value
        raise KubesageError(f"cannot evaluate {{'Get': {path!r}}} locally")

    def _property_file(self, step: str, name: str) -> Any:
        return self.property_files[(step, name)]

    def run(self) -> None:
        by_name = {s.name: s for s in self.record.steps}
        failed_run = False
        for step, branch in self.steps:
            record = by_name[step["Name"] + self.suffix]
            deps = [by_name[d + self.suffix] for d in self.owner.dependencies(step, branch)]
            if failed_run or any(d.status in ("failed", "not_run", "cancelled") for d in deps):
                record.status = "not_run"  # a failed condition runs neither branch
            elif branch and (by_name[branch[0] + self.suffix].status != "succeeded"
                             or self.outcomes[branch[0]] != (branch[1] == "if")):
                record.status = "skipped"
                self.owner._say(f"- {record.name} skipped ({branch[0]}: {branch[1]} branch not taken)")
            elif any(d.status == "skipped" for d in deps):
                record.status = "skipped"
            else:
                self._run_step(step, record)
                failed_run = record.status == "failed"
            self.owner.store.save(self.record)

    def _run_step(self, step: dict[str, Any], record: StepRecord) -> None:
        record.status, record.started = "running", time.time()
        self.owner.store.save(self.record)
        self.owner._say(f"> {record.name} ({step['Type']}) started")
        try:
            {"Processing": self._job, "Training": self._job, "Condition": self._condition,
             "Fail": self._fail, "RegisterModel": self._register}.get(
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
            self.owner._say(f"x {record.name} failed: {record.error}")
        else:
            self.owner._say(f"+ {record.name} {record.status} in {took:.1f}s"
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
        arn = (f"arn:aws:sagemaker:{self.owner.config.region}:{self.owner.config.account_id}:"
               f"model-package/{group}/{version}")
        with open(os.path.join(folder, f"{version}.json"), "w") as f:
            json.dump({"ModelPackageArn": arn, "ModelPackageVersion": version,
                       "Request": request, "RunId": self.record.run_id}, f, indent=2)
        self.properties[step["Name"]] = {"ModelPackageArn": arn}
        record.returns = {"model_package_arn": arn}
        record.parameters = dict(request.get("CustomerMetadataProperties", {}))

    def _job(self, step: dict[str, Any], record: StepRecord) -> None:
        args = self.evaluate(step["Arguments"])
        record.parameters = _parameters(step["Type"], args)
        record.environment_id = self.owner.image_id(record.image)
        key = self._cache_key(step, args, record.environment_id)
        record.cache_key = key
        cached = step.get("CacheConfig", {}).get("Enabled") and self._from_cache(step, record, key)
        if cached:
            return
        name = record.name.replace("[", "-").replace("]", "")
        work = os.path.join(self.owner.root, "runs", self.record.run_id, name)
        shutil.rmtree(work, ignore_errors=True)
        if step["Type"] == "Processing":
            result = self.jobs.processing(record.name, args, work)
        else:
            checkpoints = None
            if "CheckpointConfig" in args:  # kept between attempts of this execution's job
                checkpoints = self.owner.s3.path(args["CheckpointConfig"]["S3Uri"])
                os.makedirs(checkpoints, exist_ok=True)
            job = f"{name}-{self.record.run_id[-6:]}"[-63:].lstrip("-")
            result = self.jobs.training(record.name, args, work, job, checkpoints)
        record.attempts = result.attempts
        self._finish(step, record, result.properties, result.result,
                     {n: (uri, local) for n, (uri, local) in result.outputs.items()})
        if step.get("CacheConfig", {}).get("Enabled"):
            self.owner.store.cache_put(key, {
                "properties": result.properties, "result": result.result,
                "outputs": {n: [uri, record.outputs.get(n, {}).get("sha256", "")]
                            for n, (uri, _) in result.outputs.items()},
                "run_id": self.record.run_id})
        shutil.rmtree(work, ignore_errors=True)

    def _finish(self, step: dict[str, Any], record: StepRecord, properties: dict[str, Any],
                result: dict[str, Any], outputs: dict[str, tuple[str, str]]) -> None:
        self.properties[step["Name"]] = properties
        for pf in step.get("PropertyFiles", []):
            uri, local = outputs[pf["OutputName"]]
            with open(os.path.join(local, pf["FilePath"])) as f:
                self.property_files[(step["Name"], pf["PropertyFileName"])] = json.load(f)
        record.returns = result.get("returns", {})
        record.metrics = result.get("metrics", {})
        record.series = result.get("series", {})
        metadata = result.get("artifacts", {})
        for name, (uri, local) in outputs.items():
            if name == "kubesage-result":
                continue
            record.outputs[name] = {"path": local, "uri": uri, "sha256": sha256_tree(local),
                                    "metadata": metadata.get(name, {})}

    def _from_cache(self, step: dict[str, Any], record: StepRecord, key: str) -> bool:
        entry = self.owner.store.cache_get(key)
        if entry is None:
            return False
        outputs = {}
        for name, (uri, sha) in entry["outputs"].items():
            local = self.owner.s3.path(uri)
            if not os.path.exists(local) or (sha and sha256_tree(local) != sha):
                return False  # overwritten or removed since: run again
            outputs[name] = (uri, local)
        self._finish(step, record, entry["properties"], entry["result"], outputs)
        record.cached = True
        self.owner._say(f"= {record.name} cached (from {entry['run_id']})")
        return True

    def _cache_key(self, step: dict[str, Any], args: dict[str, Any], environment: str) -> str:
        # As the service's cache: where a job writes (outputs, checkpoints) is not part of it.
        request = {k: v for k, v in args.items() if k not in _WHERE_IT_WRITES}
        inputs = {}
        for uri in _input_uris(args):
            path = self.owner.s3.path(uri)
            aliased = any(path.startswith(os.path.abspath(f)) for f in self.owner.s3.aliases.values())
            if os.path.exists(path):
                inputs[uri] = fingerprint_tree(path) if aliased else sha256_tree(path)
        for channel in args.get("InputDataConfig", []):
            fs = channel["DataSource"].get("FileSystemDataSource")
            if fs:
                inputs[f"fsx:{fs['FileSystemId']}{fs['DirectoryPath']}"] = fingerprint_tree(
                    self.owner._filesystem_for(fs))
        doc = {"type": step["Type"], "request": request, "environment": environment,
               "inputs": inputs}
        return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()


_WHERE_IT_WRITES = ("CheckpointConfig", "ProcessingOutputConfig", "OutputDataConfig")


def _input_uris(args: dict[str, Any]) -> list[str]:
    uris = [i["S3Input"]["S3Uri"] for i in args.get("ProcessingInputs", []) if "S3Input" in i]
    uris += [c["DataSource"]["S3DataSource"]["S3Uri"] for c in args.get("InputDataConfig", [])
             if "S3DataSource" in c["DataSource"]]
    return uris


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


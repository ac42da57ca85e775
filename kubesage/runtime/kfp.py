"""The Kubeflow contract: executor input (``{{$}}``) in, executor output file out.

Runs inside the component image, which has no kfp SDK: plain Python and JSON only.

``python -m kubesage.runtime kfp --entry MODULE:FUNC --executor-input JSON``
    Calls the component with typed parameters and artifact directories taken from the executor
    input, then writes the executor output (artifacts with metadata, so Metrics reach the KFP
    UI, and output parameters, so ``dsl.If`` conditions can test them).

``python -m kubesage.runtime kfp trainjob --entry ... --template JSON --checkpoint-root DIR
--job-id ID --task-id ID --executor-input JSON``
    The launcher of a multi-node step: stages inputs on the shared checkpoint volume, creates a
    Kubeflow Trainer TrainJob whose nodes run the local contract on that task file
    (``python -m kubesage.runtime local``, which starts torchrun from the Trainer's ``PET_*``
    variables; rank 0 reports), waits for it, brings the outputs back, fails if the TrainJob fails.

``python -m kubesage.runtime kfp --group LAYOUT --executor-input JSON``
    A fused task (several tasks in one pod, ``kubesage.plan.fusion``): runs the members of
    ``LAYOUT`` (JSON: per member its entry and which of the task's inputs and outputs are its
    own, which earlier member's output or returned value it reads) in order, then writes one
    executor output for all of them. Each finished member is noted in
    ``.kubesage-members.json`` beside it (times, returns, artifact metadata).

With ``--checkpoint-root`` the step's ``KUBESAGE_CHECKPOINT_DIR`` is
``<root>/kubesage/<job id>/<hash of component and inputs>/checkpoints``, on a volume that
outlives a failed attempt.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import ssl
import sys
import time
import traceback
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

from kubesage.dsl.types import coerce
from kubesage.runtime.context import CHECKPOINT_ENV
from kubesage.runtime.invoke import Invocation, Result, invoke, load_component
from kubesage.runtime.local import task_file
from kubesage.runtime.members import Done, MemberRun, run_members
from kubesage.util.atomic import write_json_atomic

# Where KFP's launcher mounts remote artifact stores inside the container (kfp.dsl's rules).
_REMOTE_PREFIXES = (("gs://", "/gcs/"), ("minio://", "/minio/"), ("s3://", "/s3/"))
WORKSPACE_MOUNT_PATH = "/kfp-workspace"
STEP_FILE = ".kubesage-step.json"  # beside the executor output: attempts, times, error
MEMBERS_FILE = ".kubesage-members.json"  # a fused task's: each finished member's result
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def kfp_output_name(name: str) -> str:
    """A component's single returned value is ``output`` in kubesage and ``Output`` in KFP
    (kfp's own name for a lone return value; kfp.local's conditions rely on it)."""
    return "Output" if name == "output" else name


def kubesage_output_name(name: str) -> str:
    """The inverse of ``kfp_output_name``."""
    return "output" if name == "Output" else name


class ContractError(Exception):
    """The executor input does not match the component, or a TrainJob failed."""


def local_path(uri: str, metadata: dict[str, Any] | None = None) -> str:
    """The path inside the container where KFP puts the artifact at ``uri``."""
    path = uri
    for remote, mount in _REMOTE_PREFIXES:
        if uri.startswith(remote):
            path = mount + uri[len(remote):]
            break
    if (metadata or {}).get("_kfp_workspace") is True:
        path = os.path.join(WORKSPACE_MOUNT_PATH, ".artifacts", path.lstrip("/"))
    return path


def whole_numbers(value: Any) -> Any:
    """Inside a list or dict, every whole double as an int: protobuf's Struct (parameter values,
    artifact metadata) keeps every number as a double, so ``[1, 2.5]`` arrives as ``[1.0, 2.5]``.
    (A float that was whole inside one, ``2.0``, comes back as ``2``, which compares equal.)
    A plain value is left alone: its declared type decides (``coerce``)."""
    def inner(v: Any) -> Any:
        if isinstance(v, list):
            return [inner(x) for x in v]
        if isinstance(v, dict):
            return {k: inner(x) for k, x in v.items()}
        return int(v) if isinstance(v, float) and v.is_integer() else v

    return inner(value) if isinstance(value, (list, dict)) else value


METADATA_KEY = "kubesage.metadata"  # in an artifact's metadata: all of it, as exact JSON text


def exact_metadata(metadata: dict[str, Any] | None) -> dict[str, Any]:
    """An artifact's metadata as its component wrote it. KFP carries metadata as a protobuf
    Struct, whose numbers are all doubles; the runtime adds the whole metadata as JSON text
    (``kubesage.metadata``), which is read back here. Metadata of an artifact a kubesage
    component did not write gets whole numbers back as ints (``whole_numbers``)."""
    metadata = dict(metadata or {})
    text = metadata.pop(METADATA_KEY, None)
    if isinstance(text, str):
        exact: dict[str, Any] = json.loads(text)
        return exact
    return dict(whole_numbers(metadata))


def invocation_from_executor_input(entry: str, executor_input: dict[str, Any]) -> Invocation:
    """Map the executor input onto the component's parameters and artifact directories."""
    spec = load_component(entry).spec
    given = executor_input.get("inputs", {})
    values = given.get("parameterValues", {})
    params = {p.name: whole_numbers(coerce(p.type, values[p.name]))
              for p in spec.parameters if p.name in values}
    missing = [p.name for p in spec.parameters if p.required and p.name not in values]
    if missing:
        raise ContractError(f"{entry}: the executor input has no value for {', '.join(missing)}; "
                            "recompile the pipeline so that the component and the image agree")
    inputs: dict[str, tuple[str, dict[str, Any]]] = {}
    for a in spec.inputs:
        arts = given.get("artifacts", {}).get(a.name, {}).get("artifacts", [])
        if not arts:
            raise ContractError(f"{entry}: the executor input has no artifact '{a.name}'")
        given_meta = arts[0].get("metadata", {}) or {}
        inputs[a.name] = (local_path(arts[0]["uri"], given_meta), exact_metadata(given_meta))
    outputs: dict[str, str] = {}
    for a in spec.outputs:
        arts = executor_input.get("outputs", {}).get("artifacts", {}).get(a.name, {}).get("artifacts", [])
        if not arts:
            raise ContractError(f"{entry}: the executor input has no output artifact '{a.name}'")
        outputs[a.name] = local_path(arts[0]["uri"], arts[0].get("metadata"))
    return Invocation(params, inputs, outputs)


def with_exact_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """The metadata to hand KFP: its entries (the KFP UI shows them) and, under
    ``kubesage.metadata``, all of it as JSON text, which survives protobuf's doubles."""
    if not metadata:
        return {}
    return {**metadata, METADATA_KEY: json.dumps(metadata, sort_keys=True)}


def executor_output(entry: str, executor_input: dict[str, Any], result: Result) -> dict[str, Any]:
    """The ExecutorOutput document: output artifacts with metadata, output parameter values."""
    spec = load_component(entry).spec
    out_arts = executor_input.get("outputs", {}).get("artifacts", {})
    artifacts = {}
    for a in spec.outputs:
        given = out_arts[a.name]["artifacts"][0]
        artifacts[a.name] = {"artifacts": [{
            "name": given.get("name", a.name),
            "uri": given["uri"],
            "metadata": with_exact_metadata(result.artifacts.get(a.name, {})),
        }]}
    doc: dict[str, Any] = {}
    if artifacts:
        doc["artifacts"] = artifacts
    if result.returns:
        doc["parameterValues"] = {kfp_output_name(k): v for k, v in result.returns.items()}
    return doc


def _write_json(path: str, doc: Any) -> None:
    write_json_atomic(path, doc)


def write_outputs(executor_input: dict[str, Any], doc: dict[str, Any]) -> None:
    """Write the executor output file and each output parameter's file."""
    outputs = executor_input.get("outputs", {})
    for name, value in doc.get("parameterValues", {}).items():
        target = outputs.get("parameters", {}).get(name, {}).get("outputFile")
        if target:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w") as f:
                f.write(value if isinstance(value, str) else json.dumps(value))
    _write_json(outputs["outputFile"], doc)


class _StepNote:
    """Appends this attempt (times, error) to ``.kubesage-step.json`` beside the executor output.

    Kubeflow ignores the file; the local kfp run reads it for the run record.
    """

    def __init__(self, executor_input: dict[str, Any]) -> None:
        self.path = os.path.join(os.path.dirname(executor_input["outputs"]["outputFile"]), STEP_FILE)
        self.attempts: list[dict[str, Any]] = []
        try:
            with open(self.path) as f:
                self.attempts = json.load(f)["attempts"]
        except (OSError, ValueError, KeyError):
            pass
        self.attempts.append({"started": time.time(), "ended": None, "error": ""})
        self._save()

    def end(self, error: str = "") -> None:
        self.attempts[-1].update(ended=time.time(), error=error)
        self._save()

    def _save(self) -> None:
        try:
            _write_json(self.path, {"attempts": self.attempts})
        except OSError:  # a read-only output location must not fail the step
            pass


def step_dir(checkpoint_root: str, job_id: str, entry: str, executor_input: dict[str, Any]) -> str:
    """This task's folder on the checkpoint volume: per run, component and input values, so
    every attempt of a task finds it (a retry may get a new task id) and each item of a loop
    has its own."""
    inputs = json.dumps([entry, executor_input.get("inputs", {})], sort_keys=True, default=str)
    key = hashlib.sha256(inputs.encode()).hexdigest()[:24]
    return os.path.join(checkpoint_root, "kubesage", job_id or "run", key)


def run(entry: str, executor_input: dict[str, Any], checkpoint_dir: str | None = None) -> dict[str, Any]:
    """Run one component under the executor-input contract; returns the executor output."""
    with noted(executor_input):
        if checkpoint_dir:
            os.makedirs(checkpoint_dir, exist_ok=True)  # fails early if the volume is read-only
            os.environ[CHECKPOINT_ENV] = checkpoint_dir
        call = invocation_from_executor_input(entry, executor_input)
        result = invoke(load_component(entry), call)
        doc = executor_output(entry, executor_input, result)
        write_outputs(executor_input, doc)
    return doc


@contextlib.contextmanager
def noted(executor_input: dict[str, Any]) -> Iterator[None]:
    """Note this attempt beside the executor output: its times, and its error if it raises."""
    note = _StepNote(executor_input)
    try:
        yield
    except BaseException as e:
        note.end("".join(traceback.format_exception(e)))
        raise
    note.end()


# -- fused tasks ---------------------------------------------------------------------------------
def _artifact(section: dict[str, Any], name: str) -> dict[str, Any]:
    arts = section.get("artifacts", {}).get(name, {}).get("artifacts", [])
    if not arts:
        raise ContractError(f"the executor input has no artifact '{name}'; recompile the pipeline")
    found: dict[str, Any] = arts[0]
    return found


def group_members(layout: list[dict[str, Any]], executor_input: dict[str, Any],
                  checkpoints: str | None) -> list[MemberRun]:
    """Each member's call, from the fused task's executor input."""
    given = executor_input.get("inputs", {})
    values = given.get("parameterValues", {})
    outputs = executor_input.get("outputs", {})
    members = []
    for m in layout:
        component = load_component(m["entry"])
        spec = component.spec
        params = {}
        for name, fused in m["params"].items():
            param = spec.parameter(name)
            if fused not in values or param is None:
                raise ContractError(f"{m['name']}: the executor input has no value for {name}")
            params[name] = whole_numbers(coerce(param.type, values[fused]))
        inputs = {}
        for name, fused in m["inputs"].items():
            art = _artifact(given, fused)
            meta = art.get("metadata", {}) or {}
            inputs[name] = (local_path(art["uri"], meta), exact_metadata(meta))
        paths = {}
        for name, fused in m["outputs"].items():
            art = _artifact(outputs, fused)
            paths[name] = local_path(art["uri"], art.get("metadata"))
        members.append(MemberRun(
            m["name"], component, params, {k: (v[0], v[1]) for k, v in m["param_from"].items()},
            inputs, {k: (v[0], v[1]) for k, v in m["local"].items()}, paths,
            checkpoint_dir=os.path.join(checkpoints, m["name"]) if checkpoints else ""))
    return members


def group_output(layout: list[dict[str, Any]], executor_input: dict[str, Any],
                 done: dict[str, Done]) -> dict[str, Any]:
    """The fused task's ExecutorOutput: every member's artifacts and returned values."""
    out_arts = executor_input.get("outputs", {}).get("artifacts", {})
    artifacts, values = {}, {}
    for m in layout:
        result = done[m["name"]].result
        for name, fused in m["outputs"].items():
            given = out_arts[fused]["artifacts"][0]
            artifacts[fused] = {"artifacts": [{
                "name": given.get("name", fused), "uri": given["uri"],
                "metadata": with_exact_metadata(result.artifacts.get(name, {}))}]}
        for name, fused in m["returns"].items():
            if name in result.returns:
                values[fused] = result.returns[name]
    doc: dict[str, Any] = {}
    if artifacts:
        doc["artifacts"] = artifacts
    if values:
        doc["parameterValues"] = values
    return doc


def run_group(layout: list[dict[str, Any]], executor_input: dict[str, Any],
              checkpoints: str | None = None) -> dict[str, Any]:
    """Run a fused task's members in order; returns the executor output."""
    where = os.path.join(os.path.dirname(executor_input["outputs"]["outputFile"]), MEMBERS_FILE)
    finished: dict[str, Any] = {}

    def report(member: MemberRun, done: Done) -> None:
        finished[member.name] = {**done.to_dict(), "outputs": done.outputs}
        _write_json(where, finished)

    with noted(executor_input):
        done = run_members(group_members(layout, executor_input, checkpoints), report)
        doc = group_output(layout, executor_input, done)
        write_outputs(executor_input, doc)
    return doc


# -- multi-node steps (Kubeflow Trainer) --------------------------------------------------------
def trainjob_name(task_id: str, component: str, attempt: int = 1) -> str:
    """A DNS-1035 name, unique per task execution and attempt (a retry of the same task keeps
    its task id and checkpoints, so it needs a name of its own), at most 63 characters."""
    stem = "".join(c if c.isalnum() else "-" for c in component.lower()).strip("-")[:36] or "step"
    suffix = "".join(c for c in task_id.lower() if c.isalnum())[:12] or "0"
    return f"ks-{stem}-{suffix}-{attempt}"[:63].rstrip("-")


def render_trainjob(template: dict[str, Any], name: str, task_path: str, checkpoint_dir: str,
                    namespace: str | None = None) -> dict[str, Any]:
    """The TrainJob to create: the compiled template, named, pointed at the task file."""
    manifest = json.loads(json.dumps(template))
    manifest["metadata"]["name"] = name
    if namespace:
        manifest["metadata"]["namespace"] = namespace
    trainer = manifest["spec"]["trainer"]
    trainer["args"] = [task_path]
    trainer["env"] = [e for e in trainer.get("env", []) if e["name"] != CHECKPOINT_ENV]
    trainer["env"].append({"name": CHECKPOINT_ENV, "value": checkpoint_dir})
    return manifest


def trainjob_state(obj: dict[str, Any]) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", message) from a TrainJob's status conditions."""
    for cond in obj.get("status", {}).get("conditions", []) or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Failed":
            return "failed", f"{cond.get('reason', '')}: {cond.get('message', '')}".strip(": ")
        if cond.get("type") == "Complete":
            return "succeeded", cond.get("message", "")
    return "running", ""


def stage_trainjob(entry: str, executor_input: dict[str, Any], exchange: str) -> tuple[str, Invocation]:
    """Copy input artifacts to the shared volume; write the task file every node reads."""
    call = invocation_from_executor_input(entry, executor_input)
    shutil.rmtree(exchange, ignore_errors=True)
    inputs = {}
    for name, (path, meta) in call.inputs.items():
        target = os.path.join(exchange, "inputs", name)
        if os.path.isdir(path):
            shutil.copytree(path, target)
        else:
            os.makedirs(target)
            shutil.copy2(path, target)
        inputs[name] = (target, meta)
    outputs = {name: os.path.join(exchange, "outputs", name) for name in call.outputs}
    for path in outputs.values():
        os.makedirs(path)
    task_path = os.path.join(exchange, "task.json")
    _write_json(task_path, task_file(entry, Invocation(call.parameters, inputs, outputs),
                                     os.path.join(exchange, "result.json")))
    return task_path, call


class KubeAPI:
    """The Kubernetes API as seen from a pod (service-account token, cluster CA)."""

    def __init__(self) -> None:
        host = os.environ.get("KUBERNETES_SERVICE_HOST")
        if not host:
            raise ContractError("not inside a Kubernetes pod (KUBERNETES_SERVICE_HOST unset); a "
                                "multi-node step creates its TrainJob from a Kubeflow pipeline run")
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        self.base = f"https://{host}:{port}"
        with open(os.path.join(SA_DIR, "token")) as f:
            self.token = f.read().strip()
        with open(os.path.join(SA_DIR, "namespace")) as f:
            self.namespace = f.read().strip()
        self.ssl = ssl.create_default_context(cafile=os.path.join(SA_DIR, "ca.crt"))

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
            "Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, context=self.ssl, timeout=60) as resp:
                result: dict[str, Any] = json.loads(resp.read() or b"{}")
                return result
        except urllib.error.HTTPError as e:
            raise ContractError(f"{method} {path}: HTTP {e.code}: {e.read().decode(errors='replace')}"
                                ) from None


def trainjobs_path(manifest: dict[str, Any]) -> str:
    group, version = manifest["apiVersion"].split("/")
    return f"/apis/{group}/{version}/namespaces/{manifest['metadata']['namespace']}/trainjobs"


def launch_trainjob(entry: str, executor_input: dict[str, Any], template: dict[str, Any],
                    folder: str, task_id: str, poll_s: float) -> dict[str, Any]:
    """Create the TrainJob, wait for it, bring back its outputs; raises if it fails.

    ``folder`` is this task's folder on the shared checkpoint volume (``step_dir``)."""
    note = _StepNote(executor_input)
    created, finished = "", False
    try:
        spec = load_component(entry).spec
        exchange = os.path.join(folder, "exchange")
        task_path, call = stage_trainjob(entry, executor_input, exchange)
        api = KubeAPI()
        manifest = render_trainjob(template, trainjob_name(task_id, spec.name, len(note.attempts)),
                                   task_path, os.path.join(folder, "checkpoints"),
                                   template["metadata"].get("namespace") or api.namespace)
        path = trainjobs_path(manifest)
        api.request("POST", path, manifest)
        name = manifest["metadata"]["name"]
        created = f"{path}/{name}"
        print(f"kubesage: created TrainJob {name} ({manifest['spec']['trainer']['numNodes']} nodes)",
              flush=True)
        last = ""
        while True:
            state, message = trainjob_state(api.request("GET", f"{path}/{name}"))
            if state != last:
                print(f"kubesage: TrainJob {name} {state} {message}".rstrip(), flush=True)
                last = state
            finished = state in ("failed", "succeeded")
            if state == "failed":
                raise ContractError(f"TrainJob {name} failed: {message}; see "
                                    f"'kubectl logs -n {manifest['metadata']['namespace']} "
                                    f"-l jobset.sigs.k8s.io/jobset-name={name}'")
            if state == "succeeded":
                break
            time.sleep(poll_s)
        with open(os.path.join(exchange, "result.json")) as f:
            result = Result(**json.load(f))
        for out_name, target in call.outputs.items():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(os.path.join(exchange, "outputs", out_name), target)
        doc = executor_output(entry, executor_input, result)
        write_outputs(executor_input, doc)
    except BaseException as e:
        if created and not finished:  # the launcher is going away: do not leave GPUs running
            with contextlib.suppress(Exception):
                api.request("DELETE", created)
                print(f"kubesage: deleted TrainJob {created.rsplit('/', 1)[-1]}", flush=True)
        note.end("".join(traceback.format_exception(e)))
        raise
    note.end()
    return doc


def _options(args: tuple[str, ...]) -> dict[str, str]:
    opts: dict[str, str] = {}
    items = list(args)
    while items:
        key = items.pop(0)
        if not key.startswith("--") or not items:
            raise SystemExit(f"kubesage.runtime kfp: expected --name value pairs, got {key!r}")
        opts[key[2:].replace("-", "_")] = items.pop(0)
    return opts


def main(*args: str) -> None:
    """Entry point of ``python -m kubesage.runtime kfp ...``."""
    mode = "trainjob" if args and args[0] == "trainjob" else "run"
    opts = _options(args[1:] if mode == "trainjob" else args)
    root = opts.get("checkpoint_root")
    try:
        executor_input = json.loads(opts["executor_input"])
        entry = opts.get("entry") or "group:" + opts.get("group", "")
        folder = step_dir(root, opts.get("job_id", ""), entry, executor_input) if root else None
        if "group" in opts:
            run_group(json.loads(opts["group"]), executor_input,
                      os.path.join(folder, "checkpoints") if folder else None)
        elif mode == "trainjob":
            # Kubernetes stops a pod with SIGTERM: unwind, so the TrainJob is deleted too
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
            if folder is None:
                raise ContractError("a multi-node step needs --checkpoint-root (the shared volume "
                                    "its nodes exchange inputs and outputs through)")
            launch_trainjob(opts["entry"], executor_input, json.loads(opts["template"]), folder,
                            opts.get("task_id", ""), float(opts.get("poll_seconds", "30")))
        else:
            run(opts["entry"], executor_input,
                os.path.join(folder, "checkpoints") if folder else None)
    except ContractError as e:
        print(f"kubesage: {e}", file=sys.stderr)
        raise SystemExit(1) from None

"""``kubesage run --target kfp``: compile, then run the compiled YAML with kfp.local.

The YAML that would go to the cluster (with local image names, since no registry is needed
here) is loaded back with ``kfp.components.load_component_from_file`` and executed by the kfp
SDK's own ``kfp.local.DockerRunner``. The data mounts of the local config are bind-mounted
read-only at the paths the components declare (FSx at ``/fsx``); kfp.local ignores resources and
Kubernetes settings. The run is recorded in the local run store like any other run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import time
import warnings
from typing import Any, TextIO

from kubesage.dsl.control import Condition, ParallelFor
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.dsl.task import Task
from kubesage.lineage import file_sha256, git_state
from kubesage.runs.artifacts import fingerprint_tree, sha256_tree
from kubesage.runs.record import RunRecord, StepRecord
from kubesage.runs.store import RunStore
from kubesage.runtime.kfp import STEP_FILE, kubesage_output_name
from kubesage.targets.kfp.compiler import compile_to_file
from kubesage.targets.kfp.config import load_kfp_config
from kubesage.targets.local.config import data_mounts, load_local_config
from kubesage.targets.local.runner import new_run_id

RUNNER = "kfp.local-docker"
EXECUTOR_OUTPUT = "executor_output.json"  # kfp.local's name inside each task root
_ITERATION = re.compile(r"^for-loop-[0-9]+-iteration-([0-9]+)$")  # kfp.local's folder per loop item


class KfpLocalError(KubesageError):
    """The compiled pipeline cannot run under kfp.local (no Docker engine, missing image)."""


class _Tee:
    """A text stream writing to the caller's log and to the run's log file."""

    def __init__(self, *streams: TextIO) -> None:
        self.streams = streams

    def write(self, text: str) -> int:
        for s in self.streams:
            s.write(text)
        return len(text)

    def flush(self) -> None:
        for s in self.streams:
            s.flush()


def docker_runner(mounts: dict[str, tuple[str, str]], images: set[str],
                  writable: dict[str, str]) -> tuple[Any, dict[str, str]]:
    """kfp.local's DockerRunner with the data mounts (read-only) and ``writable`` folders
    (container path -> host folder), and the ID of each image; fails early when the engine or
    an image is missing."""
    import docker
    import docker.errors
    import docker.types
    from kfp import local

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # the SDK raises several types for "no engine"
        raise KfpLocalError(f"cannot reach a Docker engine ({e}); start Docker (dockerd)") from None
    ids = {}
    for image in sorted(images):
        try:
            ids[image] = client.images.get(image).id
        except docker.errors.ImageNotFound:
            # kfp.local would try to pull it from a registry; say what to do instead
            raise KfpLocalError(f"image {image} is not built; run 'kubesage build' first") from None
    binds = [docker.types.Mount(target=t, source=s, type="bind", read_only=True)
             for t, s in sorted(mounts.values())]
    for target, source in sorted(writable.items()):
        os.makedirs(source, exist_ok=True)
        binds.append(docker.types.Mount(target=target, source=source, type="bind", read_only=False))
    runner = local.DockerRunner(
        mounts=binds,
        # The compiled command is the full command line, as on Kubernetes, where it replaces the
        # image's ENTRYPOINT; docker would otherwise prepend the ENTRYPOINT to it.
        entrypoint=[""],
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"HOME": "/tmp"},
        shm_size="1g",
    )
    return runner, ids


def run_compiled(pipeline: Pipeline, params: dict[str, Any], config_path: str | None = None,
                 pipeline_file: str = "", log: TextIO | None = None) -> RunRecord:
    """Compile ``pipeline``, run the YAML under kfp.local DockerRunner, return the run record."""
    out = log or sys.stderr
    lossy = sorted({t.spec.name for t in pipeline.tasks
                    if t.spec.container is not None and (t.spec.outputs or t.spec.returns)})
    if lossy:
        raise KubesageError(
            f"{', '.join(lossy)}: kfp.local drops the outputs of container components that do not "
            "write its executor output file (a kfp.local limitation, not one of the compiled YAML, "
            "which a Kubeflow cluster runs as is); run this pipeline with 'kubesage run' instead")
    config = load_kfp_config(config_path)
    local = load_local_config(config.local_config)
    values = pipeline.resolve_parameters(params)
    mounts = data_mounts(pipeline, local, "the local config (config/kfp.yaml's local.config names it)")
    run_id = new_run_id(pipeline.name)
    run_dir = os.path.abspath(os.path.join(local.store, "kfp", run_id))
    local_config = config.for_local_images(local.image_tag)
    compiled = compile_to_file(pipeline, os.path.join(run_dir, "pipeline.yaml"), local_config)
    # The checkpoint volume is a folder of the run here (steps resume from it on a retry).
    writable = ({config.checkpoint_path: os.path.join(run_dir, "checkpoints")}
                if config.checkpoint_claim else {})
    logical = {t.spec.image for t in pipeline.tasks}
    runner, ids = docker_runner(mounts, {local_config.image(name) for name in logical}, writable)
    record = RunRecord(
        run_id=run_id, pipeline=pipeline.name,
        pipeline_file=os.path.abspath(pipeline_file) if pipeline_file else "",
        pipeline_hash=pipeline.digest(), runner=RUNNER, target="kfp", parameters=values,
        data={name: fingerprint_tree(src) for name, (_, src) in mounts.items()},
        started=time.time(),
        source_sha256=file_sha256(pipeline_file) if pipeline_file else "",
        compiled_sha256=file_sha256(compiled),
        git=git_state(os.path.dirname(os.path.abspath(pipeline_file)) if pipeline_file else os.getcwd()),
        images={name: ids[local_config.image(name)] for name in sorted(logical)},
    )
    record.steps = [StepRecord(name=t.name, task=t.name, component=t.spec.name,
                               version=t.spec.version, image=local_config.image(t.spec.image))
                    for t in pipeline.tasks]
    store = RunStore(local.store)
    store.save(record)
    print(f"run {run_id}: {compiled} under kfp.local DockerRunner "
          "(resources and Kubernetes settings are ignored locally)", file=out, flush=True)
    outputs_root = os.path.join(run_dir, "outputs")
    try:
        execute_compiled(compiled, values, runner, outputs_root, out, os.path.join(run_dir, "log.txt"))
    except KeyboardInterrupt:
        record.status, record.ended = "cancelled", time.time()
        store.save(record)
        raise
    except Exception as e:  # kfp.local refused the YAML or crashed: record it, then say so
        record.ended = time.time()
        collect_steps(pipeline, record, outputs_root)
        record.status = "failed"
        store.save(record)
        raise KfpLocalError(f"kfp.local stopped run {run_id}: {type(e).__name__}: {e}; the log is "
                            f"{os.path.join(run_dir, 'log.txt')}") from None
    record.ended = time.time()
    collect_steps(pipeline, record, outputs_root)
    failed = any(s.status == "failed" for s in record.steps)
    record.status = "failed" if failed else "succeeded"
    store.save(record)
    print(f"run {run_id} {record.status} in {record.ended - record.started:.1f}s", file=out, flush=True)
    return record


def execute_compiled(compiled: str, values: dict[str, Any], runner: Any, outputs_root: str, out: TextIO,
                     log_path: str, cache_root: str | None = None) -> None:
    """Run a compiled pipeline YAML with kfp.local; its log goes to ``out`` and ``log_path``.

    With ``cache_root``, kfp.local's own step cache is on (kubesage runs leave it off)."""
    from kfp import components, local

    local.init(runner=runner, pipeline_root=outputs_root, raise_on_error=False,
               enable_caching=cache_root is not None, cache_root=cache_root)
    pipeline_component = components.load_component_from_file(compiled)
    with open(log_path, "w") as log_file, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        with contextlib.redirect_stdout(_Tee(out, log_file)):  # type: ignore[type-var]
            pipeline_component(**values)


def collect_steps(pipeline: Pipeline, record: RunRecord, outputs_root: str) -> None:
    """Fill the step records from what kfp.local left in each task root.

    A task inside a ``ParallelFor`` gets one record per item (``train[0]``, ``train[1]``), as
    with the local runner: kfp.local runs item ``i`` under ``for-loop-N-iteration-i/``.
    """
    runs = sorted(os.listdir(outputs_root)) if os.path.isdir(outputs_root) else []
    base = os.path.join(outputs_root, runs[-1]) if runs else ""
    templates = {s.name: s for s in record.steps}
    statuses: dict[str, list[str]] = {}
    steps: list[StepRecord] = []
    for task in pipeline.tasks:  # definition order: upstream steps are settled first
        for index, root in _task_roots(base, task) or [((), "")]:
            t = templates[task.name]
            step = StepRecord(name=task.name + "".join(f"[{i}]" for i in index), task=t.task,
                              component=t.component, version=t.version, image=t.image)
            _collect_step(task, step, root, statuses)
            statuses.setdefault(task.name, []).append(step.status)
            steps.append(step)
    record.steps = steps


def _task_roots(base: str, task: Task) -> list[tuple[tuple[int, ...], str]]:
    """(loop item indices, task root) of every copy of ``task`` kfp.local ran."""
    if not base:
        return []
    if not any(isinstance(g, ParallelFor) for g in task.groups):
        return [((), os.path.join(base, task.name))]
    found = []
    for dirpath, dirnames, _ in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        parts = [] if rel == "." else rel.split(os.sep)
        matches = [_ITERATION.match(p) for p in parts]
        if not all(matches):
            dirnames[:] = []
            continue
        if parts and task.name in dirnames:
            found.append((tuple(int(m.group(1)) for m in matches if m), os.path.join(dirpath, task.name)))
        dirnames[:] = [d for d in dirnames if _ITERATION.match(d)]
    return sorted(found)


def _collect_step(task: Task, step: StepRecord, root: str, statuses: dict[str, list[str]]) -> None:
    note = _read_json(os.path.join(root, STEP_FILE)) if root else None
    attempts = (note or {}).get("attempts", [])
    if attempts:
        step.attempts = len(attempts)
        step.started, step.ended = attempts[0]["started"], attempts[-1]["ended"]
        step.error = attempts[-1]["error"]
    result = _read_json(os.path.join(root, EXECUTOR_OUTPUT)) if root else None
    if result is not None and not step.error:
        step.status = "succeeded"
        step.returns = {kubesage_output_name(k): v for k, v in result.get("parameterValues", {}).items()}
        for name, value in step.returns.items():
            declared = next((r for r in task.spec.returns if r.name == name), None)
            if declared is not None and declared.type == "int" and isinstance(value, float):
                step.returns[name] = int(value)
        kinds = {a.name: a.type for a in task.spec.outputs}
        for name, entry in result.get("artifacts", {}).items():
            art = entry["artifacts"][0]
            path = art["uri"]
            meta = art.get("metadata", {})
            step.outputs[name] = {"path": path, "sha256": sha256_tree(path) if os.path.exists(path)
                                  else "", "metadata": meta}
            if kinds.get(name) == "Metrics":
                step.metrics.update({k: float(v) for k, v in meta.items()
                                     if isinstance(v, (int, float)) and not isinstance(v, bool)})
        return
    if attempts or (root and os.path.isdir(root)):
        step.status = "failed"
        step.error = step.error or f"the container exited without an executor output; see {root}"
        return
    upstream = [s for t in task.upstream() for s in statuses.get(t.name, [])]
    if any(s in ("failed", "not_run") for s in upstream):
        step.status = "not_run"
    elif any(s == "skipped" for s in upstream) or any(isinstance(g, Condition) for g in task.groups):
        step.status = "skipped"
    else:
        step.status = "not_run"


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

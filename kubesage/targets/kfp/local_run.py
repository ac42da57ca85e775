"""``kubesage run --target kfp``: compile, then run the compiled YAML with kfp.local.

The YAML that would go to the cluster (with local images, since no registry is needed here) is
loaded back with ``kfp.components.load_component_from_file`` and executed by the kfp SDK's own
``kfp.local.DockerRunner``; ``KfpLocalRun`` is this target's execution of the one run path
(``kubesage.runs.launch``). The data mounts of the local config are bind-mounted read-only at
the paths the components declare (FSx at ``/fsx``); kfp.local ignores resources and Kubernetes
settings. Images are tagged by their ID for the run (``kubesage/torch:id-<12 hex>``), so that
kfp.local's step cache, keyed on the image name, never serves the outputs of other code; the
data mounts' fingerprints reach its key as environment variables. Its step records are the
plan's steps.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import warnings
from collections.abc import Iterator
from typing import Any, TextIO

from kubesage.docker_engine.containers import labels, remove_run
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.dsl.types import coerce
from kubesage.plan import Plan, Step
from kubesage.runs.artifacts import sha256_tree
from kubesage.runs.launch import RunSetup
from kubesage.runs.lifecycle import Run
from kubesage.runs.record import StepRecord
from kubesage.runs.step_user import step_user
from kubesage.runtime.kfp import STEP_FILE, exact_metadata, kubesage_output_name
from kubesage.targets.base import Unsupported
from kubesage.targets.kfp.compiler import compile_to_file, fused_tasks
from kubesage.targets.kfp.components import is_distributed
from kubesage.targets.kfp.config import KfpConfig
from kubesage.targets.kfp.local_members import Member, collect_member, members_of, own_part

RUNNER = "kfp.local-docker"
EXECUTOR_OUTPUT = "executor_output.json"  # kfp.local's name inside each task root
_ITERATION = re.compile(r"^for-loop-[0-9]+-iteration-([0-9]+)$")  # kfp.local's folder per loop item
_CACHE_HIT = re.compile(r"^Task (\S+) cache hit \(key=([0-9a-f]+)\)")  # kfp.local's log line
_TASK_FAILED = re.compile(r"^Task '?([^' ]+)'? finished with status FAILURE")  # its colours removed
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")


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


def refusals(pipeline: Pipeline) -> None:
    """Refuse, by name, what kfp.local cannot run the way the other paths do."""
    lossy = sorted({t.spec.name for t in pipeline.tasks
                    if t.spec.container is not None and (t.spec.outputs or t.spec.returns)})
    if lossy:
        raise Unsupported(
            f"{', '.join(lossy)}: kfp.local drops the outputs of container components that do not "
            "write its executor output file (a kfp.local limitation, not one of the compiled YAML, "
            "which a Kubeflow cluster runs as is); run this pipeline with 'kubesage run' instead")
    multi = sorted({t.name for t in pipeline.tasks if is_distributed(t.distribution)})
    if multi:
        raise Unsupported(
            f"task {', '.join(multi)} trains on several nodes, which on Kubeflow is a Kubeflow "
            "Trainer TrainJob that only a cluster runs; kfp.local runs one container per task. "
            "Run it with 'kubesage run' (--target local or sagemaker), or submit it")


def docker_client() -> Any:
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:  # the SDK raises several types for "no engine"
        raise KfpLocalError(f"cannot reach a Docker engine ({e}); start Docker (dockerd)") from None
    return client


def pinned_tags(client: Any, images: dict[str, str]) -> dict[str, str]:
    """Logical image -> a local tag naming exactly the image ID the run recorded
    (``kubesage/torch:id-<12 hex>``), so that kfp.local's step cache, keyed on the image name,
    never serves the outputs of other code."""
    found = {}
    for name, image_id in sorted(images.items()):
        repository = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
        pinned = f"{repository}:id-{image_id.removeprefix('sha256:')[:12]}"
        client.images.get(image_id).tag(*pinned.rsplit(":", 1))
        found[name] = pinned
    return found


def docker_runner(run_id: str, mounts: dict[str, tuple[str, str]],
                  writable: dict[str, str]) -> Any:
    """kfp.local's DockerRunner with the data mounts (read-only) and ``writable`` folders
    (container path -> host folder); every container it starts carries the run's label."""
    import docker.types
    from kfp import local

    binds = [docker.types.Mount(target=t, source=s, type="bind", read_only=True)
             for t, s in sorted(mounts.values())]
    for target, source in sorted(writable.items()):
        os.makedirs(source, exist_ok=True)
        binds.append(docker.types.Mount(target=target, source=source, type="bind", read_only=False))
    return local.DockerRunner(
        mounts=binds,
        # The compiled command is the full command line, as on Kubernetes, where it replaces the
        # image's ENTRYPOINT; docker would otherwise prepend the ENTRYPOINT to it.
        entrypoint=[""],
        user=step_user(),
        environment={"HOME": "/tmp"},
        shm_size="1g",
        labels=labels(run_id),
    )


class KfpLocalRun:
    """One run of the compiled YAML under kfp.local (the run path's ``Execution``)."""

    runner = RUNNER

    def __init__(self, setup: RunSetup) -> None:
        config: KfpConfig = setup.config
        self.setup = setup
        self.client = docker_client()
        self.tags = pinned_tags(self.client, setup.images)
        local_config = config.for_local_run(self.tags, setup.data)
        self.run_dir = os.path.abspath(os.path.join(setup.local.store, "kfp", setup.run_id))
        self.compiled = compile_to_file(setup.pipeline, os.path.join(self.run_dir, "pipeline.yaml"),
                                        local_config)
        self.step_image = local_config.image
        self.fused = members_of(fused_tasks(setup.pipeline, local_config))  # ran in a fused task
        # The checkpoint volume is a folder of the run here (steps resume from it on a retry).
        self.writable = ({config.checkpoint_path: os.path.join(self.run_dir, "checkpoints")}
                         if config.checkpoint_claim else {})

    def cancel(self) -> None:
        remove_run(self.client, self.setup.run_id)

    def execute(self, run: Run) -> None:
        setup = self.setup
        runner = docker_runner(setup.run_id, setup.mounts, self.writable)
        run.say(f"run {setup.run_id}: {self.compiled} under kfp.local DockerRunner "
                "(resources and Kubernetes settings are ignored locally)")
        outputs_root = os.path.join(self.run_dir, "outputs")
        cache_root = os.path.join(os.path.abspath(setup.local.store), "kfp-cache")
        log_path = os.path.join(self.run_dir, "log.txt")
        hits: list[tuple[str, str]] = []
        failed: set[str] = set()
        os.makedirs(outputs_root, exist_ok=True)  # else Docker creates the bind source, root-only
        try:
            with _watch_log(hits, failed):
                execute_compiled(self.compiled, setup.values, runner, outputs_root, setup.out,
                                 log_path, cache_root if setup.options.use_cache else None)
        except Exception as e:  # kfp.local refused the YAML or crashed: record it, then say so
            collect_steps(setup.plan, run.record.steps, outputs_root, hits, failed, cache_root,
                          self.fused)
            raise KfpLocalError(f"kfp.local stopped run {setup.run_id}: {type(e).__name__}: {e}; "
                                f"the log is {log_path}") from None
        collect_steps(setup.plan, run.record.steps, outputs_root, hits, failed, cache_root,
                          self.fused)


@contextlib.contextmanager
def _watch_log(found: list[tuple[str, str]], failed: set[str]) -> Iterator[None]:
    """Collect from kfp.local's log while it runs: its cache hits, (task name, key prefix), and
    the names of the tasks it reports failed."""

    class Hits(logging.Handler):
        def emit(self, rec: logging.LogRecord) -> None:
            message = _COLOUR.sub("", rec.getMessage())
            match = _CACHE_HIT.match(message)
            if match:
                found.append((match[1], match[2]))
            match = _TASK_FAILED.match(message)
            if match:
                failed.add(match[1])

    handler = Hits(logging.INFO)
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(min(level, logging.INFO) if level else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def execute_compiled(compiled: str, values: dict[str, Any], runner: Any, outputs_root: str, out: TextIO,
                     log_path: str, cache_root: str | None = None) -> None:
    """Run a compiled pipeline YAML with kfp.local; its log goes to ``out`` and ``log_path``.

    With ``cache_root``, kfp.local's own step cache is on."""
    from kfp import components, local

    local.init(runner=runner, pipeline_root=outputs_root, raise_on_error=False,
               enable_caching=cache_root is not None, cache_root=cache_root)
    pipeline_component = components.load_component_from_file(compiled)
    with open(log_path, "w") as log_file, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*no effect in the current local runner.*")
        with contextlib.redirect_stdout(_Tee(out, log_file)):  # type: ignore[type-var]
            pipeline_component(**values)


def collect_steps(plan: Plan, records: list[StepRecord], outputs_root: str,
                  hits: list[tuple[str, str]], failed: set[str], cache_root: str,
                  fused: dict[str, Member] | None = None) -> None:
    """Fill the step records from what kfp.local left in each task root, or in its cache.

    Item ``i`` of a ``ParallelFor`` ran under ``for-loop-N-iteration-i/``; a step taken from the
    cache has no task root, and its outputs are those of the cache entry kfp.local logged. A
    task kfp.local reports ``failed`` that left no task root failed before it wrote anything.
    A member of a fused task (``fused``: task -> (fused task, prefix)) reads its part of it.
    """
    runs = sorted(os.listdir(outputs_root)) if os.path.isdir(outputs_root) else []
    base = os.path.join(outputs_root, runs[-1]) if runs else ""
    by_name = {r.name: r for r in records}
    pending_hits = list(hits)
    group_hits: dict[tuple[str, tuple[int, ...]], tuple[str, str]] = {}
    group_failed: set[tuple[str, tuple[int, ...]]] = set()
    for step in plan.steps:  # dependency order: upstream steps are settled first
        record = by_name[step.name]
        member = (fused or {}).get(step.task.name)
        task = member[0] if member else step.task.name
        root = _task_root(base, step, task)
        if root and os.path.isdir(root) and member:
            if collect_member(step, record, root, member, _outputs,
                              (task, step.index) in group_failed):
                group_failed.add((task, step.index))
            continue
        if root and os.path.isdir(root):
            _collect_ran(step, record, root)
            continue
        hit = group_hits.get((task, step.index)) or next(
            (h for h in pending_hits if h[0] == task), None)
        entry = _cache_entry(cache_root, hit[1]) if hit else None
        if hit is not None and entry is not None:
            if hit in pending_hits:
                pending_hits.remove(hit)
                group_hits[(task, step.index)] = hit
            record.cached = True
            result = _as_executor_output(entry)
            _outputs(step, record, own_part(result, member[1]) if member else result)
            record.status = "succeeded"
            record.job = task if member else ""
            continue
        if task in failed and not step.index:
            record.status = "failed"
            record.error = ("kfp.local reports the task failed before it wrote its outputs; "
                            f"its log is in {os.path.dirname(outputs_root)}/log.txt")
            continue
        upstream = [by_name[d.name].status for d in step.deps]
        if any(s in ("failed", "not_run") for s in upstream):
            record.status = "not_run"
        elif any(s == "skipped" for s in upstream) or step.conditions:
            record.status = "skipped"
        else:
            record.status = "not_run"


def _task_root(base: str, step: Step, task: str = "") -> str:
    """Where kfp.local ran ``step`` (its loop items as ``for-loop-N-iteration-i`` folders), as
    kfp task ``task`` (its own name, or its fused task's)."""
    task = task or step.task.name
    if not base:
        return ""
    if not step.index:
        return os.path.join(base, task)
    wanted = list(step.index)
    for dirpath, dirnames, _ in os.walk(base):
        rel = os.path.relpath(dirpath, base)
        parts = [] if rel == "." else rel.split(os.sep)
        matches = [_ITERATION.match(p) for p in parts]
        if not all(matches):
            dirnames[:] = []
            continue
        if [int(m.group(1)) for m in matches if m] == wanted and task in dirnames:
            return os.path.join(dirpath, task)
        dirnames[:] = [d for d in dirnames if _ITERATION.match(d)]
    return ""


def _collect_ran(step: Step, record: StepRecord, root: str) -> None:
    note = _read_json(os.path.join(root, STEP_FILE))
    attempts = (note or {}).get("attempts", [])
    if attempts:
        record.attempts = len(attempts)
        record.started, record.ended = attempts[0]["started"], attempts[-1]["ended"]
        record.error = attempts[-1]["error"]
    result = _read_json(os.path.join(root, EXECUTOR_OUTPUT))
    if result is not None and not record.error:
        record.status = "succeeded"
        _outputs(step, record, result)
        return
    record.status = "failed"
    record.error = record.error or f"the container exited without an executor output; see {root}"


def _outputs(step: Step, record: StepRecord, result: dict[str, Any]) -> None:
    """Returns, artifacts and metrics of an executor output document."""
    spec = step.task.spec
    for name, value in result.get("parameterValues", {}).items():
        name = kubesage_output_name(name)
        declared = next((r for r in spec.returns if r.name == name), None)
        record.returns[name] = coerce(declared.type, value) if declared else value
    kinds = {a.name: a.type for a in spec.outputs}
    for name, entry in result.get("artifacts", {}).items():
        art = entry["artifacts"][0]
        path = art["uri"]
        meta = exact_metadata(art.get("metadata"))
        record.outputs[name] = {"path": path, "sha256": sha256_tree(path) if os.path.exists(path)
                                else "", "metadata": meta}
        if kinds.get(name) == "Metrics":
            record.metrics.update({k: float(v) for k, v in meta.items()
                                   if isinstance(v, (int, float)) and not isinstance(v, bool)})


def _cache_entry(cache_root: str, prefix: str) -> dict[str, Any] | None:
    found = glob.glob(os.path.join(cache_root, f"{prefix}*.json"))
    return _read_json(found[0]) if len(found) == 1 else None


def _as_executor_output(entry: dict[str, Any]) -> dict[str, Any]:
    """A kfp.local cache entry in the executor output's shape."""
    doc: dict[str, Any] = {"parameterValues": {}, "artifacts": {}}
    for name, value in entry.items():
        if isinstance(value, dict) and "uri" in value and "schema_title" in value:
            doc["artifacts"][name] = {"artifacts": [value]}
        else:
            doc["parameterValues"][name] = value
    return doc


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

"""The local runner: executes a pipeline graph step by step on this machine.

Steps run in dependency order, independent steps in parallel (``parallelism`` at once); each
``ParallelFor`` item becomes its own step; conditions are evaluated once their inputs exist.
Every step goes through the cache, the artifact store and the run store, then an executor
(Docker containers or local processes) runs ``python -m kubesage.runtime local``.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import secrets
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TextIO

from kubesage.dsl.channel import Channel, LoopItem, PipelineParam, TaskOutput, evaluate
from kubesage.dsl.control import Condition, ParallelFor
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import Pipeline
from kubesage.dsl.task import Task
from kubesage.dsl.validate import topological_order
from kubesage.fsutil import write_json_atomic
from kubesage.lineage import file_sha256, git_state
from kubesage.notify import Notifier
from kubesage.runs import cache
from kubesage.runs.artifacts import ArtifactStore, fingerprint_tree, sha256_tree
from kubesage.runs.record import TERMINAL, RunRecord, StepRecord
from kubesage.runs.store import RunStore
from kubesage.runtime.context import CHECKPOINT_ENV, MLFLOW_ARTIFACTS_ENV, RUN_ID_ENV, STEP_ENV
from kubesage.runtime.invoke import Invocation
from kubesage.runtime.local import PRELOAD_SUFFIX, task_file
from kubesage.targets.local import container_step
from kubesage.targets.local.config import LocalConfig, data_mounts
from kubesage.targets.local.executor import Executor, Launch, WarmStarts

LOG_TAIL_LINES = 30
RETRY_BACKOFF_S = 1.0


@dataclass
class _Instance:
    """One executable copy of a task: ``index`` picks an item of each enclosing loop."""

    task: Task
    index: tuple[int, ...]
    name: str
    deps: list[_Instance] = field(default_factory=list)
    record: StepRecord | None = None


def new_run_id(pipeline: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return f"{pipeline}-{stamp}-{secrets.token_hex(3)}"


class LocalRunner:
    """Runs pipelines with one executor, recording every run in ``config.store``."""

    def __init__(
        self,
        config: LocalConfig,
        executor: Executor,
        *,
        log: TextIO = sys.stderr,
        path_rewrite: bool = False,
    ) -> None:
        self.config = config
        self.executor = executor
        self.store = RunStore(config.store)
        self.artifacts = ArtifactStore(config.store)
        self.out = log
        # Subprocess steps see host paths: rewrite values under a mount path onto its folder.
        self.path_rewrite = path_rewrite
        self._print_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._pins: dict[str, str] = {}
        self._use_cache = True
        self._notifier = Notifier([], self._say)
        self._warm_lock = threading.Lock()
        self._warm: set[str] = set()  # steps started ahead of their turn, still waiting

    # -- public -------------------------------------------------------------------------
    def run(
        self,
        pipeline: Pipeline,
        parameters: dict[str, Any] | None = None,
        *,
        pipeline_file: str = "",
        run_id: str | None = None,
        tags: dict[str, str] | None = None,
        images: dict[str, str] | None = None,
        use_cache: bool = True,
        rerun_of: str = "",
    ) -> RunRecord:
        """Run ``pipeline`` to the end and return its record (also saved in the store).

        ``images`` pins logical image names to exact images (IDs), as a re-run does;
        ``use_cache=False`` executes every step even where the cache has its outputs.
        """
        values = pipeline.resolve_parameters(parameters or {})
        instances = self._expand(pipeline, values)
        mounts = data_mounts(pipeline, self.config)
        self._pins = dict(images or {})
        self._use_cache = use_cache
        # Fail before anything runs: every image must exist, every mount folder too.
        foreign = sorted({i.task.spec.name for i in instances if i.task.spec.container})
        if foreign and self.executor.kind != "docker":
            raise KubesageError(
                f"{', '.join(foreign)}: container components (imported Kubeflow YAML) run their own "
                f"image, which the {self.executor.kind} runner cannot do; use --runner docker")
        env_ids = {image: self.executor.environment_id(self._image(image))
                   for image in sorted({i.task.spec.image for i in instances})}
        root = os.path.dirname(os.path.abspath(pipeline_file)) if pipeline_file else os.getcwd()
        record = RunRecord(
            run_id=run_id or new_run_id(pipeline.name),
            pipeline=pipeline.name,
            pipeline_file=os.path.abspath(pipeline_file) if pipeline_file else "",
            pipeline_hash=pipeline.digest(),
            runner=self.executor.kind,
            parameters=values,
            data={name: fingerprint_tree(src) for name, (_, src) in mounts.items()},
            started=time.time(),
            source_sha256=file_sha256(pipeline_file) if pipeline_file else "",
            git=git_state(root),
            images=env_ids,
            tags=dict(tags or {}),
            rerun_of=rerun_of,
        )
        for inst in instances:
            spec = inst.task.spec
            inst.record = StepRecord(
                name=inst.name, task=inst.task.name, component=spec.name, version=spec.version,
                image=self._image(spec.image),
            )
            record.steps.append(inst.record)
        self._notifier = Notifier(self.config.webhooks, self._say)
        self._changed(record)
        self._say(f"run {record.run_id}: {len(instances)} steps ({self.executor.kind})")
        self._warm = set()
        try:
            self._schedule(record, instances, values, mounts)
        except KeyboardInterrupt:
            for inst in instances:
                assert inst.record is not None
                if inst.record.status not in TERMINAL:
                    inst.record.status = "cancelled"
                    inst.record.ended = time.time()
            record.status = "cancelled"
            record.ended = time.time()
            self._changed(record)
            self._notifier.close()
            self._say(f"run {record.run_id} cancelled; its containers were stopped")
            raise
        finally:
            self._release(record.run_id)
        failed = [s for s in record.steps if s.status == "failed"]
        record.status = "failed" if failed else "succeeded"
        record.ended = time.time()
        self._changed(record)
        self._notifier.close()
        self._say(f"run {record.run_id} {record.status} in {record.ended - record.started:.1f}s")
        return record

    def _changed(self, record: RunRecord, step: StepRecord | None = None) -> None:
        """Save the record and tell the webhooks about the new state."""
        self.store.save(record)
        event: dict[str, Any] = {"run_id": record.run_id, "pipeline": record.pipeline,
                                 "status": (step or record).status}
        if step is not None:
            event.update(step=step.name, cached=step.cached, metrics=step.metrics)
        else:
            event.update(metrics={f"{k}.{m}": v for k, ms in record.metrics.items()
                                  for m, v in ms.items() if "per_s" not in m})
        self._notifier.send(event)

    def _image(self, logical: str) -> str:
        """The image a logical name runs as: a pinned image ID, else the configured tag."""
        return self._pins.get(logical) or self.config.image(logical)

    # -- planning -----------------------------------------------------------------------
    def _expand(self, pipeline: Pipeline, values: dict[str, Any]) -> list[_Instance]:
        """One instance per task and loop item; dependencies between instances."""
        by_task: dict[int, dict[tuple[int, ...], _Instance]] = {}
        ordered: list[_Instance] = []
        for task in topological_order(pipeline):
            loops = [g for g in task.groups if isinstance(g, ParallelFor)]
            sizes = [len(self._loop_items(g, values)) for g in loops]
            copies: dict[tuple[int, ...], _Instance] = {}
            for index in itertools.product(*(range(n) for n in sizes)):
                name = task.name + "".join(f"[{i}]" for i in index)
                inst = _Instance(task, index, name)
                for dep in task.upstream():
                    dep_loops = [g for g in dep.groups if isinstance(g, ParallelFor)]
                    dep_index = tuple(index[loops.index(g)] for g in dep_loops)
                    inst.deps.append(by_task[id(dep)][dep_index])
                copies[index] = inst
                ordered.append(inst)
            by_task[id(task)] = copies
        return ordered

    @staticmethod
    def _loop_items(loop: ParallelFor, values: dict[str, Any]) -> list[Any]:
        if isinstance(loop.items, PipelineParam):
            return list(values[loop.items.name])
        if isinstance(loop.items, Channel):
            raise KubesageError(
                f"{loop.id}: ParallelFor over {loop.items.describe()} is not supported; loop "
                "over a list literal or a list pipeline parameter"
            )
        return list(loop.items)

    # -- scheduling ---------------------------------------------------------------------
    def _schedule(
        self,
        record: RunRecord,
        instances: list[_Instance],
        values: dict[str, Any],
        mounts: dict[str, tuple[str, str]],
    ) -> None:
        with ThreadPoolExecutor(self.config.parallelism) as pool:
            try:
                self._loop(record, instances, values, mounts, pool)
            except KeyboardInterrupt:
                # Stop the steps before the pool waits for its threads to end.
                self._cancelled.set()
                self.executor.cancel(record.run_id)
                raise

    def _loop(
        self,
        record: RunRecord,
        instances: list[_Instance],
        values: dict[str, Any],
        mounts: dict[str, tuple[str, str]],
        pool: ThreadPoolExecutor,
    ) -> None:
        pending = list(instances)
        running: dict[Future[None], _Instance] = {}
        failed = False
        while pending or running:
            for inst in list(pending):
                assert inst.record is not None
                dep_states = [d.record.status for d in inst.deps if d.record]
                if any(s not in TERMINAL for s in dep_states):
                    continue
                if len(running) >= self.config.parallelism and not failed:
                    break
                pending.remove(inst)
                if failed or any(s in ("failed", "not_run", "cancelled") for s in dep_states):
                    inst.record.status = "not_run"
                    self._release(record.run_id, inst.name)
                elif any(s == "skipped" for s in dep_states) or not self._conditions_hold(
                    inst, instances, values
                ):
                    inst.record.status = "skipped"
                    self._release(record.run_id, inst.name)
                    self._say(f"- {inst.name} skipped (condition not met)")
                else:
                    inst.record.status = "running"
                    running[pool.submit(self._run_step, record, inst, instances, values,
                                        mounts)] = inst
                self._changed(record, inst.record)
            if not running:
                continue
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for fut in done:
                inst = running.pop(fut)
                assert inst.record is not None
                exc = fut.exception()
                if exc is not None:
                    inst.record.status = "failed"
                    inst.record.error = inst.record.error or "".join(
                        traceback.format_exception(exc)
                    )
                    inst.record.ended = inst.record.ended or time.time()
                if inst.record.status == "failed":
                    failed = True
                self._changed(record, inst.record)

    def _conditions_hold(
        self, inst: _Instance, instances: list[_Instance], values: dict[str, Any]
    ) -> bool:
        for group in inst.task.groups:
            if isinstance(group, Condition):
                cmp = group.comparison
                left = self._value(cmp.left, inst, instances, values)
                right = (self._value(cmp.right, inst, instances, values)
                         if isinstance(cmp.right, Channel) else cmp.right)
                if not evaluate(cmp.op, left, right):
                    return False
        return True

    # -- one step -----------------------------------------------------------------------
    def _producer(self, out: TaskOutput, inst: _Instance, instances: list[_Instance]) -> StepRecord:
        for dep in inst.deps:
            if dep.task is out.task:
                assert dep.record is not None
                return dep.record
        # a condition input: same loop indices as the consumer where the loops are shared
        for other in instances:
            if other.task is out.task and inst.index[: len(other.index)] == other.index:
                assert other.record is not None
                return other.record
        raise KeyError(out.task.name)

    def _value(
        self, value: Any, inst: _Instance, instances: list[_Instance], values: dict[str, Any]
    ) -> Any:
        if isinstance(value, PipelineParam):
            return values[value.name]
        if isinstance(value, LoopItem):
            loops = [g for g in inst.task.groups if isinstance(g, ParallelFor)]
            loop = next(g for g in loops if g.id == value.loop_id)
            item = self._loop_items(loop, values)[inst.index[loops.index(loop)]]
            return item[value.field] if value.field else item
        if isinstance(value, TaskOutput):
            producer = self._producer(value, inst, instances)
            return producer.returns[value.output]
        return value

    def _run_step(
        self,
        record: RunRecord,
        inst: _Instance,
        instances: list[_Instance],
        values: dict[str, Any],
        mounts: dict[str, tuple[str, str]],
    ) -> None:
        step = inst.record
        assert step is not None
        task, spec = inst.task, inst.task.spec
        step.started = time.time()
        params = {p.name: p.default for p in spec.parameters if not p.required}
        inputs: dict[str, tuple[str, dict[str, Any]]] = {}
        for arg, value in task.arguments.items():
            if isinstance(value, TaskOutput) and value.is_artifact:
                producer = self._producer(value, inst, instances)
                out = producer.outputs[value.output]
                path = out["path"]
                if spec.container and value.task.spec.container:  # a file or folder inside
                    path = os.path.join(path, value.output)
                inputs[arg] = (path, out["metadata"])
                step.inputs[arg] = {"path": out["path"], "sha256": out["sha256"]}
            else:
                params[arg] = self._value(value, inst, instances, values)
        for p in spec.parameters:
            if p.type == "float" and isinstance(params.get(p.name), int):
                params[p.name] = float(params[p.name])
        step.parameters = params
        step_mounts = _step_mounts(spec.mounts, mounts)
        image = self._image(spec.image)
        step.environment_id = self.executor.environment_id(image)
        step.cache_key = cache.cache_key(
            spec, step.environment_id, params,
            {k: v["sha256"] for k, v in step.inputs.items()},
            {name: record.data[name] for name, _ in spec.mounts},
            {"distribution": task.distribution.to_dict()},
        )
        if task.cache and self._use_cache:
            hit = cache.lookup(self.store, step.cache_key)
            if hit is not None:
                step.cached = True
                step.outputs, step.returns, step.metrics = (
                    hit["outputs"], hit["returns"], hit["metrics"])
                step.series = hit.get("series", {})
                step.status, step.ended = "succeeded", time.time()
                self._say(f"= {inst.name} cached (from {hit['run_id']})")
                self._release(record.run_id, inst.name)
                return
        if self.path_rewrite:
            params = {k: _rewrite(v, step_mounts) for k, v in params.items()}
        self._attempts(record, inst, params, inputs, step_mounts, image,
                       lambda: self._prewarm(record.run_id, instances, mounts))

    # -- warm starts --------------------------------------------------------------------
    def _prewarm(self, run_id: str, instances: list[_Instance],
                 mounts: dict[str, tuple[str, str]]) -> None:
        """Start, ahead of their turn, the steps that wait only on started or warm steps.

        Called as a step starts. Each warm container imports its component's ``preload``
        modules and waits for its task file, so container start-up and imports overlap the
        upstream work. At most ``parallelism`` wait at once; those that end up cached, skipped
        or not run are released.
        """
        if not (self.config.warm_start and isinstance(self.executor, WarmStarts)):
            return
        store_root = os.path.abspath(self.config.store)
        for nxt in instances:  # in dependency order: a chain warms up several steps ahead
            if self._cancelled.is_set():
                return
            if (not nxt.deps or nxt.record is None or nxt.record.status != "pending"
                    or nxt.task.spec.container):
                continue
            with self._warm_lock:
                if nxt.name in self._warm or len(self._warm) >= self.config.parallelism:
                    continue
                if any(d.record is None or (d.record.status not in ("running", "succeeded")
                                            and d.name not in self._warm) for d in nxt.deps):
                    continue
                self._warm.add(nxt.name)
            spec = nxt.task.spec
            task_path = os.path.join(self.artifacts.step_dir(run_id, nxt.name), "task.json")
            started = False
            try:
                started = self.executor.prewarm(
                    Launch(run_id, nxt.name, self._image(spec.image), task_path, store_root,
                           _step_mounts(spec.mounts, mounts), nxt.task.resources,
                           nxt.task.distribution),
                    [*spec.preload, spec.entry.partition(":")[0]])
            except Exception as e:  # the step starts cold instead
                self._say(f"  (could not start {nxt.name} ahead: {e})")
            # Not started, or the scheduler meanwhile skipped it: free its place. (A step that
            # started meanwhile is safe: the executor never starts a taken step warm.)
            if not started or nxt.record.status in ("skipped", "not_run", "cancelled"):
                self._release(run_id, nxt.name)
        # Heavy imports only for the steps that come next (every upstream step has started): a
        # step further ahead waits with its container up, off the CPUs the running steps use.
        with self._warm_lock:
            waiting = [i for i in instances if i.name in self._warm]
        for nxt in waiting:
            if all(d.record is not None and d.record.status in ("running", "succeeded")
                   for d in nxt.deps):
                folder = self.artifacts.step_dir(run_id, nxt.name)
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, "task.json" + PRELOAD_SUFFIX), "a"):
                    pass

    def _release(self, run_id: str, step: str | None = None) -> None:
        """Forget (and remove) warm containers: of ``step`` once it ran or will not, or all."""
        with self._warm_lock:
            if step is None:
                self._warm.clear()
            else:
                self._warm.discard(step)
        if isinstance(self.executor, WarmStarts):
            self.executor.release(run_id, step)

    def _attempts(
        self,
        record: RunRecord,
        inst: _Instance,
        params: dict[str, Any],
        inputs: dict[str, tuple[str, dict[str, Any]]],
        mounts: dict[str, str],
        image: str,
        on_started: Callable[[], None] | None = None,
    ) -> None:
        step = inst.record
        assert step is not None
        spec = inst.task.spec
        step_dir = self.artifacts.step_dir(record.run_id, inst.name)
        log_path = os.path.join(step_dir, "log.txt")
        step.log = log_path
        # Checkpoints outlive failed attempts and failed runs: an identical step (same cache
        # key) resumes from them, as a spot-interrupted job does; removed once it succeeds.
        checkpoints = os.path.join(os.path.abspath(self.config.store), "checkpoints",
                                   step.cache_key[:24])
        os.makedirs(checkpoints, exist_ok=True)
        for attempt in range(inst.task.retries + 1):
            if self._cancelled.is_set():
                return
            step.attempts = attempt + 1
            partial = self.artifacts.prepare(record.run_id, inst.name, [a.name for a in spec.outputs])
            result_path = os.path.join(step_dir, "result.json")
            if os.path.exists(result_path):
                os.remove(result_path)
            tf = os.path.join(step_dir, "task.json")
            env = self._step_env(record.run_id, inst.name, checkpoints)
            command_line: tuple[list[str], list[str]] | None = None
            files: dict[str, str] = {}
            if spec.container is None:
                # Atomic: a warm container waiting for this file must never read half of it.
                write_json_atomic(tf, task_file(spec.entry, Invocation(params, inputs, partial),
                                                result_path, env))
            else:
                command, args, files = container_step.command_line(
                    spec, params, {k: p for k, (p, _) in inputs.items()}, partial, step_dir)
                command_line = (command, args)
                env = {**dict(spec.container.env), **env}
            self._say(f"> {inst.name} started" + (f" (attempt {attempt + 1})" if attempt else ""))
            with _StepLog(log_path, lambda line: self._say(f"  [{inst.name}] {line}")) as log:
                code = self.executor.run(
                    Launch(record.run_id, inst.name, image, tf, os.path.abspath(self.config.store),
                           mounts, inst.task.resources, inst.task.distribution, checkpoints, env,
                           command_line, on_started if attempt == 0 else None),
                    log,
                )
                problem = "" if code or spec.container is None else container_step.collect(
                    spec, partial, files, result_path)
                if problem:
                    log(problem)
                    code = 1
            self._release(record.run_id, inst.name)
            tail = list(log.tail)
            if code == 0 and os.path.exists(result_path):
                self._finish(record.run_id, inst, partial, result_path)
                shutil.rmtree(checkpoints, ignore_errors=True)
                return
            for path in partial.values():
                self.artifacts.discard(path)
            step.error = f"exit code {code}; last log lines:\n" + "\n".join(tail)
            if self._cancelled.is_set():
                return
            if attempt < inst.task.retries:
                delay = RETRY_BACKOFF_S * 2**attempt
                self._say(f"! {inst.name} failed (exit {code}); retrying in {delay:.0f}s")
                time.sleep(delay)
        step.status, step.ended = "failed", time.time()
        self._say(f"x {inst.name} failed (exit {code}), log {log_path}:\n"
                  + "\n".join(f"    {line}" for line in tail[-15:]))

    def _step_env(self, run_id: str, step: str, checkpoints: str) -> dict[str, str]:
        """What every step may read of its target (``kubesage.runtime.context``)."""
        uri = self.config.tracking_uri
        env = {CHECKPOINT_ENV: checkpoints, RUN_ID_ENV: run_id, STEP_ENV: step,
               "MLFLOW_TRACKING_URI": uri}
        if uri.startswith("sqlite:///"):  # a local store: artifacts beside the database
            folder = os.path.dirname(uri.removeprefix("sqlite:///"))
            os.makedirs(folder, exist_ok=True)
            env[MLFLOW_ARTIFACTS_ENV] = os.path.join(folder, "artifacts")
        return env

    def _finish(self, run_id: str, inst: _Instance, partial: dict[str, str], result_path: str) -> None:
        step = inst.record
        assert step is not None
        with open(result_path) as f:
            result = json.load(f)
        for name, path in partial.items():
            final = self.artifacts.commit(path)
            step.outputs[name] = {
                "path": final,
                "sha256": sha256_tree(final),
                "metadata": result["artifacts"].get(name, {}),
            }
        step.returns, step.metrics = result["returns"], result["metrics"]
        step.series = result.get("series", {})
        step.status, step.ended = "succeeded", time.time()
        if inst.task.cache:
            self.store.cache_put(step.cache_key, {
                "outputs": step.outputs, "returns": step.returns, "metrics": step.metrics,
                "series": step.series,
                "run_id": run_id,
            })
        self._say(f"+ {inst.name} succeeded in {step.ended - (step.started or step.ended):.1f}s")

    def _say(self, text: str) -> None:
        with self._print_lock:
            print(text, file=self.out, flush=True)


class _StepLog:
    """Appends a step's lines to its log file, echoes them, keeps the last ones for errors."""

    def __init__(self, path: str, echo: Callable[[str], None]) -> None:
        self.file = open(path, "a")
        self.echo = echo
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)

    def __call__(self, line: str) -> None:
        self.file.write(line + "\n")
        self.file.flush()
        self.tail.append(line)
        self.echo(line)

    def __enter__(self) -> _StepLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.file.close()


def _step_mounts(wanted: tuple[tuple[str, str], ...],
                 mounts: dict[str, tuple[str, str]]) -> dict[str, str]:
    """Container path -> host folder of the data mounts a component declares."""
    names = dict(wanted)
    return {target: src for name, (target, src) in mounts.items() if name in names}


def _rewrite(value: Any, mounts: dict[str, str]) -> Any:
    if isinstance(value, str):
        for target, source in mounts.items():
            if value == target or value.startswith(target.rstrip("/") + "/"):
                return source + value[len(target.rstrip("/")):]
    return value


def runner_for(kind: str, config: LocalConfig, project_root: str,
               log: TextIO = sys.stderr) -> LocalRunner:
    """A local runner with the ``docker`` or ``subprocess`` executor."""
    executor: Executor
    if kind == "docker":
        from kubesage.targets.local.docker_executor import DockerExecutor

        executor = DockerExecutor()
    elif kind == "subprocess":
        from kubesage.targets.local.process_executor import ProcessExecutor

        executor = ProcessExecutor(project_root)
    else:
        raise KubesageError(f"unknown runner '{kind}'; use docker or subprocess")
    return LocalRunner(config, executor, log=log, path_rewrite=kind == "subprocess")


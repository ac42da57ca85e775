"""Running one step to its end: attempts, retries with backoff, logs, and committing outputs.

Each attempt writes its outputs into fresh ``.partial`` folders; only a successful attempt's
are renamed into place (and entered in the cache), so a failed or interrupted step never leaves
an artifact that looks complete. Checkpoints outlive failed attempts and failed or cancelled runs
(an identical step, same cache key, resumes from them, as a spot-interrupted job does); they are
removed once the step succeeds.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubesage.plan import Step
from kubesage.runs.artifacts import sha256_tree
from kubesage.runtime.context import CHECKPOINT_ENV, MLFLOW_ARTIFACTS_ENV, RUN_ID_ENV, STEP_ENV
from kubesage.runtime.invoke import Invocation
from kubesage.runtime.local import RESULT_FILE, TASK_FILE, task_file
from kubesage.store.artifacts import ArtifactStoreError
from kubesage.targets.local import container_step
from kubesage.targets.local.executor import Launch
from kubesage.targets.local.step import StepCall, rewrite_paths
from kubesage.util.atomic import write_json_atomic

if TYPE_CHECKING:
    from kubesage.targets.local.runner import LocalRun

LOG_TAIL_LINES = 30
RETRY_BACKOFF_S = 1.0


def run_attempts(run: LocalRun, step: Step, call: StepCall,
                 on_started: Callable[[], None] | None = None) -> None:
    """Attempt ``step`` up to ``retries + 1`` times; its record ends succeeded or failed."""
    record = run.records[step.name]
    spec = step.task.spec
    step_dir = run.artifacts.step_dir(run.run_id, step.name)
    log_path = os.path.join(step_dir, "log.txt")
    record.log = log_path
    checkpoints = checkpoint_dir(run.config.store, record.cache_key)
    shared = run.setup.workspace.artifacts
    remote_checkpoints = f"checkpoints/{record.cache_key[:24]}"
    if not _from_the_team(run, step, call, checkpoints, remote_checkpoints):
        return
    params = call.params
    if run.path_rewrite:
        params = {k: rewrite_paths(v, call.mounts) for k, v in params.items()}
    code, tail = 0, []
    for attempt in range(step.task.retries + 1):
        if run.cancelled.is_set():
            return
        record.attempts = attempt + 1
        partial = run.artifacts.prepare(run.run_id, step.name, [a.name for a in spec.outputs])
        result_path = os.path.join(step_dir, RESULT_FILE)
        if os.path.exists(result_path):
            os.remove(result_path)
        tf = os.path.join(step_dir, TASK_FILE)
        env = step_env(run, step.name, checkpoints)
        command_line: tuple[list[str], list[str]] | None = None
        files: dict[str, str] = {}
        if spec.container is None:
            # Atomic: a warm container waiting for this file must never read half of it.
            write_json_atomic(tf, task_file(spec.entry, Invocation(params, call.inputs, partial),
                                            result_path, env))
        else:
            command, args, files = container_step.command_line(
                spec, params, {k: p for k, (p, _) in call.inputs.items()}, partial, step_dir)
            command_line = (command, args)
            env = {**dict(spec.container.env), **env}
        run.say(f"> {step.name} started" + (f" (attempt {attempt + 1})" if attempt else ""))
        with _StepLog(log_path, lambda line: run.say(f"  [{step.name}] {line}")) as log:
            code = run.executor.run(
                Launch(run.run_id, step.name, call.image, tf, os.path.abspath(run.config.store),
                       call.mounts, step.task.resources, step.task.distribution, checkpoints, env,
                       command_line, on_started if attempt == 0 else None),
                log,
            )
            problem = "" if code or spec.container is None else container_step.collect(
                spec, partial, files, result_path)
            if problem:
                log(problem)
                code = 1
        run.released(step)
        if any(p.type == "secret" for p in spec.parameters) and os.path.exists(tf):
            os.remove(tf)  # it held the step's secrets: read, no longer written down
        tail = list(log.tail)
        if code == 0 and os.path.exists(result_path):
            _finish(run, step, partial, result_path)
            shutil.rmtree(checkpoints, ignore_errors=True)
            return
        for path in partial.values():
            run.artifacts.discard(path)
        record.error = f"exit code {code}; last log lines:\n" + "\n".join(tail)
        if run.cancelled.is_set():
            return
        if attempt < step.task.retries:
            delay = RETRY_BACKOFF_S * 2**attempt
            run.say(f"! {step.name} failed (exit {code}); retrying in {delay:.0f}s")
            time.sleep(delay)
    record.status, record.ended = "failed", time.time()
    if shared.shared and os.listdir(checkpoints):  # the team can resume it from here
        _quietly(lambda: shared.sync_up(checkpoints, remote_checkpoints))
    run.say(f"x {step.name} failed (exit {code}), log {log_path}:\n"
            + "\n".join(f"    {line}" for line in tail[-15:]))


def _quietly(work: Callable[[], Any]) -> Any:
    """Checkpoints are a help, never a cause of failure: a store that does not answer is
    skipped (the step starts over, or its failure stands as it is)."""
    try:
        return work()
    except ArtifactStoreError:
        return None


def _from_the_team(run: LocalRun, step: Step, call: StepCall, checkpoints: str,
                   remote_checkpoints: str) -> bool:
    """Bring what the team's artifact store holds for this step: the inputs published by
    another checkout, and checkpoints this step left on another machine. False (the step
    failed, with the cause) when an input cannot be fetched."""
    shared = run.setup.workspace.artifacts
    if shared.shared and not os.listdir(checkpoints):
        found = _quietly(lambda: shared.sync_down(remote_checkpoints, checkpoints))
        if found:
            run.say(f"  [{step.name}] {found} checkpoint file(s) from {shared.url}")
    try:
        call.fetch_inputs(run)
    except ArtifactStoreError as e:
        record = run.records[step.name]
        record.status, record.ended, record.error = "failed", time.time(), str(e)
        run.say(f"x {step.name} failed: {e}")
        return False
    return True


def checkpoint_dir(store: str, cache_key: str) -> str:
    """The step's checkpoint folder: per cache key, so only an identical step resumes from it."""
    path = os.path.join(os.path.abspath(store), "checkpoints", cache_key[:24])
    os.makedirs(path, exist_ok=True)
    return path


def step_env(run: LocalRun, step: str, checkpoints: str) -> dict[str, str]:
    """What every step may read of its target (``kubesage.runtime.context``)."""
    uri = run.config.tracking_uri
    env = {CHECKPOINT_ENV: checkpoints, RUN_ID_ENV: run.run_id, STEP_ENV: step,
           "MLFLOW_TRACKING_URI": uri}
    if uri.startswith("sqlite:///"):  # a local store: artifacts beside the database
        folder = os.path.dirname(uri.removeprefix("sqlite:///"))
        os.makedirs(folder, exist_ok=True)
        env[MLFLOW_ARTIFACTS_ENV] = os.path.join(folder, "artifacts")
    return env


def _finish(run: LocalRun, step: Step, partial: dict[str, str], result_path: str) -> None:
    """Commit a successful attempt's outputs, publish them to the team's artifact store (a
    failure there fails the step, with its cause), and enter them in the step cache."""
    record = run.records[step.name]
    with open(result_path) as f:
        result = json.load(f)
    shared = run.setup.workspace.artifacts
    for name, path in partial.items():
        final = run.artifacts.commit(path)
        record.outputs[name] = out = {
            "path": final,
            "sha256": sha256_tree(final),
            "metadata": result["artifacts"].get(name, {}),
        }
        if shared.shared:
            try:
                out["uri"] = shared.publish(final, out["sha256"])
            except ArtifactStoreError as e:
                record.status, record.ended, record.error = "failed", time.time(), str(e)
                run.say(f"x {step.name} failed: {e}")
                return
    record.returns, record.metrics = result["returns"], result["metrics"]
    record.series = result.get("series", {})
    record.status, record.ended = "succeeded", time.time()
    if step.task.cache:
        run.store.cache_put(record.cache_key, {
            "outputs": record.outputs, "returns": record.returns, "metrics": record.metrics,
            "series": record.series, "run_id": run.run_id, "user": run.record.user,
        }, since=record.started or 0.0)  # an entry found unusable when the step started goes
    run.say(f"+ {step.name} succeeded in {record.ended - (record.started or record.ended):.1f}s")


class _StepLog:
    """Appends a step's lines to its log file, echoes them, keeps the last ones for errors."""

    def __init__(self, path: str, echo: Callable[[str], None]) -> None:
        self.file = open(path, "a")
        self.echo = echo
        self.tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)

    def __call__(self, line: str) -> None:
        try:
            self.file.write(line + "\n")
            self.file.flush()
        except OSError:  # the store's disk is full: the lines still reach the run's log
            pass
        self.tail.append(line)
        self.echo(line)

    def __enter__(self) -> _StepLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.file.close()
        except OSError:  # what could not be flushed is in the run's log
            pass

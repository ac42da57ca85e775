"""Warm starts: a step's container started ahead of its turn, waiting for its task file.

The local runner asks for one as soon as a step's upstream steps have all started. The
container runs ``python -m kubesage.runtime local --await TASK MODULE...``: it imports the
component's heavy modules, then waits for the task file, which the runner writes (atomically)
when the step's turn comes. The step then costs neither container start-up nor imports.

Rules that keep it safe:

- a step is run by exactly one container: once the step has been taken (its turn came) or
  released (it will not run), no new warm start of it begins; taking waits for one already
  under way; a released one that has not begun never does, one coming up is removed;
- a step whose turn it is starts first: warm starts wait while one is starting, and at most
  two start at once;
- containers that will not run (their step was cached, skipped, not run, or the run was
  cancelled) and finished ones are removed in the background; ``release`` of the whole run
  waits for all of that.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from kubesage.docker_engine.containers import remove_group
from kubesage.runtime.local import PRELOAD_SUFFIX, TASK_FILE
from kubesage.targets.local.executor import Launch, WarmStarts
from kubesage.targets.local.step import step_mounts

if TYPE_CHECKING:
    from kubesage.targets.local.runner import LocalRun

WARM_STARTS_AT_ONCE = 2
QUIET_WAIT_S = 10.0  # a warm start waits at most this long for steps in their turn to start

Key = tuple[str, str]  # (run ID, step)


def signature(launch: Launch) -> tuple[Any, ...]:
    """What a warm container was started with, which a step's run must match."""
    return (launch.image, launch.store_root, tuple(sorted(launch.mounts.items())),
            launch.resources)


class WarmPool:
    """Warm containers of one executor; ``boot(launch, command)`` starts a container."""

    def __init__(self, boot: Callable[[Launch, list[str]], Any]) -> None:
        self._boot = boot
        self._cond = threading.Condition()
        self._waiting: dict[Key, tuple[Future[Any], tuple[Any, ...]]] = {}
        self._closed: set[Key] = set()  # taken or released: never (again) started warm
        self._dropped: set[Key] = set()  # released: a start still queued does not happen
        self._cancelled: set[str] = set()
        self._cold = 0  # steps in their turn starting right now
        self._slots = threading.Semaphore(WARM_STARTS_AT_ONCE)
        self._pending: dict[str, list[Future[None]]] = {}  # run ID -> background removals
        self._pool = ThreadPoolExecutor(4, thread_name_prefix="kubesage-warm")

    def start(self, launch: Launch, preload: list[str]) -> bool:
        """Start ``launch``'s container in the background; False if it may not start warm."""
        key = (launch.run_id, launch.step)
        with self._cond:
            if (launch.distribution.world_size > 1 or launch.run_id in self._cancelled
                    or key in self._closed or key in self._waiting):
                return False
            command = ["local", "--await", launch.task_file, *preload]
            self._waiting[key] = (self._pool.submit(self._start, key, launch, command),
                                  signature(launch))
        return True

    def _start(self, key: Key, launch: Launch, command: list[str]) -> Any:
        with self._slots:
            with self._cond:
                self._cond.wait_for(lambda: self._cold == 0 or key in self._dropped, QUIET_WAIT_S)
                if key in self._dropped:
                    return None
            return self._boot(launch, command)

    def take(self, launch: Launch) -> Any:
        """The container waiting for this step, if one matches and still runs; else None.

        From here on the step never starts warm again (a retry starts its own container).
        """
        key = (launch.run_id, launch.step)
        with self._cond:
            self._closed.add(key)
            started, sig = self._waiting.pop(key, (None, None))
            self._cond.notify_all()
        if started is None:
            return None
        container = _result(started)
        if container is None:
            return None
        try:
            container.reload()
        except Exception:  # the engine did not answer: follow it anyway, never run a step twice
            return container
        if container.status == "running" and sig == signature(launch):
            return container
        self.remove_later(launch.run_id, [container])  # exited (gave up waiting), or mismatched
        return None

    @contextlib.contextmanager
    def cold_start(self) -> Iterator[None]:
        """Around starting a step in its turn: warm starts wait meanwhile."""
        with self._cond:
            self._cold += 1
        try:
            yield
        finally:
            with self._cond:
                self._cold -= 1
                self._cond.notify_all()

    def remove_later(self, run_id: str, containers: list[Any], network: Any = None) -> None:
        """Remove containers (and a job's network) in the background."""
        self._track(run_id, self._pool.submit(_remove_quietly, containers, network))

    def cancel(self, run_id: str) -> None:
        """No more warm starts for ``run_id`` (Ctrl-C)."""
        with self._cond:
            self._cancelled.add(run_id)

    def release(self, run_id: str, step: str | None = None) -> None:
        """Drop warm containers that will not run: of ``step``, or of the whole run.

        For a step it returns at once; for the whole run it waits until every container of the
        run that this pool started or finished is removed.
        """
        with self._cond:
            keys = [k for k in self._waiting if k[0] == run_id and step in (None, k[1])]
            dropped = [self._waiting.pop(k)[0] for k in keys]
            self._dropped.update(keys)
            if step is not None:
                self._closed.add((run_id, step))
            self._cond.notify_all()
        for started in dropped:
            started.cancel()  # not begun yet: never starts
            done: Future[None] = Future()
            started.add_done_callback(functools.partial(_discard, done=done))
            self._track(run_id, done)
        if step is None:
            with self._cond:
                pending = self._pending.pop(run_id, [])
            for removal in pending:
                removal.result()
            with self._cond:
                self._closed = {k for k in self._closed if k[0] != run_id}
                self._dropped = {k for k in self._dropped if k[0] != run_id}
                self._cancelled.discard(run_id)

    def _track(self, run_id: str, removal: Future[None]) -> None:
        with self._cond:
            self._pending.setdefault(run_id, []).append(removal)


def _result(started: Future[Any]) -> Any:
    """The container a warm start produced; None if it failed, was cancelled or was dropped."""
    try:
        return started.result()
    except BaseException:  # CancelledError, or the engine's error: the step starts cold
        return None


def _discard(started: Future[Any], done: Future[None]) -> None:
    container = _result(started)
    if container is not None:
        _remove_quietly([container])
    done.set_result(None)


def _remove_quietly(containers: list[Any], network: Any = None) -> None:
    try:
        remove_group(containers, network)
    except Exception:  # a network still in use or already gone: nothing to report to the run
        pass


class WarmStarter:
    """One run's warm starts: which steps start ahead of their turn, and letting go of those that
    will not run. Per run, so that one runner can execute several runs at once."""

    def __init__(self, run: LocalRun, executor: WarmStarts) -> None:
        self.run = run
        self.executor = executor
        self._lock = threading.Lock()
        self._warm: set[str] = set()  # steps started ahead of their turn, still waiting

    def prewarm(self) -> None:
        """Start, ahead of their turn, the steps that wait only on started or warm steps.

        Called as a step starts. Each warm container imports its component's ``preload``
        modules and waits for its task file, so container start-up and imports overlap the
        upstream work. At most ``parallelism`` wait at once; those that end up cached, skipped
        or not run are released.
        """
        run = self.run
        store_root = os.path.abspath(run.config.store)
        for nxt in run.plan.steps:  # in dependency order: a chain warms up several steps ahead
            if run.cancelled.is_set():
                return
            record = run.records[nxt.name]
            if not nxt.deps or record.status != "pending" or nxt.task.spec.container:
                continue
            with self._lock:
                if nxt.name in self._warm or len(self._warm) >= run.config.parallelism:
                    continue
                if any(run.records[d.name].status not in ("running", "succeeded")
                       and d.name not in self._warm for d in nxt.deps):
                    continue
                self._warm.add(nxt.name)
            spec = nxt.task.spec
            task_path = os.path.join(run.artifacts.step_dir(run.run_id, nxt.name), TASK_FILE)
            started = False
            try:
                started = self.executor.prewarm(
                    Launch(run.run_id, nxt.name, run.image(spec.image), task_path, store_root,
                           step_mounts(spec.mounts, run.mounts), nxt.task.resources,
                           nxt.task.distribution),
                    [*spec.preload, spec.entry.partition(":")[0]])
            except Exception as e:  # the step starts cold instead
                run.say(f"  (could not start {nxt.name} ahead: {e})")
            # Not started, or the scheduler meanwhile skipped it: free its place. (A step that
            # started meanwhile is safe: the executor never starts a taken step warm.)
            if not started or record.status in ("skipped", "not_run", "cancelled"):
                self.release(nxt.name)
        # Heavy imports only for the steps that come next (every upstream step has started): a
        # step further ahead waits with its container up, off the CPUs the running steps use.
        with self._lock:
            waiting = [s for s in run.plan.steps if s.name in self._warm]
        for nxt in waiting:
            if all(run.records[d.name].status in ("running", "succeeded") for d in nxt.deps):
                folder = run.artifacts.step_dir(run.run_id, nxt.name)
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, TASK_FILE + PRELOAD_SUFFIX), "a"):
                    pass

    def release(self, step: str | None = None) -> None:
        """Forget (and remove) warm containers: of ``step`` once it ran or will not, or all."""
        with self._lock:
            if step is None:
                self._warm.clear()
            else:
                self._warm.discard(step)
        self.executor.release(self.run.run_id, step)

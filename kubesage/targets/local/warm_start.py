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
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kubesage.containers import remove_group
from kubesage.targets.local.executor import Launch

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

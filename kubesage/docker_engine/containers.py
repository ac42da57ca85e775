"""Containers of a run on a Docker engine: labels, following a job's group, removal.

Every container and network kubesage starts carries ``kubesage.run=<run ID>`` (and containers
``kubesage.step=<step>``), whichever path started it, so a run's leftovers are always found by
label: when it is cancelled, and when a later command finds it abandoned.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

RUN_LABEL = "kubesage.run"
STEP_LABEL = "kubesage.step"


def labels(run_id: str, step: str | None = None) -> dict[str, str]:
    """The labels of a container (with ``step``) or network (without) of run ``run_id``."""
    out = {RUN_LABEL: run_id}
    if step is not None:
        out[STEP_LABEL] = step
    return out


def remove_run(client: Any, run_id: str) -> int:
    """Remove every container (running or not) and network labelled with ``run_id``; how many
    containers there were. Errors of single objects (already gone) are ignored."""
    wanted = {"label": f"{RUN_LABEL}={run_id}"}
    # sparse: no inspect per container, which fails for one removed meanwhile (a warm start's)
    containers = client.containers.list(all=True, filters=wanted, sparse=True)
    for container in containers:
        try:
            container.remove(force=True)
        except Exception:  # already removed
            pass
    for network in client.networks.list(filters=wanted):
        try:
            network.remove()
        except Exception:  # already removed, or a container of another run still attached
            pass
    return len(containers)


def follow_logs(container: Any, on_line: Callable[[str], None]) -> int:
    """Pass each log line of ``container`` to ``on_line`` until it exits; its exit code."""
    pending = b""
    for chunk in container.logs(stream=True, follow=True):
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            on_line(line.decode(errors="replace"))
    if pending:
        on_line(pending.decode(errors="replace"))
    return int(container.wait()["StatusCode"])


def kill_quietly(container: Any) -> None:
    try:
        container.kill()
    except Exception:  # already gone or stopped
        pass


def follow_group(containers: list[Any], on_line: Callable[[int, str], None],
                 limit_s: float | None = None) -> tuple[int, int]:
    """Follow every container to its end; the first to fail stops the others.

    Returns ``(exit code, index)`` of the first container that failed (``(0, -1)`` when all
    succeeded): the cause, not a peer that was killed because of it. A container whose log
    could not be followed counts as failed (exit code -1). Raises ``TimeoutError`` (after
    killing them all) when the group outlives ``limit_s``.
    """
    lock = threading.Lock()
    first: list[tuple[int, int]] = []

    def follow(index: int, container: Any) -> None:
        code = -1
        try:
            code = follow_logs(container, lambda line: on_line(index, line))
        finally:
            if code != 0:
                with lock:
                    if not first:
                        first.append((code, index))
                        for other in containers:
                            if other is not container:
                                kill_quietly(other)

    threads = [threading.Thread(target=follow, args=(i, c), daemon=True)
               for i, c in enumerate(containers)]
    for t in threads:
        t.start()
    deadline = None if limit_s is None else time.monotonic() + limit_s
    for t in threads:
        t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        for c in containers:
            kill_quietly(c)
        raise TimeoutError(f"still running after {limit_s} s")
    return first[0] if first else (0, -1)


def remove_group(containers: list[Any], network: Any = None) -> None:
    """Remove a job's containers (running or not) and then its private network."""
    for container in containers:
        try:
            container.remove(force=True)
        except Exception:  # already removed
            pass
    if network is not None:
        network.remove()


def remove_leftovers(run_id: str) -> int:
    """Remove the containers and networks a run left on the local engine; how many containers
    (0 when no engine answers: nothing of the run can be running on it either)."""
    import docker

    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception:  # the SDK raises several types for "no engine"
        return 0
    return remove_run(client, run_id)

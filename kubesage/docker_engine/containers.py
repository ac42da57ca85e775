"""Containers of a run on a Docker engine: labels, following a job's group, removal.

Every container and network kubesage starts carries ``kubesage.run=<run ID>`` (and containers
``kubesage.step=<step>``), whichever path started it, so a run's leftovers are always found by
label: when it is cancelled, and when a later command finds it abandoned.
"""

from __future__ import annotations

import os
import stat
import threading
import time
from collections.abc import Callable
from typing import Any

RUN_LABEL = "kubesage.run"
STEP_LABEL = "kubesage.step"

# The user steps run as in kubesage's images (``USER 1000:0`` in their Dockerfiles): not root.
# Group 0 is OpenShift's convention for arbitrary users: a folder a root host shares with its
# steps is group-writable (``share_with_steps``), so the step can write there and nowhere else.
RUN_AS_UID, RUN_AS_GID = 1000, 0


def step_user() -> str:
    """The ``uid:gid`` a step's container runs as: the host user when it is not root (the files
    a step writes stay the user's), else the images' non-root user (``RUN_AS_UID``)."""
    uid = os.getuid()
    return f"{uid}:{os.getgid()}" if uid != 0 else f"{RUN_AS_UID}:{RUN_AS_GID}"


def share_with_steps() -> None:
    """As root, make what this process creates from now on group-writable (umask 002): the
    folders a step writes (outputs, checkpoints, MLflow) then accept ``RUN_AS_UID:0``. A no-op
    for any other user, whose steps run as themselves."""
    if os.getuid() == 0:
        os.umask(0o002)


def hand_to_steps(folder: str) -> str:
    """As root, give a folder a step writes into (an output) to the steps' user, as a cluster
    gives a pod its volume: the step may then set its mode and times (``copytree`` into it).
    Returns ``folder``."""
    if os.getuid() == 0:
        os.chown(folder, RUN_AS_UID, RUN_AS_GID)
    return folder


_SHARED_MARKER = ".shared-with-steps"


def share_existing(root: str) -> None:
    """As root, once per folder: make what ``root`` already holds group-writable, as
    ``share_with_steps`` makes new files (a store written before steps ran as non-root)."""
    marker = os.path.join(root, _SHARED_MARKER)
    if os.getuid() != 0 or os.path.exists(marker):
        return
    for dirpath, _, filenames in os.walk(root):
        for path in [dirpath] + [os.path.join(dirpath, n) for n in filenames]:
            try:
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode) and not mode & stat.S_IWGRP:
                    os.chmod(path, stat.S_IMODE(mode) | stat.S_IWGRP)
            except OSError:  # removed meanwhile
                pass
    open(marker, "w").close()


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

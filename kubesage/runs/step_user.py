"""The user steps run as, and the files the host shares with them.

Steps run as a non-root user in kubesage's images (``USER 1000:0`` in their Dockerfiles). Group 0
is OpenShift's convention for arbitrary users: a folder a root host shares with its steps is
group-writable, so the step can write there and nowhere else. Nothing here talks to Docker: the
run path, the stores and every target use it.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator

RUN_AS_UID, RUN_AS_GID = 1000, 0

_umask_lock = threading.Lock()
_umask_depth = 0
_umask_saved = 0


def step_user() -> str:
    """The ``uid:gid`` a step's container runs as: the host user when it is not root (the files
    a step writes stay the user's), else the images' non-root user (``RUN_AS_UID``)."""
    uid = os.getuid()
    return f"{uid}:{os.getgid()}" if uid != 0 else f"{RUN_AS_UID}:{RUN_AS_GID}"


@contextlib.contextmanager
def shared_with_steps() -> Iterator[None]:
    """Inside the block, as root, what this process creates is group-writable (umask 002): the
    folders a step writes (outputs, checkpoints, MLflow, a kfp.local pipeline root) then accept
    ``RUN_AS_UID:0``. The umask is process-wide, so blocks in several threads share one change,
    and the umask from before is restored when the last block ends. A no-op for any other
    user, whose steps run as themselves."""
    global _umask_depth, _umask_saved
    if os.getuid() != 0:
        yield
        return
    with _umask_lock:
        if _umask_depth == 0:
            _umask_saved = os.umask(0o002)
        _umask_depth += 1
    try:
        yield
    finally:
        with _umask_lock:
            _umask_depth -= 1
            if _umask_depth == 0:
                os.umask(_umask_saved)


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
    ``shared_with_steps`` makes new files (a store written before steps ran as non-root)."""
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

"""Abandoned runs: a run whose process died without cleaning up (SIGKILL, a crash, power loss).

Each record names the process that runs it (host, PID and the process's start time, so that a
reused PID is not mistaken for it). ``sweep`` finds records still ``running`` whose process is
gone, marks them (and their unfinished steps) ``abandoned`` and has the target that started
each remove what it left (its containers and networks, by label). Every kubesage command that
opens a run store calls it; it costs one query when there is nothing to do.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kubesage.runs.record import TERMINAL, RunRecord

if TYPE_CHECKING:
    from kubesage.store import RunStore


def _start_ticks(pid: int) -> str:
    """The process's start time since boot (field 22 of /proc/PID/stat), '' if there is none."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return ""
    return text.rpartition(")")[2].split()[19]


def owner() -> dict[str, Any]:
    """This process, as a run record names its owner."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "start": _start_ticks(os.getpid())}


def alive(who: dict[str, Any]) -> bool:
    """Whether the owner process still runs. A run owned on another host counts as alive: only
    its own host can tell."""
    if not who or who.get("host") != socket.gethostname():
        return bool(who)
    if not os.path.exists("/proc"):  # no procfs: a signal 0 tells whether the PID exists
        try:
            os.kill(int(who["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return _start_ticks(int(who["pid"])) == who.get("start")


def sweep(store: RunStore, say: Callable[[str], None] | None = None,
          clean_up: Callable[[RunRecord], int] | None = None) -> list[str]:
    """Mark runs whose process is gone as ``abandoned``; their IDs. ``clean_up`` removes what
    an abandoned run left behind (its target's containers) and says how many there were.

    A record from before owners were recorded (no ``owner``) that still says ``running`` is
    abandoned too: every live run names its owner.
    """
    found = []
    for record in store.running():
        if record.remote or alive(record.owner):  # a service runs it: `runs refresh` reads it
            continue
        now = time.time()
        for step in record.steps:
            if step.status not in TERMINAL:
                step.status, step.ended = "abandoned", step.ended or now
        record.status, record.ended = "abandoned", record.ended or now
        store.save(record)
        removed = 0
        if clean_up is not None:
            try:
                removed = clean_up(record)
            except Exception:  # best effort: the record is what matters
                removed = 0
        if say is not None:
            say(f"run {record.run_id} was abandoned (its process is gone); marked abandoned"
                + (f", {removed} leftover containers removed" if removed else ""))
        found.append(record.run_id)
    return found

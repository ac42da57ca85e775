"""A step's log, read page by page from wherever it is, and followed while the step runs.

Where a log lives is the target's business (``Target.logs``): a local run's log file, its copy in
the team's artifact store, a SageMaker job's CloudWatch streams, a Kubeflow pod's log. Each read
returns a ``LogPage``: the text since ``cursor`` and the cursor to read on from. ``follow`` turns
those reads into a stream that ends when the step has ended and everything it wrote was read;
``kubesage logs`` and the console's log view both use it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from kubesage.runs.record import TERMINAL, RunRecord, StepRecord

if TYPE_CHECKING:
    from kubesage.runs.submitted import ServiceState
    from kubesage.runs.workspace import Workspace

PAGE_BYTES = 1 << 20  # at most this much text in one read


@dataclass
class LogPage:
    """Text read from a log, where to read on (opaque to callers), and whether more is there
    to read now (a page cut at ``PAGE_BYTES``)."""

    text: str
    cursor: str
    more: bool = False


def _page(chunk: bytes, start: int, more: bool) -> LogPage:
    """``chunk`` read at byte ``start``; cut after its last whole line when more follows."""
    if more and b"\n" in chunk:
        chunk = chunk[:chunk.rindex(b"\n") + 1]
    return LogPage(chunk.decode("utf-8", "replace"), str(start + len(chunk)), more)


def read_bytes(data: bytes, cursor: str) -> LogPage:
    """The page of ``data`` after byte offset ``cursor``: whole lines when it is cut."""
    start = int(cursor or 0)
    chunk = data[start:start + PAGE_BYTES]
    return _page(chunk, start, start + len(chunk) < len(data))


def read_file(path: str, cursor: str) -> LogPage:
    """The page of the file at ``path`` after byte offset ``cursor`` (empty while it is not
    there yet)."""
    start = int(cursor or 0)
    try:
        with open(path, "rb") as f:
            f.seek(start)
            data = f.read(PAGE_BYTES + 1)
    except FileNotFoundError:
        return LogPage("", str(start))
    return _page(data[:PAGE_BYTES], start, len(data) > PAGE_BYTES)


def local_log(step: StepRecord, workspace: Workspace, cursor: str) -> LogPage:
    """A step's log as kubesage wrote it: the file on this machine, else its copy in the team's
    artifact store (``log_uri``)."""
    if step.log and os.path.isfile(step.log):
        return read_file(step.log, cursor)
    if step.log_uri and step.log_uri != step.log:
        return read_bytes(workspace.artifacts.read_file(step.log_uri), cursor)
    return LogPage("", cursor)


Reader = Callable[[RunRecord, StepRecord, str], LogPage]


def follow(read: Reader, current: Callable[[], RunRecord], step_name: str, *,
           keep_following: bool, poll_s: float = 1.0,
           stopped: Callable[[], bool] = lambda: False) -> Iterator[str]:
    """The step's log text, page after page: everything there now, and then (with
    ``keep_following``) what it writes until it ends. ``current`` reads the run's record again;
    ``stopped`` ends the stream early (a closed browser tab)."""
    cursor = ""
    while not stopped():
        record = current()
        step = record.step(step_name)
        ended = step.status in TERMINAL or record.status != "running"
        page = read(record, step, cursor)
        cursor = page.cursor
        if page.text:
            yield page.text
        if page.more:
            continue
        if ended or not keep_following:
            return
        time.sleep(poll_s)


class Service(Protocol):
    """What following a log needs of a run's target (``kubesage.targets.base.Target``)."""

    def logs(self, record: RunRecord, step: StepRecord, workspace: Workspace,
             cursor: str = "") -> LogPage: ...

    def read(self, record: RunRecord) -> ServiceState: ...


def reader(workspace: Workspace, target_of: Callable[[str], Service]) -> Reader:
    """Reads a step's log through the target that ran it (the registry is handed in)."""
    return lambda record, step, cursor: target_of(record.target).logs(record, step, workspace,
                                                                     cursor)


def current(workspace: Workspace, run_id: str,
            target_of: Callable[[str], Service]) -> Callable[[], RunRecord]:
    """Reads the run's record again; a submitted run still running is read from its service
    too (in memory: nothing is written, so a read-only store serves as well)."""
    from kubesage.runs.submitted import update

    def read() -> RunRecord:
        record = workspace.store.get(run_id)
        if record.remote and record.status == "running":
            update(record, target_of(record.target).read(record), say=lambda _: None)
        return record

    return read

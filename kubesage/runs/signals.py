"""Stopping a run cleanly: SIGINT (Ctrl-C), SIGTERM (CI systems, ``timeout``, systemd) and SIGHUP
(a closed terminal) all become ``Interrupted``, which unwinds the run like Ctrl-C does: its
containers are removed, its record says ``cancelled``, its checkpoints stay for a resume.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """The process was asked to stop by ``signum``; the exit code is ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


_installed = threading.local()


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Within the block, the first of SIGINT, SIGTERM, SIGHUP raises ``Interrupted`` in the main
    thread; later ones are ignored while the run cleans up. A no-op outside the main thread or
    when an enclosing block already handles them; the previous handlers are restored after."""
    if threading.current_thread() is not threading.main_thread() or getattr(_installed, "on", False):
        yield
        return
    stopping = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stopping
        if stopping:
            return
        stopping = True
        raise Interrupted(signum)

    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, handler)
    _installed.on = True
    try:
        yield
    finally:
        _installed.on = False
        for s, h in previous.items():
            signal.signal(s, h)

"""What the local runner hands an executor for one step attempt, and what it expects back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from kubesage.dsl.interface import Distribution, Resources


@dataclass
class Launch:
    """One attempt of one step: run ``python -m kubesage.runtime local <task_file>``.

    With ``distribution.nodes > 1`` that is one container (or process) per node, told its
    place by ``PET_*`` variables; each starts ``procs_per_node`` torchrun workers.
    """

    run_id: str
    step: str
    image: str  # local image tag (ignored by the subprocess executor)
    task_file: str
    store_root: str  # bind-mounted at the same path, read-write
    mounts: dict[str, str] = field(default_factory=dict)  # container path -> host folder (ro)
    resources: Resources = field(default_factory=Resources)
    distribution: Distribution = field(default_factory=Distribution)
    checkpoint_dir: str = ""  # kept between attempts; bind-mounted at the same path
    env: dict[str, str] = field(default_factory=dict)
    # A container component's own (command, args) instead of the runtime; an empty command
    # keeps the image's entry point. Docker only.
    command_line: tuple[list[str], list[str]] | None = None
    # Called once the step's containers or processes are up (the runner then starts the next
    # steps warm, so they never delay this one).
    on_started: Callable[[], None] | None = None


class Executor(Protocol):
    """Runs step attempts somewhere (Docker containers, local processes)."""

    kind: str

    def environment_id(self, image: str) -> str:
        """Identity of what runs the code (image ID or code hash), part of the cache key."""
        ...

    def run(self, launch: Launch, on_line: Callable[[str], None]) -> int:
        """Run one attempt to the end, passing each log line to ``on_line``; the exit code."""
        ...

    def cancel(self, run_id: str) -> None:
        """Stop everything still running for ``run_id`` (Ctrl-C)."""
        ...

    def gpu_plan(self, wanting: Sequence[str], source: str) -> str | None:
        """One line for the run's log on what the tasks ``wanting`` GPUs get (None: nothing to
        say); ``source`` is the local config file. Raises when the setting cannot be honoured."""
        ...


@runtime_checkable
class WarmStarts(Protocol):
    """An executor that can start a step before its turn (the Docker executor)."""

    def prewarm(self, launch: Launch, preload: Sequence[str]) -> bool:
        """Start ``launch`` now, importing ``preload``; it waits for its task file to appear."""
        ...

    def release(self, run_id: str, step: str | None = None) -> None:
        """Remove started steps that will not run: ``step``, or all of the run."""
        ...

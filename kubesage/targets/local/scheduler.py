"""Scheduling: the steps of a plan in dependency order, independent ones in parallel.

A step starts once every step it depends on has ended, at most ``parallelism`` at once. It is
``not_run`` when one of them failed (or, after a failure, once the run is winding down),
``skipped`` when one of them was skipped or one of its conditions does not hold, and otherwise
handed to ``execute`` on a worker thread.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from kubesage.plan import Step
from kubesage.runs.record import TERMINAL, StepRecord


def schedule(
    steps: list[Step],
    records: dict[str, StepRecord],
    *,
    parallelism: int,
    execute: Callable[[Step], None],
    conditions_hold: Callable[[Step], bool],
    changed: Callable[[StepRecord], None],
    released: Callable[[Step], None] = lambda step: None,
    say: Callable[[str], None] = lambda text: None,
    on_interrupt: Callable[[], None] = lambda: None,
) -> None:
    """Run ``steps`` (in dependency order) to the end; ``records`` maps step name -> record.

    ``released(step)`` is told about a step that will not execute (skipped or not run);
    ``on_interrupt`` stops what runs when the scheduling thread is interrupted (Ctrl-C and
    the other stop signals), before the worker threads are waited for.
    """
    with ThreadPoolExecutor(parallelism, thread_name_prefix="kubesage-step") as pool:
        try:
            _loop(steps, records, pool, parallelism, execute, conditions_hold, changed, released,
                  say)
        except KeyboardInterrupt:
            on_interrupt()
            raise


def _loop(steps: list[Step], records: dict[str, StepRecord], pool: ThreadPoolExecutor,
          parallelism: int, execute: Callable[[Step], None],
          conditions_hold: Callable[[Step], bool], changed: Callable[[StepRecord], None],
          released: Callable[[Step], None], say: Callable[[str], None]) -> None:
    pending = list(steps)
    running: dict[Future[None], Step] = {}
    failed = False
    while pending or running:
        for step in list(pending):
            record = records[step.name]
            dep_states = [records[d.name].status for d in step.deps]
            if any(s not in TERMINAL for s in dep_states):
                continue
            if len(running) >= parallelism and not failed:
                break
            pending.remove(step)
            if failed or any(s in ("failed", "not_run", "cancelled") for s in dep_states):
                record.status = "not_run"
                released(step)
            elif any(s == "skipped" for s in dep_states) or not conditions_hold(step):
                record.status = "skipped"
                released(step)
                say(f"- {step.name} skipped (condition not met)")
            else:
                record.status = "running"
                running[pool.submit(execute, step)] = step
            changed(record)
        if not running:
            continue
        done, _ = wait(running, return_when=FIRST_COMPLETED)
        for fut in done:
            step = running.pop(fut)
            record = records[step.name]
            exc = fut.exception()
            if exc is not None:  # a fault of kubesage's own: the record says what it was
                record.status = "failed"
                record.error = record.error or "".join(traceback.format_exception(exc))
                record.ended = record.ended or time.time()
            if record.status == "failed":
                failed = True
            changed(record)

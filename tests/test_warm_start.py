"""The warm-start pool's rules, with a stand-in for the Docker engine (no containers needed):
a step runs in exactly one container, and every container started ahead is removed."""

from __future__ import annotations

import threading
from typing import Any

from kubesage.dsl.interface import Distribution, Resources
from kubesage.local.executor import Launch
from kubesage.local.warm_start import WarmPool


class FakeContainer:
    """What the pool uses of a docker SDK container."""

    def __init__(self, step: str) -> None:
        self.step, self.status, self.removed = step, "running", False

    def reload(self) -> None:
        pass

    def remove(self, force: bool = False) -> None:
        self.removed = True


class FakeEngine:
    def __init__(self) -> None:
        self.started: list[FakeContainer] = []
        self.lock = threading.Lock()

    def boot(self, launch: Launch, command: list[str]) -> FakeContainer:
        assert command[:2] == ["local", "--await"] and command[2] == launch.task_file
        container = FakeContainer(launch.step)
        with self.lock:
            self.started.append(container)
        return container


def _launch(step: str, **changes: Any) -> Launch:
    fields = dict(run_id="run-1", step=step, image="img", task_file=f"/s/{step}/task.json",
                  store_root="/s", resources=Resources(cpu=1))
    fields.update(changes)
    return Launch(**fields)


def test_a_warm_container_is_used_once_and_a_taken_step_never_starts_warm_again() -> None:
    engine = FakeEngine()
    pool = WarmPool(engine.boot)
    assert pool.start(_launch("a"), ["torch"])
    assert not pool.start(_launch("a"), ["torch"])  # already waiting
    taken = pool.take(_launch("a"))
    assert taken is engine.started[0]
    assert not pool.start(_launch("a"), ["torch"])  # e.g. a late request from another thread
    assert pool.take(_launch("a")) is None  # a retry starts its own container
    pool.release("run-1")
    assert len(engine.started) == 1


def test_released_or_mismatched_warm_containers_are_removed() -> None:
    engine = FakeEngine()
    pool = WarmPool(engine.boot)
    assert pool.start(_launch("skipped"), [])
    assert pool.start(_launch("other-image"), [])
    pool.release("run-1", "skipped")  # the step was skipped: never runs
    assert not pool.start(_launch("skipped"), [])
    assert pool.take(_launch("other-image", image="img2")) is None  # started with another image
    assert not pool.start(_launch("distributed", distribution=Distribution(nodes=2)), [])
    pool.release("run-1")  # the end of the run waits for every removal
    assert engine.started and all(c.removed for c in engine.started)


def test_a_cancelled_run_starts_nothing_more() -> None:
    engine = FakeEngine()
    pool = WarmPool(engine.boot)
    pool.cancel("run-1")
    assert not pool.start(_launch("a"), [])
    pool.release("run-1")
    assert pool.start(_launch("a"), [])  # the next run of the same ID (a re-run) may again
    pool.release("run-1")

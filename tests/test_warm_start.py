"""The warm-start pool's rules, on the real Docker engine: a step runs in exactly one
container, and every container started ahead of its turn is removed."""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pytest

from kubesage.dsl.interface import Distribution, Resources
from kubesage.targets.local.executor import Launch
from kubesage.targets.local.warm_start import WarmPool

pytestmark = pytest.mark.docker


class Engine:
    """Boots a small waiting container per warm start (it only sleeps: no task is run)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.label = f"kubesage.test-warm={secrets.token_hex(4)}"
        self.started: list[Any] = []
        self.lock = threading.Lock()

    def boot(self, launch: Launch, command: list[str]) -> Any:
        assert command[:2] == ["local", "--await"] and command[2] == launch.task_file
        key, value = self.label.split("=")
        container = self.client.containers.run(
            "kubesage/torch:latest", ["-c", "import time; time.sleep(120)"],
            entrypoint=["python3"], detach=True, labels={key: value})
        with self.lock:
            self.started.append(container)
        return container

    def left(self) -> list[Any]:
        return self.client.containers.list(all=True, filters={"label": self.label})


@pytest.fixture
def engine(docker_client: Any) -> Any:
    found = Engine(docker_client)
    yield found
    for container in found.left():
        container.remove(force=True)


def _launch(step: str, **changes: Any) -> Launch:
    fields = dict(run_id="run-1", step=step, image="kubesage/torch:latest",
                  task_file=f"/s/{step}/task.json", store_root="/s", resources=Resources(cpu=1))
    fields.update(changes)
    return Launch(**fields)


def test_a_warm_container_is_used_once_and_a_taken_step_never_starts_warm_again(engine: Engine) -> None:
    pool = WarmPool(engine.boot)
    assert pool.start(_launch("a"), ["torch"])
    assert not pool.start(_launch("a"), ["torch"])  # already waiting
    taken = pool.take(_launch("a"))
    assert taken is engine.started[0]
    assert not pool.start(_launch("a"), ["torch"])  # e.g. a late request from another thread
    assert pool.take(_launch("a")) is None  # a retry starts its own container
    pool.remove_later("run-1", [taken])  # as the executor does when the step ends
    pool.release("run-1")
    assert len(engine.started) == 1 and engine.left() == []


def test_released_or_mismatched_warm_containers_are_removed(engine: Engine) -> None:
    pool = WarmPool(engine.boot)
    assert pool.start(_launch("skipped"), [])
    assert pool.start(_launch("other-image"), [])
    pool.release("run-1", "skipped")  # the step was skipped: never runs
    assert not pool.start(_launch("skipped"), [])
    assert pool.take(_launch("other-image", image="img2")) is None  # started with another image
    assert not pool.start(_launch("distributed", distribution=Distribution(nodes=2)), [])
    pool.release("run-1")  # the end of the run waits for every removal
    assert engine.started and engine.left() == []


def test_a_cancelled_run_starts_nothing_more(engine: Engine) -> None:
    pool = WarmPool(engine.boot)
    pool.cancel("run-1")
    assert not pool.start(_launch("a"), [])
    pool.release("run-1")
    assert pool.start(_launch("a"), [])  # the next run of the same ID (a re-run) may again
    pool.release("run-1")
    assert engine.left() == []

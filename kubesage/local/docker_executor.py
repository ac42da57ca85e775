"""Run each step in its own container on a Docker engine (the docker SDK for Python)."""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.local.container_group import follow_group, kill_quietly, remove_group
from kubesage.local.executor import Launch
from kubesage.runtime.distributed import Layout

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class DockerError(KubesageError):
    """The Docker engine is unreachable or an image is missing."""


def _container_name(launch: Launch, rank: int) -> str:
    step = re.sub(r"[^a-zA-Z0-9_.-]", "-", launch.step)
    return f"ks-{launch.run_id[-6:]}-{secrets.token_hex(2)}-{step}-{rank}"[:120]


def _signature(launch: Launch) -> tuple[Any, ...]:
    """What a warm container was started with and a step's run must match."""
    return (launch.image, launch.store_root, tuple(sorted(launch.mounts.items())),
            launch.resources)


def _started(future: Future[Any]) -> Any:
    """The container a background start produced; None if the start failed."""
    try:
        return future.result()
    except Exception:
        return None


def memory_bytes(text: str) -> int:
    """``"4Gi"`` -> 4294967296 (Kubernetes quantity suffixes)."""
    digits = text.rstrip("KMGTi")
    return int(float(digits) * _UNITS[text[len(digits):]])


class DockerExecutor:
    """One container per node of a step attempt; data mounts read-only at their cloud paths.

    Several nodes share a private bridge network; node 0's container name is the master
    address; every node gets the ``PET_*`` layout variables and the same bind mounts.

    A single-container step can be started warm (``prewarm``): its container starts while the
    upstream steps still run, imports the step's heavy modules and waits for the task file, so
    the step pays neither container start-up nor imports when its turn comes.
    """

    kind = "docker"

    def __init__(self) -> None:
        import docker

        try:
            self.client = docker.from_env()
            self.client.ping()
        except Exception as e:  # the SDK raises several types for "no engine"
            raise DockerError(
                f"cannot reach a Docker engine ({e}); start Docker (dockerd) or use "
                "--runner subprocess"
            ) from None
        self._ids: dict[str, str] = {}
        self._lock = threading.Lock()
        # (run ID, step) -> (the waiting container, once started; what it was started with)
        self._warm: dict[tuple[str, str], tuple[Future[Any], tuple[Any, ...]]] = {}
        self._starter = ThreadPoolExecutor(4, thread_name_prefix="kubesage-prewarm")
        # Starting a step whose turn it is comes first: warm starts wait while one is going on.
        self._cold_starts = 0
        self._quiet = threading.Condition()
        self._warm_slot = threading.Semaphore(2)
        self._removals: list[Future[None]] = []  # finished containers, removed in the background

    def environment_id(self, image: str) -> str:
        with self._lock:
            if image not in self._ids:
                import docker.errors

                try:
                    self._ids[image] = self.client.images.get(image).id
                except docker.errors.ImageNotFound:
                    raise DockerError(
                        f"image {image} is not built; run 'kubesage build' first (or 'docker "
                        f"pull {image}' for an image kubesage does not build)"
                    ) from None
            return self._ids[image]

    def prewarm(self, launch: Launch, preload: Sequence[str]) -> bool:
        """Start ``launch``'s container in the background, importing ``preload``; returns at once.

        The container waits for the task file, which the runner writes (atomically) when the
        step's turn comes; ``run`` of the same step then follows this container instead of
        starting one. Distributed steps are not started warm (their nodes need the layout at
        start): False.
        """
        if launch.distribution.world_size > 1:
            return False
        started = self._starter.submit(self._start_warm, launch, _container_name(launch, 0),
                                       ["local", "--await", launch.task_file, *preload])
        with self._lock:
            self._warm[(launch.run_id, launch.step)] = (started, _signature(launch))
        return True

    def _start_warm(self, launch: Launch, name: str, command: list[str]) -> Any:
        with self._warm_slot:  # two at a time: the engine and the CPUs serve the running step first
            with self._quiet:
                self._quiet.wait_for(lambda: self._cold_starts == 0, timeout=10)
            return self._start(launch, name, launch.env, None, command)

    def release(self, run_id: str, step: str | None = None) -> None:
        """Remove warm containers that will not be used: of ``step``, or of the whole run (then
        also wait until finished containers are removed)."""
        with self._lock:
            keys = [k for k in self._warm if k[0] == run_id and step in (None, k[1])]
            unused = [self._warm.pop(k)[0] for k in keys]
            removals = list(self._removals) if step is None else []
        remove_group([c for c in map(_started, unused) if c is not None])
        for removal in removals:
            removal.result()
        with self._lock:
            self._removals = [r for r in self._removals if not r.done()]

    def _take_warm(self, launch: Launch) -> Any:
        """The waiting container started for this step, if it matches and still runs."""
        with self._lock:
            started, signature = self._warm.pop((launch.run_id, launch.step), (None, None))
        container = _started(started) if started is not None else None
        if container is None:
            return None
        try:
            container.reload()
            if container.status == "running" and signature == _signature(launch):
                return container
        except Exception:  # removed meanwhile
            pass
        remove_group([container])
        return None

    def run(self, launch: Launch, on_line: Callable[[str], None]) -> int:
        nodes = launch.distribution.nodes
        network = None
        names = [_container_name(launch, rank) for rank in range(nodes)]
        if nodes > 1:  # a private network, as the nodes of a training job have
            network = self.client.networks.create(names[0] + "-net", driver="bridge",
                                                  labels={"kubesage.run": launch.run_id})
        containers = []
        warm = self._take_warm(launch) if launch.distribution.world_size == 1 else None
        if warm is not None:
            containers.append(warm)
        try:
            with self._quiet:
                self._cold_starts += 1
            try:
                for rank in range(len(containers), nodes):
                    env = dict(launch.env)
                    if launch.distribution.world_size > 1:
                        env.update(Layout(nodes, launch.distribution.procs_per_node, rank,
                                          names[0] if nodes > 1 else "127.0.0.1").env())
                    containers.append(self._start(launch, names[rank], env, network,
                                                  ["local", launch.task_file]))
            finally:
                with self._quiet:
                    self._cold_starts -= 1
                    self._quiet.notify_all()
            prefix = (lambda rank: f"node-{rank}: ") if nodes > 1 else (lambda rank: "")
            code, _ = follow_group(containers, lambda rank, line: on_line(prefix(rank) + line))
            return code
        finally:  # off the step's critical path; release() waits for it at the end of a run
            removal = self._starter.submit(remove_group, containers, network)
            with self._lock:
                self._removals.append(removal)

    def _start(self, launch: Launch, name: str, env: dict[str, str], network: Any,
               command: list[str]) -> Any:
        """Start one container of ``launch``: the runtime with ``command``, or the component's own."""
        volumes: dict[str, dict[str, str]] = {
            launch.store_root: {"bind": launch.store_root, "mode": "rw"}
        }
        for target, source in launch.mounts.items():
            volumes[source] = {"bind": target, "mode": "ro"}
        options: dict[str, Any] = {}
        res = launch.resources
        if res.cpu:
            options["nano_cpus"] = int(min(res.cpu, os.cpu_count() or 1) * 1e9)
        if res.memory:
            options["mem_limit"] = memory_bytes(res.memory)
        if res.gpus:
            import docker.types

            options["device_requests"] = [
                docker.types.DeviceRequest(count=res.gpus, capabilities=[["gpu"]])
            ]
        if network is not None:
            options["network"] = network.name
        if launch.command_line is not None:
            entrypoint, command = launch.command_line
            options["entrypoint"] = entrypoint or None
        return self.client.containers.run(
            launch.image,
            command,
            name=name,
            detach=True,
            volumes=volumes,
            environment={"HOME": "/tmp", **env},
            user=f"{os.getuid()}:{os.getgid()}",
            labels={"kubesage.run": launch.run_id, "kubesage.step": launch.step},
            shm_size="1g",
            **options,
        )

    def cancel(self, run_id: str) -> None:
        self.release(run_id)
        for container in self.client.containers.list(filters={"label": f"kubesage.run={run_id}"}):
            kill_quietly(container)

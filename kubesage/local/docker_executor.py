"""Run each step in its own container on a Docker engine (the docker SDK for Python)."""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Callable
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


def memory_bytes(text: str) -> int:
    """``"4Gi"`` -> 4294967296 (Kubernetes quantity suffixes)."""
    digits = text.rstrip("KMGTi")
    return int(float(digits) * _UNITS[text[len(digits):]])


class DockerExecutor:
    """One container per node of a step attempt; data mounts read-only at their cloud paths.

    Several nodes share a private bridge network; node 0's container name is the master
    address; every node gets the ``PET_*`` layout variables and the same bind mounts.
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

    def environment_id(self, image: str) -> str:
        with self._lock:
            if image not in self._ids:
                import docker.errors

                try:
                    self._ids[image] = self.client.images.get(image).id
                except docker.errors.ImageNotFound:
                    raise DockerError(
                        f"image {image} is not built; run 'kubesage build' first"
                    ) from None
            return self._ids[image]

    def run(self, launch: Launch, on_line: Callable[[str], None]) -> int:
        nodes = launch.distribution.nodes
        network = None
        names = [_container_name(launch, rank) for rank in range(nodes)]
        if nodes > 1:  # a private network, as the nodes of a training job have
            network = self.client.networks.create(names[0] + "-net", driver="bridge",
                                                  labels={"kubesage.run": launch.run_id})
        containers = []
        try:
            for rank in range(nodes):
                env = dict(launch.env)
                if launch.distribution.world_size > 1:
                    env.update(Layout(nodes, launch.distribution.procs_per_node, rank,
                                      names[0] if nodes > 1 else "127.0.0.1").env())
                containers.append(self._start(launch, names[rank], env, network))
            prefix = (lambda rank: f"node-{rank}: ") if nodes > 1 else (lambda rank: "")
            code, _ = follow_group(containers, lambda rank, line: on_line(prefix(rank) + line))
            return code
        finally:
            remove_group(containers, network)

    def _start(self, launch: Launch, name: str, env: dict[str, str], network: Any) -> Any:
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
        return self.client.containers.run(
            launch.image,
            ["local", launch.task_file],
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
        for container in self.client.containers.list(filters={"label": f"kubesage.run={run_id}"}):
            kill_quietly(container)

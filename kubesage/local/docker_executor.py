"""Run each step in its own container on a Docker engine (the docker SDK for Python)."""

from __future__ import annotations

import os
import re
import secrets
import threading
from collections.abc import Callable
from typing import Any

from kubesage.dsl.errors import KubesageError
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
            if nodes == 1:
                return self._follow(containers[0], on_line)
            codes: list[int] = [0] * nodes
            threads = [
                threading.Thread(target=self._follow_node, args=(c, rank, on_line, codes,
                                                                  containers))
                for rank, c in enumerate(containers)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return next((c for c in codes if c), 0)
        finally:
            for container in containers:
                try:
                    container.remove(force=True)
                except Exception:
                    pass
            if network is not None:
                network.remove()

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

    @staticmethod
    def _follow(container: Any, on_line: Callable[[str], None], prefix: str = "") -> int:
        pending = b""
        for chunk in container.logs(stream=True, follow=True):
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                on_line(prefix + line.decode(errors="replace"))
        if pending:
            on_line(prefix + pending.decode(errors="replace"))
        return int(container.wait()["StatusCode"])

    def _follow_node(self, container: Any, rank: int, on_line: Callable[[str], None],
                     codes: list[int], all_nodes: list[Any]) -> None:
        codes[rank] = self._follow(container, on_line, f"node-{rank}: ")
        if codes[rank]:  # one node failed: the job has failed, stop the others
            for other in all_nodes:
                if other is not container:
                    try:
                        other.kill()
                    except Exception:
                        pass

    def cancel(self, run_id: str) -> None:
        for container in self.client.containers.list(filters={"label": f"kubesage.run={run_id}"}):
            try:
                container.kill()
            except Exception:
                pass

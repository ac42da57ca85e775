"""Run each step in its own container on a Docker engine (the docker SDK for Python)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from kubesage.dsl.errors import KubesageError
from kubesage.local.executor import Launch

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


class DockerError(KubesageError):
    """The Docker engine is unreachable or an image is missing."""


def memory_bytes(text: str) -> int:
    """``"4Gi"`` -> 4294967296 (Kubernetes quantity suffixes)."""
    digits = text.rstrip("KMGTi")
    return int(float(digits) * _UNITS[text[len(digits):]])


class DockerExecutor:
    """One container per step attempt; data mounts read-only at their cloud paths."""

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
        self.containers_started = 0

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
        container = self.client.containers.run(
            launch.image,
            ["local", launch.task_file],
            detach=True,
            volumes=volumes,
            environment={"HOME": "/tmp", **launch.env},
            user=f"{os.getuid()}:{os.getgid()}",
            labels={"kubesage.run": launch.run_id, "kubesage.step": launch.step},
            shm_size="1g",
            **options,
        )
        with self._lock:
            self.containers_started += 1
        try:
            pending = b""
            for chunk in container.logs(stream=True, follow=True):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    on_line(line.decode(errors="replace"))
            if pending:
                on_line(pending.decode(errors="replace"))
            return int(container.wait()["StatusCode"])
        finally:
            try:
                container.remove(force=True)
            except Exception:
                pass

    def cancel(self, run_id: str) -> None:
        for container in self.client.containers.list(filters={"label": f"kubesage.run={run_id}"}):
            try:
                container.kill()
            except Exception:
                pass

"""Run each step in its own container on a Docker engine (the docker SDK for Python)."""

from __future__ import annotations

import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kubesage.docker_engine.containers import RUN_LABEL, follow_group, labels, remove_run
from kubesage.dsl.errors import KubesageError
from kubesage.runs.step_user import step_user
from kubesage.runtime.distributed import Layout
from kubesage.targets.local.executor import Launch
from kubesage.targets.local.warm_start import WarmPool

_UNITS = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


ENGINE_WAIT_S = 60  # how long the end of a run waits for an engine that restarts
WARM_START_LABEL = "io.kubesage.warm-start"  # images whose runtime has `local --await`


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

    A single-container step can be started warm (``prewarm``): its container starts while the
    upstream steps still run, imports the step's heavy modules and waits for the task file, so
    the step pays neither container start-up nor imports when its turn comes.
    """

    kind = "docker"

    def __init__(self, gpus: str = "auto") -> None:
        """``gpus``: the local config's GPU setting (``auto``, ``all`` or ``none``)."""
        import docker

        try:
            self.client = docker.from_env()
            self.client.ping()
        except Exception as e:  # the SDK raises several types for "no engine"
            raise DockerError(
                f"cannot reach a Docker engine ({e}); start Docker (dockerd) or use "
                "--runner subprocess"
            ) from None
        self.gpus = gpus
        self._engine_gpus: bool | None = None
        self._warm_capable: dict[str, bool] = {}
        self._lock = threading.Lock()
        self._warm = WarmPool(lambda launch, command: self._start(
            launch, _container_name(launch, 0), launch.env, None, command))

    def environment_id(self, image: str) -> str:
        """The ID ``image`` names now (never remembered: a tag may be rebuilt between runs)."""
        import docker.errors

        try:
            found = self.client.images.get(image)
        except docker.errors.ImageNotFound:
            raise DockerError(
                f"image {image} is not built; run 'kubesage build' first (or 'docker "
                f"pull {image}' for an image kubesage does not build)"
            ) from None
        image_labels = (found.attrs.get("Config") or {}).get("Labels") or {}
        with self._lock:
            self._warm_capable[found.id] = image_labels.get(WARM_START_LABEL) == "1"
        return str(found.id)

    def engine_has_gpus(self) -> bool:
        """Whether the engine can give containers NVIDIA GPUs: the ``nvidia`` runtime is
        registered (NVIDIA Container Toolkit), or the engine discovered ``nvidia.com/gpu`` CDI
        devices (Docker 28+)."""
        if self._engine_gpus is None:
            info = self.client.info()
            devices = info.get("DiscoveredDevices") or []
            self._engine_gpus = "nvidia" in (info.get("Runtimes") or {}) or any(
                str(d.get("ID", "")).startswith("nvidia.com/gpu") for d in devices)
        return self._engine_gpus

    def gpu_plan(self, wanting: Sequence[str], source: str) -> str | None:
        """What happens to the steps that want GPUs (``wanting``), as one line for the run's log;
        ``source`` is the local config file. Refuses ``gpus: all`` on an engine without GPUs."""
        if not wanting:
            return None
        names = ", ".join(wanting)
        if self.gpus == "none":
            return f"{names}: want GPUs; 'gpus: none' in {source}: they run on CPU"
        if self.engine_has_gpus():
            return f"{names}: want GPUs; requested from the Docker engine ('gpus: {self.gpus}')"
        if self.gpus == "all":
            raise DockerError(
                f"{names} want GPUs and 'gpus: all' in {source} requires them, but the Docker "
                "engine has none (no nvidia runtime); install the NVIDIA Container Toolkit, or "
                "set 'gpus: auto' to run them on CPU")
        return (f"{names}: want GPUs, but the Docker engine has none ('gpus: auto' in {source}): "
                "they run on CPU")

    def prewarm(self, launch: Launch, preload: Sequence[str]) -> bool:
        """Start ``launch``'s container in the background, importing ``preload``; returns at once.

        See ``kubesage.targets.local.warm_start``. False for a step that may not start warm: a
        distributed one, one already taken, or an image whose runtime predates warm starts
        (its ``io.kubesage.warm-start`` label is missing, as in an old image a re-run pins).
        """
        if not self._warm_capable.get(self.environment_id(launch.image)):
            return False
        return self._warm.start(launch, list(preload))

    def release(self, run_id: str, step: str | None = None) -> None:
        """Remove warm containers that will not be used: of ``step``, or of the whole run (then
        also wait until the run's finished containers are removed, and remove by label whatever
        of the run the engine still holds)."""
        self._warm.release(run_id, step)
        if step is None:
            self._remove_leftovers(run_id)

    def _remove_leftovers(self, run_id: str) -> None:
        """Remove the run's containers and networks; when the engine does not answer (it
        restarts), try again for up to ``ENGINE_WAIT_S``, then say what is left and how to
        remove it."""
        deadline = time.monotonic() + ENGINE_WAIT_S
        wanted = {"label": f"{RUN_LABEL}={run_id}"}
        while True:
            try:  # an engine that is shutting down lists containers it then fails to remove
                remove_run(self.client, run_id)
                if not self.client.containers.list(all=True, filters=wanted, sparse=True):
                    return
                problem = "its containers were still there"
            except Exception as e:  # the engine's connection errors come in several types
                problem = str(e)
            if time.monotonic() > deadline:
                print(f"! the Docker engine did not remove run {run_id}'s containers in "
                      f"{ENGINE_WAIT_S} s ({problem}); remove them with: docker rm -f $(docker "
                      f"ps -aq --filter label={RUN_LABEL}={run_id})", file=sys.stderr)
                return
            time.sleep(1.0)

    def run(self, launch: Launch, on_line: Callable[[str], None]) -> int:
        nodes = launch.distribution.nodes
        network = None
        names = [_container_name(launch, rank) for rank in range(nodes)]
        if nodes > 1:  # a private network, as the nodes of a training job have
            network = self.client.networks.create(names[0] + "-net", driver="bridge",
                                                  labels=labels(launch.run_id))
        containers = []
        warm = self._warm.take(launch) if launch.command_line is None else None
        if warm is not None:
            containers.append(warm)
        try:
            with self._warm.cold_start():
                for rank in range(len(containers), nodes):
                    env = dict(launch.env)
                    if launch.distribution.world_size > 1:
                        env.update(Layout(nodes, launch.distribution.procs_per_node, rank,
                                          names[0] if nodes > 1 else "127.0.0.1").env())
                    containers.append(self._start(launch, names[rank], env, network,
                                                  ["local", launch.task_file]))
            if launch.on_started is not None:
                try:
                    launch.on_started()
                except Exception:  # a hook never fails the step it watches
                    pass
            prefix = (lambda rank: f"node-{rank}: ") if nodes > 1 else (lambda rank: "")
            code, _ = follow_group(containers, lambda rank, line: on_line(prefix(rank) + line))
            return code
        finally:  # off the step's critical path; release() waits for it at the end of a run
            self._warm.remove_later(launch.run_id, containers, network)

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
        gpus = res.node_gpus(launch.distribution.procs_per_node)
        if gpus and self.gpus != "none" and (self.gpus == "all" or self.engine_has_gpus()):
            import docker.types

            options["device_requests"] = [
                docker.types.DeviceRequest(count=gpus, capabilities=[["gpu"]])
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
            user=step_user(),
            labels=labels(launch.run_id, launch.step),
            shm_size="1g",
            **options,
        )

    def cancel(self, run_id: str) -> None:
        """Stop the run now: no more warm starts; every container and network of the run
        (found by its label) is removed."""
        self._warm.cancel(run_id)
        remove_run(self.client, run_id)
        self._warm.release(run_id)

"""Run each step as a local process through the same entry point (no Docker needed)."""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence

from kubesage.dsl.errors import KubesageError
from kubesage.runtime.distributed import Layout
from kubesage.targets.local.executor import Launch


def code_hash(roots: list[str]) -> str:
    """sha256 of every .py file under ``roots``: the environment of a subprocess step."""
    digest = hashlib.sha256()
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__")))
            for fname in sorted(f for f in filenames if f.endswith(".py")):
                full = os.path.join(dirpath, fname)
                digest.update(os.fsencode(os.path.relpath(full, root)))
                with open(full, "rb") as f:
                    digest.update(f.read())
    return "code:" + digest.hexdigest()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _pump(proc: subprocess.Popen[bytes], prefix: str, on_line: Callable[[str], None]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        on_line(prefix + raw.decode(errors="replace").rstrip("\n"))


class ProcessExecutor:
    """``python -m kubesage.runtime local TASK`` as a child process of this one.

    Data mounts cannot be bind-mounted without containers, so the runner rewrites parameter
    values that point under a mount path onto the local folder instead.
    """

    kind = "subprocess"

    def __init__(self, project_root: str, gpus: str = "auto") -> None:
        """``gpus``: the local config's GPU setting; ``none`` hides this machine's GPUs from
        the steps (``CUDA_VISIBLE_DEVICES=""``), the others leave them visible."""
        import kubesage

        self.project_root = project_root
        self.gpus = gpus
        self.package_root = os.path.dirname(os.path.abspath(kubesage.__file__))
        self._procs: dict[str, list[subprocess.Popen[bytes]]] = {}
        self._lock = threading.Lock()

    def environment_id(self, image: str) -> str:
        """The hash of the code a step runs (kubesage and the project's components), read now:
        every image name runs the same code here."""
        return code_hash([self.package_root, os.path.join(self.project_root, "components")])

    # -- the run's environments (``kubesage.runs.launch.Images``) --------------------------
    def fresh(self, logical: set[str], say: Callable[[str], None]) -> dict[str, str]:
        """Steps run the working tree itself: always fresh; each image -> the code's hash."""
        current = self.environment_id("")
        return {name: current for name in sorted(logical)}

    def image_id(self, ref: str) -> str:
        return self.environment_id(ref)

    def pins(self, recorded: dict[str, str]) -> dict[str, str]:
        """Nothing to pin (steps run the working tree), so refuse when its code has changed."""
        current = self.environment_id("")
        if any(value != current for value in recorded.values()):
            raise KubesageError("the code has changed since it ran")
        return {}

    def run(self, launch: Launch, on_line: Callable[[str], None]) -> int:
        # No bytecode written for the project's modules: Python would trust a .pyc whose source
        # has the same size and modification second (a component edited within a second).
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONDONTWRITEBYTECODE="1", **launch.env)
        if self.gpus == "none":
            env["CUDA_VISIBLE_DEVICES"] = ""
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (self.project_root, env.get("PYTHONPATH", "")) if p
        )
        dist = launch.distribution
        port = _free_port()
        procs = []
        for rank in range(dist.nodes):
            node_env = dict(env)
            if dist.world_size > 1:  # every "node" is a process group on this machine
                node_env.update(Layout(dist.nodes, dist.procs_per_node, rank, "127.0.0.1", port).env())
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "kubesage.runtime", "local", launch.task_file],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=node_env,
                cwd=self.project_root, start_new_session=True,
            ))
        with self._lock:
            self._procs.setdefault(launch.run_id, []).extend(procs)
        prefixes = [f"node-{r}: " if dist.nodes > 1 else "" for r in range(dist.nodes)]
        readers = [threading.Thread(target=_pump, args=(p, prefix, on_line))
                   for p, prefix in zip(procs, prefixes, strict=True)]
        for t in readers:
            t.start()
        for t in readers:
            t.join()
        codes = [p.wait() for p in procs]
        with self._lock:
            for p in procs:
                self._procs[launch.run_id].remove(p)
        return next((c for c in codes if c), 0)

    def gpu_plan(self, wanting: Sequence[str], source: str) -> str | None:
        """As ``Executor.gpu_plan``: processes see this machine's GPUs (``/dev/nvidia0``)."""
        if not wanting:
            return None
        names = ", ".join(wanting)
        if self.gpus == "none":
            return f"{names}: want GPUs; 'gpus: none' in {source}: they run on CPU"
        if os.path.exists("/dev/nvidia0"):
            return f"{names}: want GPUs; they use this machine's GPUs ('gpus: {self.gpus}')"
        if self.gpus == "all":
            from kubesage.dsl.errors import KubesageError

            raise KubesageError(
                f"{names} want GPUs and 'gpus: all' in {source} requires them, but this machine "
                "has none (/dev/nvidia0); set 'gpus: auto' to run them on CPU")
        return (f"{names}: want GPUs, but this machine has none ('gpus: auto' in {source}): "
                "they run on CPU")

    def cancel(self, run_id: str) -> None:
        with self._lock:
            procs = list(self._procs.get(run_id, []))
        for proc in procs:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

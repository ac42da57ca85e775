"""Start the processes of a distributed step with torchrun, whatever the target.

Each target describes the layout its own way (Kubeflow Trainer: ``PET_*`` variables; SageMaker:
``resourceconfig.json``); the contracts turn it into a ``Layout`` and call ``launch``, which
re-runs the same entry point under ``torch.distributed.run`` on every node. Inside, torchrun sets
``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` and the component's code reads them (``context.world``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """``nnodes`` machines x ``nproc_per_node`` processes, this machine being ``node_rank``."""

    nnodes: int = 1
    nproc_per_node: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    def env(self) -> dict[str, str]:
        """The Kubeflow Trainer / torchrun form (``PET_*``), also used by the local runner."""
        return {"PET_NNODES": str(self.nnodes), "PET_NPROC_PER_NODE": str(self.nproc_per_node),
                "PET_NODE_RANK": str(self.node_rank), "PET_MASTER_ADDR": self.master_addr,
                "PET_MASTER_PORT": str(self.master_port)}

    @classmethod
    def from_env(cls) -> Layout:
        env = os.environ
        return cls(int(env.get("PET_NNODES", 1)), int(env.get("PET_NPROC_PER_NODE", 1)),
                   int(env.get("PET_NODE_RANK", 0)), env.get("PET_MASTER_ADDR", "127.0.0.1"),
                   int(env.get("PET_MASTER_PORT", 29500)))


def inside_worker() -> bool:
    """True in a process that torchrun started."""
    return "LOCAL_RANK" in os.environ


def leave_worker() -> None:
    """End a torchrun worker whose work is done, without interpreter teardown: gloo's threads,
    torn down at exit, aborted a finished rank now and then ("terminate called without an
    active exception"), failing a step that had succeeded."""
    if inside_worker():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def launch(layout: Layout, module_args: list[str]) -> int:
    """Run ``python -m <module_args>`` as ``layout.nproc_per_node`` torchrun workers here."""
    cmd = [sys.executable, "-m", "torch.distributed.run",
           f"--nnodes={layout.nnodes}", f"--nproc-per-node={layout.nproc_per_node}",
           f"--node-rank={layout.node_rank}", f"--master-addr={layout.master_addr}",
           f"--master-port={layout.master_port}", "-m", *module_args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PET_")}
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.call(cmd, env=env)

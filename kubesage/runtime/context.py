"""What a running component may ask of its target: where to checkpoint, which rank it is.

Every contract sets the same environment variables, so component code never asks which target
it runs on:

- ``KUBESAGE_CHECKPOINT_DIR``: a folder that survives a failed attempt of this step (locally a
  folder of the run store; ``/opt/ml/checkpoints`` on SageMaker; a volume on Kubeflow);
- ``KUBESAGE_RUN_ID``, ``KUBESAGE_STEP``: where the step belongs, for lineage;
- ``MLFLOW_TRACKING_URI``: the experiment tracker and model registry of the target config;
- ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``: set by torchrun for
  each process of a distributed step (see ``kubesage.runtime.distributed``).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

CHECKPOINT_ENV = "KUBESAGE_CHECKPOINT_DIR"
RUN_ID_ENV = "KUBESAGE_RUN_ID"  # the kubesage run this step belongs to (lineage)
STEP_ENV = "KUBESAGE_STEP"
MLFLOW_ARTIFACTS_ENV = "KUBESAGE_MLFLOW_ARTIFACTS"  # artifact root for a local MLflow store


def checkpoint_dir() -> str:
    """The step's checkpoint folder (created); a temporary one when no target provides it."""
    path = os.environ.get(CHECKPOINT_ENV) or os.path.join(tempfile.gettempdir(), "kubesage-ckpt")
    os.makedirs(path, exist_ok=True)
    return path


@dataclass(frozen=True)
class World:
    """This process's place in a data-parallel step."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def world() -> World:
    """Rank, world size and local rank from torchrun's environment (a single process if unset)."""
    env = os.environ
    return World(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


@contextlib.contextmanager
def mlflow_store_lock(uri: str) -> Iterator[None]:
    """Serialize writers of a local SQLite MLflow store: parallel steps (and the run's own
    experiment logging) would race creating its tables. A tracking server needs no lock."""
    if not uri.startswith("sqlite:///"):
        yield
        return
    import fcntl

    db = uri.removeprefix("sqlite:///")
    os.makedirs(os.path.dirname(db), exist_ok=True)
    with open(db + ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.getuid() == 0 and os.path.exists(db):  # a root host shares it with its steps:
                os.chmod(db, os.stat(db).st_mode | 0o020)  # SQLite makes 0644 whatever the umask
            fcntl.flock(lock, fcntl.LOCK_UN)


BATCH_PHASE_ENV = "KUBESAGE_BATCH_PHASE"  # "requests" or "collect", around a batch transform
BATCH_REQUESTS_ENV = "KUBESAGE_BATCH_REQUESTS"  # collect: the requests step's output folder
BATCH_RESULTS_ENV = "KUBESAGE_BATCH_RESULTS"  # collect: the transform job's output folder
REQUESTS_FILE = "requests.jsonl"  # what a requests phase writes; the transform job reads it


@dataclass(frozen=True)
class BatchPhase:
    """Which half of a batch-inference component runs, where a target runs the inference itself
    as a batch transform job with the serving image (``Serving``): ``requests`` writes the
    images as ``requests.jsonl`` lines (``{"b64": PNG, ...}``) into the component's first output;
    ``collect`` makes the component's outputs from the job's answers (``results``) and what
    the requests half wrote (``requests``). None: the component runs whole, as written."""

    name: str
    requests: str = ""
    results: str = ""


def batch_phase() -> BatchPhase | None:
    """The batch phase this step runs (see ``BatchPhase``), or None."""
    name = os.environ.get(BATCH_PHASE_ENV, "")
    if not name:
        return None
    if name not in ("requests", "collect"):
        raise ValueError(f"{BATCH_PHASE_ENV}={name!r}: expected 'requests' or 'collect'")
    return BatchPhase(name, os.environ.get(BATCH_REQUESTS_ENV, ""),
                      os.environ.get(BATCH_RESULTS_ENV, ""))

"""The run record: one schema for every runner and target.

A run record says what ran (pipeline hash, parameters, images), what came of it (step states,
artifacts with sha256, metrics) and when (timeline). ``kubesage runs show`` prints it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

SCHEMA = "kubesage.run/v1"

# A run is running, then succeeded, failed or cancelled (SIGINT, SIGTERM, SIGHUP); one whose
# process died without a word (SIGKILL, power loss) is found later and marked abandoned.
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled", "abandoned")
# A step is pending, running, then one of TERMINAL.
TERMINAL = ("succeeded", "failed", "skipped", "not_run", "cancelled", "abandoned")


@dataclass
class StepRecord:
    """One step instance (one per item inside a ParallelFor)."""

    name: str
    task: str
    component: str
    version: str
    image: str
    status: str = "pending"
    cached: bool = False
    attempts: int = 0
    environment_id: str = ""  # image ID (docker) or code hash (subprocess)
    cache_key: str = ""
    started: float | None = None
    ended: float | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    returns: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    series: dict[str, list[list[float]]] = field(default_factory=dict)  # name -> [[step, value]]
    log: str = ""
    log_uri: str = ""  # the log in the team's artifact store, when it is shared
    error: str = ""
    # the job (SageMaker) or task (Kubeflow) the step ran in when it shared one with other steps
    # (kubesage.plan.fusion); "" when it ran in its own
    job: str = ""
    # the graph, as planned: the steps this one waits for, and the groups (loops, conditions)
    # its task sits in, outermost first (``RunRecord.groups`` says what each is)
    deps: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    cached_from: str = ""  # a cache hit: the run whose result it reused
    # a step a service ran: what the service calls it (a SageMaker job, a Kubeflow pod)
    remote: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float | None:
        if self.started is None or self.ended is None:
            return None
        return round(self.ended - self.started, 3)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["duration_s"] = self.duration_s
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StepRecord:
        d = {k: v for k, v in d.items() if k != "duration_s"}
        return cls(**d)


@dataclass
class RunRecord:
    """Everything known about one run."""

    run_id: str
    pipeline: str
    pipeline_file: str
    pipeline_hash: str
    runner: str
    target: str = "local"
    status: str = "running"
    parameters: dict[str, Any] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)  # mount name -> fingerprint
    started: float = 0.0
    ended: float | None = None
    steps: list[StepRecord] = field(default_factory=list)
    # lineage
    source_sha256: str = ""  # the pipeline file's content
    compiled_sha256: str = ""  # the compiled artifact, for runs of a compiled target
    git: dict[str, Any] = field(default_factory=dict)  # {"commit", "dirty"} of the project
    images: dict[str, str] = field(default_factory=dict)  # logical image -> image ID / code hash
    code: dict[str, str] = field(default_factory=dict)  # logical image -> hash of the code in it
    tags: dict[str, str] = field(default_factory=dict)
    rerun_of: str = ""
    config: str = ""  # the target config file the run used (a re-run uses it again)
    # input artifacts given from outside: name -> {path, sha256, metadata, from}
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    owner: dict[str, Any] = field(default_factory=dict)  # the process running it: host, pid, start
    # a run a service executes (``kubesage submit``): its identifiers there (the SageMaker
    # execution ARN, the Kubeflow run ID), where to reach it, and the compiled file kept
    remote: dict[str, Any] = field(default_factory=dict)
    # who made the run and from where: the user and host, and the checkout (project folder)
    user: str = ""
    host: str = ""
    checkout: str = ""
    # the loops and conditions of the graph, as the user wrote them: group ID -> {"kind":
    # "loop"|"condition", "written": source-like text, "items": a loop's items}
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def metrics(self) -> dict[str, dict[str, float]]:
        return {s.name: s.metrics for s in self.steps if s.metrics}

    def step(self, name: str) -> StepRecord:
        for s in self.steps:
            if s.name == name:
                return s
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "pipeline_file": self.pipeline_file,
            "pipeline_hash": self.pipeline_hash,
            "runner": self.runner,
            "target": self.target,
            "status": self.status,
            "parameters": self.parameters,
            "data": self.data,
            "started": self.started,
            "ended": self.ended,
            "duration_s": None if self.ended is None else round(self.ended - self.started, 3),
            "metrics": self.metrics,
            "source_sha256": self.source_sha256,
            "compiled_sha256": self.compiled_sha256,
            "git": self.git,
            "images": self.images,
            "code": self.code,
            "tags": self.tags,
            "rerun_of": self.rerun_of,
            "config": self.config,
            "inputs": self.inputs,
            "owner": self.owner,
            "remote": self.remote,
            "user": self.user,
            "host": self.host,
            "checkout": self.checkout,
            "groups": self.groups,
            "steps": [s.to_dict() for s in self.steps],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        keys = ("run_id", "pipeline", "pipeline_file", "pipeline_hash", "runner", "target",
                "status", "parameters", "data", "started", "ended")
        optional = ("source_sha256", "compiled_sha256", "git", "images", "code", "tags", "rerun_of",
                    "config", "inputs", "owner", "remote", "user", "host", "checkout", "groups")
        record = cls(**{k: d[k] for k in keys}, **{k: d[k] for k in optional if k in d})
        record.steps = [StepRecord.from_dict(s) for s in d["steps"]]
        return record

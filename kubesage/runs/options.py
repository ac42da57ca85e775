"""The options of one command: a run on this machine, a submission, a deploy.

Each is a frozen value built once by the command line (or a caller) and passed down unchanged;
``RunOptions.given`` names what was asked for, so a target can refuse what it cannot honour.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from typing import Any, ClassVar, TextIO


@dataclass(frozen=True)
class RunOptions:
    """How to run a pipeline on this machine. Fields left at their defaults ask for nothing."""

    params: dict[str, Any] = field(default_factory=dict)  # values or command-line strings
    config: str | None = None  # the target config file (default: config/<target>.yaml)
    pipeline_file: str = ""  # where the pipeline came from (lineage, re-runs)
    runner: str | None = None  # how steps execute (local: docker | subprocess)
    tags: dict[str, str] = field(default_factory=dict)
    use_cache: bool = True
    images: dict[str, str] = field(default_factory=dict)  # logical image -> pinned image ID
    rerun_of: str = ""
    resume_from: str = ""  # a failed run whose succeeded steps' recorded outputs are reused
    # A pipeline's input artifacts (a component run on its own): name -> folder or
    # RUN_ID:step/output
    inputs: dict[str, str] = field(default_factory=dict)
    log: TextIO | None = None  # progress lines (default: stderr)

    # CLI names of the options a target may not support (the rest every target honours)
    FLAGS: ClassVar[dict[str, str]] = {"runner": "--runner", "tags": "--tag",
                                       "use_cache": "--no-cache", "images": "pinned images",
                                       "rerun_of": "rerun", "resume_from": "rerun --from-failed",
                                       "inputs": "--input"}

    def given(self) -> list[str]:
        """Names of the optional fields set to something other than their default."""
        defaults = RunOptions()
        return [name for name in self.FLAGS if getattr(self, name) != getattr(defaults, name)]

    def out(self) -> TextIO:
        return self.log or sys.stderr

    def replace(self, **changes: Any) -> RunOptions:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class SubmitOptions:
    """How to hand a pipeline (``.py``) or a compiled file to the target's service."""

    params: dict[str, Any] = field(default_factory=dict)
    config: str | None = None
    wait: bool = False  # stream states until the runs end
    clients: list[str] | None = None  # one run (execution) per client
    tags: dict[str, str] = field(default_factory=dict)  # recorded with each run started
    rerun_of: str = ""  # the recorded run this submission repeats
    log: TextIO | None = None

    def out(self) -> TextIO:
        return self.log or sys.stderr


@dataclass(frozen=True)
class DeployOptions:
    """How to serve trained models behind an endpoint of the target's service."""

    name: str  # the endpoint (SageMaker) or InferenceService (Kubeflow) name
    config: str | None = None
    output: str | None = None  # a manifest to write (Kubeflow)
    apply: bool = False  # hand the manifest to the cluster (Kubeflow)
    per_client: bool = False  # one model per client, even for one (a multi-model endpoint)
    replace: bool = False  # serve only these models: drop the endpoint's other clients

"""The ``Target`` interface, the options of a run and of a submission, and the target registry.

A target is one package under ``kubesage/targets/`` (or anywhere, for a plug-in) whose module
exposes ``TARGET``, an instance of a ``Target`` subclass, plus one line in ``BUILT_IN`` (or an
entry point in the ``kubesage.targets`` group). The CLI knows targets only through this module.

Every operation a target does not support raises ``Unsupported`` naming the target and the
operation; every run option it cannot honour is refused by name (``Target.check``), never
silently dropped.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from kubesage.dsl.errors import KubesageError

if TYPE_CHECKING:
    from kubesage.config.local import LocalConfig
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.record import RunRecord
    from kubesage.runs.store import RunStore
    from kubesage.runs.submitted import ServiceState


class Unsupported(KubesageError):
    """A target refuses an operation, an option or a feature it cannot honour (exit code 3)."""


class UnknownTarget(KubesageError):
    """No target of that name is registered."""


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


class Target:
    """One place pipelines run. Subclasses override what they support."""

    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()  # compiled files this target validates and submits
    description: ClassVar[str] = ""
    contracts: ClassVar[tuple[str, ...]] = ()  # in-container runtime contracts its steps use
    runners: ClassVar[tuple[str, ...]] = ()  # values of RunOptions.runner it accepts
    honours: ClassVar[frozenset[str]] = frozenset()  # optional RunOptions fields it honours

    def load_config(self, path: str | None = None) -> Any:
        """The target config (``path``, else ``config/<name>.yaml``), checked."""
        raise Unsupported(f"target '{self.name}' has no config file")

    def local_config(self, config_path: str | None = None) -> LocalConfig:
        """The local config whose store, data mounts and trackers this target's local runs use."""
        from kubesage.config.local import load_local_config

        return load_local_config()

    def compile(self, pipeline: Pipeline, output: str, config_path: str | None = None,
                source: str = "") -> None:
        """Write the compiled artifact to ``output`` (atomically). ``source`` (the pipeline
        file) names the project whose images hold the code compiled (default: this folder's)."""
        raise Unsupported(f"target '{self.name}' has nothing to compile; "
                          f"{self._others('compile')}")

    def registry_refs(self, refs: dict[str, str], config_path: str | None = None) -> dict[str, str]:
        """Where the project's images go for this target: ``refs`` maps a logical image to its
        local content tag (``kubesage/torch:code-<hash>``); the registry reference of each."""
        raise Unsupported(f"target '{self.name}' pulls no images from a registry")

    def validate(self, path: str, config_path: str | None = None) -> str:
        """Check a compiled file strictly; a one-line summary, or a ``KubesageError``.
        ``config_path``: the target config it would run under (a SageMaker region, ...)."""
        raise Unsupported(f"target '{self.name}' has no compiled files to validate")

    def check(self, pipeline: Pipeline, options: RunOptions) -> None:
        """Refuse, by name, every option this target cannot honour and every feature of
        ``pipeline`` it cannot run the way the other paths do."""
        if pipeline.artifacts and "inputs" not in self.honours:
            raise Unsupported(
                f"'{pipeline.name}' takes input artifacts from outside (a component run on its "
                f"own), which target '{self.name}' cannot give it; run it with --target local, "
                "or call the component in a pipeline")
        if options.runner is not None and options.runner not in self.runners:
            raise Unsupported(
                f"target '{self.name}' runs steps with {' or '.join(self.runners) or 'its own runner'}"
                f", not '{options.runner}'; drop --runner {options.runner}"
                + (" or use --target local" if self.name != "local" else ""))
        for name in options.given():
            if name != "runner" and name not in self.honours:
                raise Unsupported(f"target '{self.name}' cannot honour {RunOptions.FLAGS[name]}; "
                                  "drop it or use another target")

    def run(self, pipeline: Pipeline, options: RunOptions) -> RunRecord:
        """Execute ``pipeline`` on this machine, recorded in the local run store."""
        raise Unsupported(f"target '{self.name}' cannot run pipelines on this machine; "
                          f"{self._others('run')}")

    def submit(self, ref: str, options: SubmitOptions) -> dict[str, Any]:
        """Submit a pipeline file (compiled on the fly) or a compiled file to the service."""
        raise Unsupported(f"target '{self.name}' has no service to submit to; "
                          f"{self._others('submit')}")

    def poll_s(self, config_path: str | None = None) -> float:
        """Seconds between two reads of a submitted run being watched."""
        return 15.0

    def read(self, record: RunRecord) -> ServiceState:
        """A submitted run's state, read from the service (``runs refresh``, ``submit --wait``)."""
        raise Unsupported(f"target '{self.name}' has no service to read runs from; its runs are "
                          "recorded as they run")

    def resume(self, record: RunRecord, store: RunStore, log: TextIO | None = None) -> RunRecord:
        """Continue the failed submitted run ``record`` on its service: only the steps that did
        not succeed run again, and what depends on them. The new run's record."""
        raise Unsupported(f"target '{self.name}' cannot continue a run on a service; "
                          "'kubesage rerun --from-failed' continues local runs here")

    def deploy(self, models: dict[str, str], options: DeployOptions) -> dict[str, Any]:
        """Serve ``models`` (name -> model reference; several: one per client) in the serving
        image behind an endpoint of this target's service; what was created."""
        raise Unsupported(f"target '{self.name}' has no service to deploy to; "
                          f"{self._others('deploy')}")

    def _others(self, what: str) -> str:
        return "use --target " + " or --target ".join(n for n in names() if n != self.name
                                                        and _supports(n, what))


def _supports(name: str, what: str) -> bool:
    method = {"compile": "compile", "run": "run", "submit": "submit", "deploy": "deploy"}[what]
    target = get(name)
    return getattr(type(target), method) is not getattr(Target, method)


# name -> "module:attribute" of the target object; imported only when used
BUILT_IN: dict[str, str] = {
    "local": "kubesage.targets.local:TARGET",
    "kfp": "kubesage.targets.kfp:TARGET",
    "sagemaker": "kubesage.targets.sagemaker:TARGET",
}
_registry: dict[str, str] = dict(BUILT_IN)
_loaded: dict[str, Target] = {}


def register(name: str, where: str | Target) -> None:
    """Make target ``name`` known: ``"package.module:ATTRIBUTE"`` or a ``Target`` object."""
    if isinstance(where, Target):
        _loaded[name] = where
        _registry[name] = f"{type(where).__module__}:{type(where).__qualname__}"
    else:
        _loaded.pop(name, None)
        _registry[name] = where


def unregister(name: str) -> None:
    _registry.pop(name, None)
    _loaded.pop(name, None)


def _plugins() -> None:
    """Targets other packages declare as ``kubesage.targets`` entry points."""
    from importlib.metadata import entry_points

    for ep in entry_points(group="kubesage.targets"):
        _registry.setdefault(ep.name, ep.value)


def names() -> list[str]:
    """Every registered target, built-in ones first."""
    return list(_registry)


def get(name: str) -> Target:
    """The target object of ``name``."""
    if name not in _registry:
        _plugins()
    if name not in _registry:
        raise UnknownTarget(f"unknown target '{name}'; use one of: {', '.join(names())}")
    if name not in _loaded:
        module, _, attribute = _registry[name].partition(":")
        target = getattr(importlib.import_module(module), attribute or "TARGET")
        if not isinstance(target, Target):
            raise UnknownTarget(f"target '{name}' ({_registry[name]}) is not a kubesage Target")
        _loaded[name] = target
    return _loaded[name]


def for_file(path: str) -> Target:
    """The target whose compiled files end like ``path`` (``.yaml``: kfp, ``.json``: sagemaker)."""
    lowered = path.lower()
    matches = [(len(s), name) for name in names() for s in get(name).suffixes if lowered.endswith(s)]
    if not matches:
        kinds = "; ".join(f"{', '.join(get(n).suffixes)} ({n}: {get(n).description})"
                          for n in names() if get(n).suffixes)
        raise KubesageError(f"{path}: expected a pipeline (.py) or a compiled file: {kinds}")
    return get(max(matches)[1])

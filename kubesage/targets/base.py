"""The ``Target`` interface and the target registry.

A target is one package under ``kubesage/targets/`` (or anywhere, for a plug-in) whose module
exposes ``TARGET``, an instance of a ``Target`` subclass, plus one line in ``BUILT_IN`` (or an
entry point in the ``kubesage.targets`` group). The CLI knows targets only through this module.

A target says only what differs between places: how a run's steps (or its compiled file)
execute here (``prepare``), what it refuses (``check``), how it compiles, validates, submits,
reads and deploys. Everything else a run is made of is decided once, for every target, by the
run path (``kubesage.runs.launch``). Every operation a target does not support raises
``Unsupported`` naming the target and the operation; every run option it cannot honour is refused
by name (``Target.check``), never silently dropped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, TextIO

from kubesage.dsl.errors import KubesageError
from kubesage.runs.options import DeployOptions, RunOptions, SubmitOptions
from kubesage.runs.workspace import Workspace

if TYPE_CHECKING:
    from kubesage.config.local import LocalConfig
    from kubesage.dsl.interface import ComponentSpec
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.launch import Execution, Images, RunSetup
    from kubesage.runs.logs import LogPage
    from kubesage.runs.record import RunRecord, StepRecord
    from kubesage.runs.submitted import ServiceState
    from kubesage.store import RunStore

__all__ = ["DeployOptions", "RunOptions", "SubmitOptions", "Target", "Unsupported", "Workspace"]


class Unsupported(KubesageError):
    """A target refuses an operation, an option or a feature it cannot honour (exit code 3)."""


class UnknownTarget(KubesageError):
    """No target of that name is registered."""


class Target:
    """One place pipelines run. Subclasses override what they support."""

    name: ClassVar[str] = ""
    suffixes: ClassVar[tuple[str, ...]] = ()  # compiled files this target validates and submits
    description: ClassVar[str] = ""
    contracts: ClassVar[tuple[str, ...]] = ()  # in-container runtime contracts its steps use
    runners: ClassVar[tuple[str, ...]] = ()  # values of RunOptions.runner it accepts
    honours: ClassVar[frozenset[str]] = frozenset()  # optional RunOptions fields it honours
    # where a data mount missing from the local config is added (error messages)
    local_config_hint: ClassVar[str] = "the local config"

    def load_config(self, path: str | None = None) -> Any:
        """The target config (``path``, else ``config/<name>.yaml``), checked. A target without
        a config of its own reads the local config (``config/local.yaml``)."""
        from kubesage.config.local import load_local_config

        return load_local_config(path)

    def local_config_of(self, config: Any) -> LocalConfig:
        """The local config (store, data mounts, image tags, trackers) that ``config`` names."""
        return config  # type: ignore[no-any-return]

    def local_config(self, config_path: str | None = None) -> LocalConfig:
        """The local config whose store, data mounts and trackers this target's local runs use."""
        return self.local_config_of(self.load_config(config_path))

    def workspace(self, config_path: str | None = None,
                  say: Callable[[str], None] | None = None) -> Workspace:
        """What a command on this target works in: its config read once, the local config it
        names, and the run store opened once (abandoned runs swept, their leftovers removed by
        the target that started them)."""
        config = self.load_config(config_path)
        return Workspace.open(config, self.local_config_of(config), config_path,
                              clean_up=clean_up, say=say)

    def compile(self, pipeline: Pipeline, output: str, config_path: str | None = None,
                source: str = "") -> None:
        """Write the compiled artifact to ``output`` (atomically). ``source`` (the pipeline
        file) names the project whose images hold the code compiled (default: this folder's)."""
        raise Unsupported(f"target '{self.name}' has nothing to compile; "
                          f"{self._others('compile')}")

    def explain(self, pipeline: Pipeline, config_path: str | None = None) -> str:
        """``compile --explain``: which steps share a job on this target, and why."""
        return (f"fusion on {self.name}: none; every step runs as it is (fusion shares jobs on "
                "the cloud targets, kfp and sagemaker)\n")

    def registry_refs(self, refs: dict[str, str], config_path: str | None = None) -> dict[str, str]:
        """Where the project's images go for this target: ``refs`` maps a logical image to its
        local content tag (``kubesage/torch:code-<hash>``); the registry reference of each."""
        raise Unsupported(f"target '{self.name}' pulls no images from a registry")

    def export_component(self, spec: ComponentSpec, output: str,
                         config_path: str | None = None) -> str:
        """Write one component in this target's own component format to ``output``."""
        raise Unsupported(f"target '{self.name}' has no component file format; use --target kfp")

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

    def run(self, pipeline: Pipeline, options: RunOptions,
            workspace: Workspace | None = None) -> RunRecord:
        """Execute ``pipeline`` on this machine through the one run path, recorded in the
        workspace's run store (default: this target's, for ``options.config``)."""
        from kubesage.runs.launch import run_pipeline

        return run_pipeline(workspace or self.workspace(options.config), self, pipeline, options)

    def logical_images(self, pipeline: Pipeline, config: Any) -> set[str]:
        """The logical images a run of ``pipeline`` executes (its components')."""
        return {t.spec.image for t in pipeline.tasks}

    def images(self, setup: RunSetup) -> Images:
        """Where the run's images come from: the project's images on the Docker engine, rebuilt
        when they hold other code than the working tree."""
        from kubesage.docker_engine.images import EngineImages

        return EngineImages(setup.root, setup.local.image_tag)

    def prepare(self, setup: RunSetup) -> Execution:
        """Everything that differs on this target before its steps run (compile, an executor);
        the execution the run path drives."""
        raise Unsupported(f"target '{self.name}' cannot run pipelines on this machine; "
                          f"{self._others('run')}")

    def clean_up(self, run_id: str) -> int:
        """Remove what an abandoned run of this target left here (its containers and networks
        on the local Docker engine, found by the run's label); how many containers."""
        from kubesage.docker_engine.containers import remove_leftovers

        return remove_leftovers(run_id)

    def pins(self, record: RunRecord, pipeline_file: str) -> dict[str, str]:
        """What an exact re-run of ``record`` pins: logical image -> the image ID it ran, each
        checked to exist still (a ``KubesageError`` naming what is gone)."""
        from kubesage.docker_engine.images import EngineImages
        from kubesage.project.loader import project_root

        return EngineImages(project_root(pipeline_file), "latest").pins(record.images)

    def registry_digests(self, refs: Iterable[str]) -> dict[str, str]:
        """Each image reference's digest in its registry now, refused when one is not there."""
        from kubesage.docker_engine.images import check_pushed

        return check_pushed(refs)

    def submit(self, ref: str, options: SubmitOptions,
               workspace: Workspace | None = None) -> dict[str, Any]:
        """Submit a pipeline file (compiled on the fly) or a compiled file to the service; each
        run started is recorded in the workspace's store (default: this target's)."""
        raise Unsupported(f"target '{self.name}' has no service to submit to; "
                          f"{self._others('submit')}")

    def poll_s(self, config: Any) -> float:
        """Seconds between two reads of a submitted run being watched (``config``: the
        target's config)."""
        return 15.0

    def read(self, record: RunRecord) -> ServiceState:
        """A submitted run's state, read from the service (``runs refresh``, ``submit --wait``)."""
        raise Unsupported(f"target '{self.name}' has no service to read runs from; its runs are "
                          "recorded as they run")

    def logs(self, record: RunRecord, step: StepRecord, workspace: Workspace,
             cursor: str = "") -> LogPage:
        """The step's log after ``cursor`` (``""``: from the start), and where to read on. By
        default the log kubesage wrote: the file on this machine, else its copy in the team's
        artifact store; a service's target reads its own (CloudWatch, pod logs)."""
        from kubesage.runs.logs import local_log

        return local_log(step, workspace, cursor)

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
    method = {"compile": "compile", "run": "prepare", "submit": "submit", "deploy": "deploy"}[what]
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


def clean_up(record: RunRecord) -> int:
    """Have the target that ran ``record`` remove its leftovers (an abandoned run's)."""
    try:
        target = get(record.target)
    except UnknownTarget:
        return 0
    return target.clean_up(record.run_id)


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

"""The component interface: one JSON-serialisable document read by every part of kubesage.

The decorator (``component.py``) builds it from a typed function; the local runner, the
compilers, the runtime inside containers and the component catalog all read the same document.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.container import ContainerSpec

NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class ParameterSpec:
    """A typed parameter (``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``)."""

    name: str
    type: str
    default: Any = NO_DEFAULT

    @property
    def required(self) -> bool:
        return self.default is NO_DEFAULT

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if not self.required:
            out["default"] = self.default
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ParameterSpec:
        return cls(d["name"], d["type"], d.get("default", NO_DEFAULT))


@dataclass(frozen=True)
class ArtifactSpec:
    """An input or output artifact (``Dataset``, ``Model``, ``Metrics``, ``Artifact``)."""

    name: str
    type: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type}


@dataclass(frozen=True)
class Resources:
    """What a step needs: CPUs and memory (``"4Gi"``) per process group (a pod, a container, a
    node of a distributed step), and ``gpus`` per process: a node running ``procs_per_node``
    processes wants ``gpus * procs_per_node`` (``node_gpus``). Every target maps that one want:
    Kubeflow requests ``nvidia.com/gpu``, SageMaker refuses an instance type with fewer GPUs,
    local runs follow the local config's ``gpus`` setting."""

    cpu: float | None = None
    memory: str | None = None
    gpus: int = 0

    def __post_init__(self) -> None:
        if self.gpus < 0:
            raise ValueError(f"Resources(gpus={self.gpus}): GPUs per process must be >= 0")

    def node_gpus(self, procs_per_node: int) -> int:
        """The GPUs one node wants when it runs ``procs_per_node`` processes."""
        return self.gpus * procs_per_node

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Distribution:
    """Data-parallel layout of a training step: ``nodes`` machines x ``procs_per_node``."""

    nodes: int = 1
    procs_per_node: int = 1

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.procs_per_node < 1:
            raise ValueError(
                f"Distribution(nodes={self.nodes}, procs_per_node={self.procs_per_node}): "
                "both must be >= 1"
            )

    @property
    def world_size(self) -> int:
        return self.nodes * self.procs_per_node

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Serving:
    """How a batch-inference component's model is served: ``handler`` (``module:function``)
    loads a model folder into the serving image's handler (``kubesage.serving``), which answers
    for the same images what the component writes. Where a target has a native batch-inference
    job (SageMaker's batch transform), the component compiles to a model in ``image`` plus that
    job; elsewhere it runs as written."""

    handler: str
    image: str = "kubesage/serve"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ComponentSpec:
    """Everything a target needs to know about a component, without its code."""

    name: str
    version: str
    entry: str  # "module:function", imported by the runtime inside the image
    image: str  # logical image name; target configs map it to a registry and tag
    description: str = ""
    parameters: tuple[ParameterSpec, ...] = ()
    inputs: tuple[ArtifactSpec, ...] = ()
    outputs: tuple[ArtifactSpec, ...] = ()
    returns: tuple[ParameterSpec, ...] = ()  # output parameters (a scalar or NamedTuple return)
    resources: Resources = field(default_factory=Resources)
    distribution: Distribution = field(default_factory=Distribution)
    mounts: tuple[tuple[str, str], ...] = ()  # (mount name, path inside the container)
    retries: int = 0
    cache: bool = True
    # Modules the step imports (torch, ...): a warm container imports them ahead of its task.
    # A start-up hint of the Python component, not interface: not in the document (digests).
    preload: tuple[str, ...] = ()
    # Set for a container component (imported Kubeflow YAML): runs this, not ``entry``.
    container: ContainerSpec | None = None
    serving: Serving | None = None  # batch inference whose model the serving image answers
    fuse: bool = True  # False: a cloud target never runs it in one job with other steps

    def parameter(self, name: str) -> ParameterSpec | None:
        return next((p for p in self.parameters if p.name == name), None)

    def input(self, name: str) -> ArtifactSpec | None:
        return next((a for a in self.inputs if a.name == name), None)

    def output(self, name: str) -> ArtifactSpec | ParameterSpec | None:
        found = next((a for a in self.outputs if a.name == name), None)
        return found or next((r for r in self.returns if r.name == name), None)

    @property
    def input_names(self) -> list[str]:
        return [p.name for p in self.parameters] + [a.name for a in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [a.name for a in self.outputs] + [r.name for r in self.returns]

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "entry": self.entry,
            "image": self.image,
            "parameters": [p.to_dict() for p in self.parameters],
            "inputs": [a.to_dict() for a in self.inputs],
            "outputs": [a.to_dict() for a in self.outputs],
            "returns": [r.to_dict() for r in self.returns],
            "resources": self.resources.to_dict(),
            "distribution": self.distribution.to_dict(),
            "mounts": dict(self.mounts),
            "retries": self.retries,
            "cache": self.cache,
        }
        if self.container is not None:
            doc["container"] = self.container.to_dict()
        if self.serving is not None:
            doc["serving"] = self.serving.to_dict()
        if not self.fuse:  # only when set: the documents (and digests) of others stay as they were
            doc["fuse"] = False
        return doc

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ComponentSpec:
        return cls(
            name=d["name"],
            version=d["version"],
            entry=d["entry"],
            image=d["image"],
            description=d.get("description", ""),
            parameters=tuple(ParameterSpec.from_dict(p) for p in d.get("parameters", [])),
            inputs=tuple(ArtifactSpec(**a) for a in d.get("inputs", [])),
            outputs=tuple(ArtifactSpec(**a) for a in d.get("outputs", [])),
            returns=tuple(ParameterSpec.from_dict(r) for r in d.get("returns", [])),
            resources=Resources(**d.get("resources", {})),
            distribution=Distribution(**d.get("distribution", {})),
            mounts=tuple(sorted(d.get("mounts", {}).items())),
            retries=d.get("retries", 0),
            cache=d.get("cache", True),
            container=ContainerSpec.from_dict(d["container"]) if d.get("container") else None,
            serving=Serving(**d["serving"]) if d.get("serving") else None,
            fuse=d.get("fuse", True),
        )

    def digest(self) -> str:
        """sha256 of the canonical interface document."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

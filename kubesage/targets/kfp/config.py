"""The Kubeflow target config (``config/kfp.yaml``): everything about the cluster, nothing about ML.

Registry and tag, namespace, service account, the PersistentVolumeClaim behind each data mount,
spot scheduling, ``/dev/shm``, the checkpoint volume, Trainer settings and where the API lives.
Pipeline code never names any of these. Every key is checked; an error names the key and the fix.
No kfp import here: reading a config must stay cheap.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass, field
from typing import Any

from kubesage.configfile import read_mapping
from kubesage.dsl.errors import KubesageError

DEFAULT_PATH = os.path.join("config", "kfp.yaml")
_DURATION = re.compile(r"^[0-9]+(s|m|h)$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


class KfpConfigError(KubesageError):
    """The Kubeflow target config is missing, malformed, or has a wrong value."""


class MountConfigError(KfpConfigError):
    """A component mounts data the Kubeflow config has no PersistentVolumeClaim for."""


@dataclass(frozen=True)
class Toleration:
    """A Kubernetes toleration (for spot node taints)."""

    key: str | None = None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None

    def to_k8s(self) -> dict[str, str]:
        """The toleration as a Kubernetes object (camelCase keys, unset fields left out)."""
        doc = {"key": self.key, "operator": self.operator, "value": self.value, "effect": self.effect}
        return {k: v for k, v in doc.items() if v is not None}


@dataclass(frozen=True)
class KfpConfig:
    """Settings of the Kubeflow target; see ``config/kfp.yaml`` for a commented example."""

    registry: str = ""
    tag: str = "latest"
    namespace: str = "kubeflow"
    service_account: str = ""
    host: str = ""
    experiment: str = "kubesage"
    volumes: dict[str, str] = field(default_factory=dict)  # data mount name -> PVC claim name
    checkpoint_claim: str = ""
    checkpoint_path: str = "/checkpoints"
    shm_size: str = ""  # "" = no /dev/shm volume
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[Toleration, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    retry_backoff: str = "30s"
    retry_factor: float = 2.0
    retry_max: str = "3600s"
    trainer_runtime: str = "torch-distributed"
    trainer_poll_s: int = 30
    wait_poll_s: float = 10.0  # `submit --wait`: seconds between status reads
    local_config: str | None = None  # local.yaml whose mounts and store `run --target kfp` uses
    # Local runs only: data mount -> fingerprint, set as an environment variable of the tasks
    # that mount it, so that kfp.local's step cache misses when the data changed.
    data_versions: dict[str, str] = field(default_factory=dict)
    local_images: dict[str, str] = field(default_factory=dict)  # local runs: image -> local tag
    source: str = "(defaults)"

    def image(self, logical: str) -> str:
        """``kubesage/torch`` -> ``<registry>/kubesage/torch:<tag>`` (a tag in the name wins;
        a full reference pinned by digest, ``host/repo@sha256:...``, is used as it is)."""
        if logical in self.local_images:
            return self.local_images[logical]
        if logical.startswith("sha256:"):
            raise KfpConfigError(
                f"image {logical[:19]}... is a local image ID, which a cluster cannot pull; "
                "publish the component with a registry digest (host/repo@sha256:...)")
        host = logical.split("/", 1)[0]
        if "@sha256:" in logical and ("." in host or ":" in host or host == "localhost"):
            return logical
        name = logical if ":" in logical.rsplit("/", 1)[-1] else f"{logical}:{self.tag}"
        return f"{self.registry.rstrip('/')}/{name}" if self.registry else name

    def claim(self, mount: str, who: str, path: str) -> str:
        """The PersistentVolumeClaim of data mount ``mount`` (``who`` mounts it at ``path``)."""
        claim = self.volumes.get(mount)
        if claim is None:
            raise MountConfigError(
                f"{who} mounts '{mount}' at {path}, but {self.source} has no 'volumes.{mount}'; add "
                f"'volumes: {{{mount}: {{claim: <PersistentVolumeClaim name>}}}}' to the Kubeflow "
                "config")
        return claim

    def for_local_run(self, images: dict[str, str], data_versions: dict[str, str]) -> KfpConfig:
        """The same settings for a kfp.local run: ``images`` maps a logical image to the local
        tag it runs as (no registry); ``data_versions`` the data mounts' fingerprints."""
        return dataclasses.replace(self, registry="", local_images=dict(images),
                                   data_versions=dict(data_versions))


_SCHEMA: dict[str, Any] = {
    "image": {"registry": str, "tag": str},
    "namespace": str,
    "service_account": str,
    "host": str,
    "experiment": str,
    "volumes": dict,
    "checkpoints": {"claim": str, "path": str},
    "shm": {"size": str},
    "scheduling": {"node_selector": dict, "tolerations": list},
    "env": dict,
    "retry": {"backoff": str, "factor": float, "max": str},
    "trainer": {"runtime": str, "poll_seconds": int},
    "local": {"config": str},
    "wait": {"poll_seconds": float},
}


def load_kfp_config(path: str | None = None) -> KfpConfig:
    """Read the Kubeflow target config; without ``path`` use ``config/kfp.yaml`` if it exists."""
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return KfpConfig()
        path = DEFAULT_PATH
    if not os.path.isfile(path):
        raise KfpConfigError(f"config file {path} does not exist; pass an existing --config file "
                             "(config/kfp.yaml is the example)")
    doc = read_mapping(path, KfpConfigError)
    _check(path, doc, _SCHEMA, "")
    return _build(path, doc)


def _check(path: str, doc: dict[str, Any], schema: dict[str, Any], prefix: str) -> None:
    for key, value in doc.items():
        where = prefix + str(key)
        if key not in schema:
            raise KfpConfigError(
                f"{path}: unknown key '{where}'; known keys here: {', '.join(schema)}")
        expected = schema[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict):
                raise KfpConfigError(f"{path}: '{where}' must be a mapping with keys "
                                     f"{', '.join(expected)}, got {value!r}")
            _check(path, value, expected, where + ".")
            continue
        ok = isinstance(value, expected) and not isinstance(value, bool)
        if expected is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if expected is str and isinstance(value, (int, float)) and not isinstance(value, bool):
            ok = False
        if not ok:
            raise KfpConfigError(f"{path}: '{where}' must be a {expected.__name__}, got {value!r}")


def _strings(path: str, where: str, value: dict[str, Any]) -> dict[str, str]:
    for k, v in value.items():
        if not isinstance(v, str):
            raise KfpConfigError(f"{path}: '{where}.{k}' must be a string, got {v!r}; quote it")
    return dict(value)


def _build(path: str, doc: dict[str, Any]) -> KfpConfig:
    image = doc.get("image", {})
    volumes: dict[str, str] = {}
    for name, entry in doc.get("volumes", {}).items():
        if not isinstance(entry, dict) or set(entry) != {"claim"} or not isinstance(entry["claim"], str):
            raise KfpConfigError(
                f"{path}: 'volumes.{name}' must be {{claim: <PersistentVolumeClaim name>}}, "
                f"got {entry!r}")
        volumes[name] = entry["claim"]
    tolerations = []
    for i, t in enumerate(doc.get("scheduling", {}).get("tolerations", [])):
        known = {"key", "operator", "value", "effect"}
        if not isinstance(t, dict) or set(t) - known:
            raise KfpConfigError(f"{path}: 'scheduling.tolerations[{i}]' must be a mapping of "
                                 f"{', '.join(sorted(known))}, got {t!r}")
        if t.get("operator", "Equal") not in ("Equal", "Exists"):
            raise KfpConfigError(f"{path}: 'scheduling.tolerations[{i}].operator' must be Equal "
                                 f"or Exists, got {t['operator']!r}")
        if t.get("effect") not in (None, "NoSchedule", "PreferNoSchedule", "NoExecute"):
            raise KfpConfigError(f"{path}: 'scheduling.tolerations[{i}].effect' must be NoSchedule, "
                                 f"PreferNoSchedule or NoExecute, got {t['effect']!r}")
        tolerations.append(Toleration(t.get("key"), t.get("operator", "Equal"), t.get("value"),
                                      t.get("effect")))
    retry = doc.get("retry", {})
    for key in ("backoff", "max"):
        if key in retry and not _DURATION.match(retry[key]):
            raise KfpConfigError(f"{path}: 'retry.{key}' must be a duration like 30s, 5m or 1h, "
                                 f"got {retry[key]!r}")
    shm = doc.get("shm", {}).get("size", "")
    if shm and not _QUANTITY.match(shm):
        raise KfpConfigError(f"{path}: 'shm.size' must be a Kubernetes quantity like 16Gi, got {shm!r}")
    trainer = doc.get("trainer", {})
    if trainer.get("poll_seconds", 30) < 1:
        raise KfpConfigError(f"{path}: 'trainer.poll_seconds' must be >= 1")
    if doc.get("wait", {}).get("poll_seconds", 10.0) <= 0:
        raise KfpConfigError(f"{path}: 'wait.poll_seconds' must be > 0")
    local = doc.get("local", {}).get("config")
    base = os.path.dirname(os.path.abspath(path))
    ckpt = doc.get("checkpoints", {})
    return KfpConfig(
        registry=image.get("registry", ""),
        tag=image.get("tag", "latest"),
        namespace=doc.get("namespace", "kubeflow"),
        service_account=doc.get("service_account", ""),
        host=doc.get("host", ""),
        experiment=doc.get("experiment", "kubesage"),
        volumes=volumes,
        checkpoint_claim=ckpt.get("claim", ""),
        checkpoint_path=ckpt.get("path", "/checkpoints"),
        shm_size=shm,
        node_selector=_strings(path, "scheduling.node_selector",
                               doc.get("scheduling", {}).get("node_selector", {})),
        tolerations=tuple(tolerations),
        env=_strings(path, "env", doc.get("env", {})),
        retry_backoff=_seconds(retry.get("backoff", "30s")),
        retry_factor=float(retry.get("factor", 2.0)),
        retry_max=_seconds(retry.get("max", "1h")),
        trainer_runtime=trainer.get("runtime", "torch-distributed"),
        trainer_poll_s=trainer.get("poll_seconds", 30),
        wait_poll_s=float(doc.get("wait", {}).get("poll_seconds", 10.0)),
        local_config=os.path.normpath(os.path.join(base, local)) if local else None,
        source=path,
    )


def _seconds(duration: str) -> str:
    """``5m`` -> ``300s``: KFP's retry policy takes seconds."""
    n, unit = int(duration[:-1]), duration[-1]
    return f"{n * {'s': 1, 'm': 60, 'h': 3600}[unit]}s"

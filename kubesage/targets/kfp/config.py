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

from kubesage.config.fusion import read_fusion
from kubesage.config.reader import ConfigError, ConfigReader
from kubesage.plan.costs import FusionSettings
from kubesage.runs.step_user import RUN_AS_GID, RUN_AS_UID
from kubesage.targets.kfp.k8s_syntax import (
    dns_label_problem,
    dns_subdomain_problem,
    label_key_problem,
    label_value_problem,
)

DEFAULT_PATH = os.path.join("config", "kfp.yaml")
_DURATION = re.compile(r"^[0-9]+(s|m|h)$")
_QUANTITY = re.compile(r"^$|^[0-9]+(\.[0-9]+)?(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")  # "": none


class KfpConfigError(ConfigError):
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
    # Every pod runs as this non-root user (runAsNonRoot always); None leaves it to the cluster
    # (OpenShift assigns one per namespace).
    run_as_user: int | None = RUN_AS_UID
    run_as_group: int | None = RUN_AS_GID
    local_config: str | None = None  # local.yaml whose mounts and store `run --target kfp` uses
    # Local runs only: data mount -> fingerprint, set as an environment variable of the tasks
    # that mount it, so that kfp.local's step cache misses when the data changed.
    data_versions: dict[str, str] = field(default_factory=dict)
    # logical image -> the exact reference tasks run: a content tag (compile, submit) or, in local
    # runs, the local tag of an image ID
    pinned: dict[str, str] = field(default_factory=dict)
    source: str = "(defaults)"
    # Which tasks share one pod (``kubesage.plan.fusion``); auto unless the config says otherwise.
    fusion: FusionSettings = field(default_factory=FusionSettings)

    def image(self, logical: str) -> str:
        """``kubesage/torch`` -> ``<registry>/kubesage/torch:<tag>`` (a tag in the name wins;
        a full reference pinned by digest, ``host/repo@sha256:...``, is used as it is)."""
        if logical in self.pinned:
            return self.pinned[logical]
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

    def with_content_tags(self, refs: dict[str, str]) -> KfpConfig:
        """The same settings naming the project's images by the code they hold: ``refs`` maps a
        logical image to ``<image>:code-<hash>``, pulled from the config's registry."""
        registry = self.registry.rstrip("/")
        return dataclasses.replace(self, pinned={
            name: f"{registry}/{ref}" if registry else ref for name, ref in refs.items()})

    def for_local_run(self, images: dict[str, str], data_versions: dict[str, str]) -> KfpConfig:
        """The same settings for a kfp.local run: ``images`` maps a logical image to the local
        tag it runs as (no registry); ``data_versions`` the data mounts' fingerprints."""
        return dataclasses.replace(self, registry="", pinned=dict(images),
                                   data_versions=dict(data_versions))


_KEYS = ("image", "namespace", "service_account", "host", "experiment", "volumes", "checkpoints",
         "shm", "scheduling", "env", "retry", "trainer", "local", "wait", "security", "fusion")
_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def load_kfp_config(path: str | None = None) -> KfpConfig:
    """Read the Kubeflow target config; without ``path`` use ``config/kfp.yaml`` if it exists."""
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return KfpConfig()
        path = DEFAULT_PATH
    r = ConfigReader.open(path, KfpConfigError,
                          "pass an existing --config file (config/kfp.yaml is the example)")
    r.unknown(_KEYS)
    image = r.child("image", False, known=("registry", "tag"))
    volumes = r.child("volumes", False)
    checkpoints = r.child("checkpoints", False, known=("claim", "path"))
    scheduling = r.child("scheduling", False, known=("node_selector", "tolerations"))
    selector, env = scheduling.child("node_selector", False), r.child("env", False)
    tolerations = scheduling.indexed("tolerations")
    retry = r.child("retry", False, known=("backoff", "factor", "max"))
    trainer = r.child("trainer", False, known=("runtime", "poll_seconds"))
    wait = r.child("wait", False, known=("poll_seconds",))
    wait_poll_s = wait.get("poll_seconds", float, False, 10.0)
    security = r.child("security", False, known=("run_as_user", "run_as_group"))
    # ``null`` leaves the user to the cluster; 0 (root) is refused: pods run as non-root
    users = {key: (security.get(key, int, False, default, least=least, example=example)
                   if security.doc.get(key, default) is not None else None)
             for key, default, least, example in (
                 ("run_as_user", RUN_AS_UID, 1,
                  f"{RUN_AS_UID} (pods never run as root; null lets the cluster choose)"),
                 ("run_as_group", RUN_AS_GID, 0, f"{RUN_AS_GID}"))}
    if wait_poll_s <= 0:
        raise wait.fail("poll_seconds", f"must be > 0, got {wait_poll_s}")
    _check_kubernetes_syntax(r, volumes, checkpoints, selector, tolerations, trainer)
    return KfpConfig(
        registry=image.get("registry", str, False, ""),
        tag=image.get("tag", str, False, "latest"),
        namespace=r.get("namespace", str, False, "kubeflow"),
        service_account=r.get("service_account", str, False, ""),
        host=r.get("host", str, False, ""),
        experiment=r.get("experiment", str, False, "kubesage"),
        volumes={name: volumes.child(name, example="{claim: <PersistentVolumeClaim name>}",
                                     known=("claim",)).get("claim", str, example="fsx-claim")
                 for name in volumes.doc},
        checkpoint_claim=checkpoints.get("claim", str, False, ""),
        checkpoint_path=checkpoints.get("path", str, False, "/checkpoints"),
        shm_size=r.child("shm", False, known=("size",)).get("size", str, False, "",
                                                             pattern=_QUANTITY,
                                                             example="16Gi (a Kubernetes quantity)"),
        node_selector={k: selector.get(k, str, example='"value"') for k in selector.doc},
        tolerations=tuple(_toleration(tolerations, item) for item in tolerations.doc),
        env={k: env.get(k, str, example='"value"') for k in env.doc},
        retry_backoff=_seconds(retry.get("backoff", str, False, "30s", pattern=_DURATION,
                                         example="30s, 5m or 1h")),
        retry_factor=retry.get("factor", float, False, 2.0),
        retry_max=_seconds(retry.get("max", str, False, "1h", pattern=_DURATION,
                                     example="30s, 5m or 1h")),
        trainer_runtime=trainer.get("runtime", str, False, "torch-distributed"),
        trainer_poll_s=trainer.get("poll_seconds", int, False, 30, least=1),
        wait_poll_s=wait_poll_s,
        run_as_user=users["run_as_user"],
        run_as_group=users["run_as_group"],
        local_config=r.child("local", False, known=("config",)).path_of("config") or None,
        source=path,
        fusion=read_fusion(r),
    )


def _check_kubernetes_syntax(r: ConfigReader, volumes: ConfigReader, checkpoints: ConfigReader,
                             selector: ConfigReader, tolerations: ConfigReader,
                             trainer: ConfigReader) -> None:
    """Refuse names, label keys and values the Kubernetes API would refuse (``k8s_syntax``)."""
    names = [(r, "namespace", dns_label_problem), (r, "service_account", dns_subdomain_problem),
             (checkpoints, "claim", dns_subdomain_problem),
             (trainer, "runtime", dns_subdomain_problem)]
    names += [(volumes.child(name), "claim", dns_subdomain_problem) for name in volumes.doc
              if isinstance(volumes.doc[name], dict)]
    for reader, key, check in names:
        value = reader.doc.get(key)
        problem = check(value) if isinstance(value, str) and value else None
        if problem:
            raise reader.fail(key, f"is {value!r}, which {problem}; use the name the "
                                   "object has in the cluster")
    for key, value in selector.doc.items():
        problem = label_key_problem(str(key)) or _value_problem(value)
        if problem:
            raise selector.fail(str(key), f"is no valid Kubernetes node label: {problem}; use the "
                                          "node group's label as 'kubectl get nodes --show-labels' "
                                          "lists it")
    for item, t in tolerations.doc.items():
        if not isinstance(t, dict):
            continue
        taint = t.get("key")
        problem = (label_key_problem(taint) if isinstance(taint, str) else None) or \
            _value_problem(t.get("value"))
        if problem:
            raise tolerations.fail(item, f"does not match a Kubernetes taint: {problem}; use the "
                                         "node group's taint as 'kubectl describe node' lists it")


def _value_problem(value: object) -> str | None:
    problem = label_value_problem(value) if isinstance(value, str) else None
    return f"value {value!r} {problem}" if problem else None


def _toleration(tolerations: ConfigReader, item: str) -> Toleration:
    t = tolerations.child(item, example='{key: spot, operator: Equal, value: "true"}',
                          known=("key", "operator", "value", "effect"))
    return Toleration(t.get("key", str, False), t.get("operator", str, False, "Equal",
                                                      choices=("Equal", "Exists")),
                      t.get("value", str, False), t.get("effect", str, False, choices=_EFFECTS))


def _seconds(duration: str) -> str:
    """``5m`` -> ``300s``: KFP's retry policy takes seconds."""
    n, unit = int(duration[:-1]), duration[-1]
    return f"{n * {'s': 1, 'm': 60, 'h': 3600}[unit]}s"

"""The local target config: where data mounts come from, where runs are stored, image tags.

```yaml
# config/local.yaml (paths relative to this file)
mounts:
  fsx: ../data/fsx      # bind-mounted read-only at the path the component declares (/fsx)
store: ../.kubesage     # run records, cache index and artifacts
image_tag: latest       # kubesage/torch -> kubesage/torch:latest
parallelism: 4          # steps running at once
mlflow_tracking_uri: sqlite:////abs/path/mlflow.db   # default: <store>/mlflow/mlflow.db
webhooks: [https://hooks.slack.com/services/...]      # run and step state changes
```
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kubesage.configfile import read_mapping
from kubesage.dsl.errors import KubesageError

if TYPE_CHECKING:
    from kubesage.dsl.pipeline import Pipeline

DEFAULT_PATH = os.path.join("config", "local.yaml")


class ConfigError(KubesageError):
    """A target config file is missing, malformed, or has a wrong value."""


@dataclass
class LocalConfig:
    """Settings of local runs; nothing here is part of a pipeline."""

    mounts: dict[str, str] = field(default_factory=dict)
    store: str = ".kubesage"
    image_tag: str = "latest"
    parallelism: int = 4
    # Start a step's container (and its heavy imports) while its upstream steps still run; each
    # waiting container holds its imports in memory (torch: some hundred MB).
    warm_start: bool = True
    mlflow_tracking_uri: str = ""
    webhooks: list[str] = field(default_factory=list)
    source: str = "(defaults)"

    @property
    def tracking_uri(self) -> str:
        """The MLflow tracking URI: the configured one, else a SQLite store in the run store."""
        return self.mlflow_tracking_uri or "sqlite:///" + os.path.join(
            os.path.abspath(self.store), "mlflow", "mlflow.db")

    @property
    def source_file(self) -> str:
        """The config file read (absolute), or "" for the defaults."""
        return "" if self.source == "(defaults)" else os.path.abspath(self.source)

    def image(self, name: str) -> str:
        """Local tag for a logical image name."""
        return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:{self.image_tag}"


_KEYS = {"mounts": dict, "store": str, "image_tag": str, "parallelism": int,
         "warm_start": bool, "mlflow_tracking_uri": str, "webhooks": list}


def load_local_config(path: str | None = None) -> LocalConfig:
    """Read the local config; without ``path`` use ``config/local.yaml`` if it exists."""
    if path is None:
        if not os.path.exists(DEFAULT_PATH):
            return LocalConfig()
        path = DEFAULT_PATH
    if not os.path.exists(path):
        raise ConfigError(f"config file {path} does not exist; pass an existing --config file")
    doc = read_mapping(path, ConfigError)
    for key, value in doc.items():
        if key not in _KEYS:
            raise ConfigError(f"{path}: unknown key '{key}'; known keys: {', '.join(_KEYS)}")
        if not isinstance(value, _KEYS[key]) or (isinstance(value, bool) and _KEYS[key] is not bool):
            raise ConfigError(
                f"{path}: '{key}' must be a {_KEYS[key].__name__}, got {value!r}"
            )
    base = os.path.dirname(os.path.abspath(path))
    mounts = {}
    for name, folder in doc.get("mounts", {}).items():
        if not isinstance(folder, str):
            raise ConfigError(f"{path}: 'mounts.{name}' must be a folder path, got {folder!r}")
        mounts[name] = os.path.normpath(os.path.join(base, folder))
    parallelism = doc.get("parallelism", 4)
    if parallelism < 1:
        raise ConfigError(f"{path}: 'parallelism' must be >= 1, got {parallelism}")
    return LocalConfig(
        mounts=mounts,
        store=os.path.normpath(os.path.join(base, doc.get("store", ".kubesage"))),
        image_tag=doc.get("image_tag", "latest"),
        parallelism=parallelism,
        warm_start=doc.get("warm_start", True),
        mlflow_tracking_uri=doc.get("mlflow_tracking_uri", ""),
        webhooks=_webhooks(path, doc.get("webhooks", [])),
        source=path,
    )


def _webhooks(path: str, urls: list[Any]) -> list[str]:
    for i, url in enumerate(urls):
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ConfigError(f"{path}: 'webhooks[{i}]' must be an http(s) URL, got {url!r}")
    return list(urls)


def data_mounts(pipeline: Pipeline, config: LocalConfig,
                where: str = "the local config") -> dict[str, tuple[str, str]]:
    """mount name -> (path in the container, local folder) for every data mount the pipeline's
    components declare, checked against ``config``; ``where`` tells the user which file to edit."""
    found: dict[str, tuple[str, str]] = {}
    for task in pipeline.tasks:
        for name, target in task.spec.mounts:
            source = config.mounts.get(name)
            if source is None:
                raise ConfigError(
                    f"component '{task.spec.name}' mounts '{name}' at {target}, but "
                    f"{config.source} has no 'mounts.{name}'; add "
                    f"'mounts: {{{name}: /path/to/folder}}' to {where}")
            if not os.path.isdir(source):
                raise ConfigError(
                    f"mounts.{name} in {config.source}: folder {source} does not exist; create "
                    "it (or run 'kubesage sample-data' for the sample set)")
            found[name] = (target, source)
    return found

"""One package per target (``kfp``, ``sagemaker``); nothing outside a target imports its SDK.

Each target package exposes the same five functions, which the CLI calls:

- ``compile_pipeline(pipeline, output, config_path) -> None``: write the compiled artifact
  (atomically: temporary file, then rename).
- ``validate_file(path) -> str``: check a compiled artifact; returns a one-line summary, raises
  a ``KubesageError`` that names the problem.
- ``run_pipeline(pipeline, params, config_path, pipeline_file, log) -> RunRecord``: compile, then
  execute the compiled artifact locally, recorded in the local run store.
- ``submit(ref, params, config_path, wait, clients) -> dict``: submit a pipeline file (compiled
  on the fly) or a compiled artifact to the service; returns what was started.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from kubesage.dsl.errors import KubesageError

TARGETS = ("kfp", "sagemaker")
SUFFIXES = {".yaml": "kfp", ".yml": "kfp", ".json": "sagemaker"}


def load_target(name: str) -> ModuleType:
    """The target package ``kubesage.targets.<name>``."""
    if name not in TARGETS:
        raise KubesageError(f"unknown target '{name}'; use one of: {', '.join(TARGETS)}")
    return importlib.import_module(f"kubesage.targets.{name}")

"""Load a pipeline from a file path (``pipelines/x.py`` or ``pipelines/x.py:name``)."""

from __future__ import annotations

import importlib.util
import os
import sys
import traceback
from types import ModuleType
from typing import Any

from kubesage.dsl.component import Component
from kubesage.dsl.errors import KubesageError
from kubesage.dsl.pipeline import ComponentRun, PipelineDefinition


class LoadError(KubesageError):
    """A pipeline file cannot be found, imported, or holds no (or several) pipelines."""


def project_root(start: str) -> str:
    """The nearest folder at or above ``start`` holding ``components/`` or ``pyproject.toml``."""
    path = os.path.abspath(start if os.path.isdir(start) else os.path.dirname(start))
    while True:
        if os.path.isdir(os.path.join(path, "components")) or os.path.exists(
            os.path.join(path, "pyproject.toml")
        ):
            return path
        parent = os.path.dirname(path)
        if parent == path:
            return os.getcwd()
        path = parent


def import_file(path: str, root: str) -> ModuleType:
    """Import ``path`` under its dotted name from ``root``; a mistake in it is a ``LoadError``
    that names the file, the line and the problem, never a traceback.

    The project's files are imported without writing bytecode: Python trusts a cached ``.pyc``
    whose source has the same size and modification second, so a file rewritten within a second
    (a generated pipeline) would load as it was before."""
    parts = os.path.splitext(os.path.relpath(os.path.abspath(path), root))[0].split(os.sep)
    writes_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        if all(p.isidentifier() for p in parts):
            return importlib.import_module(".".join(parts))
        module_name = "kubesage_pipeline_" + parts[-1]
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module
    except KubesageError:
        raise
    except SyntaxError as e:
        where = f"{e.filename or path}:{e.lineno}" if e.lineno else path
        raise LoadError(f"{where}: syntax error: {e.msg}; fix that line") from None
    except ImportError as e:
        raise LoadError(f"{path}: cannot import {e.name or 'a module'} ({e}); install it, or fix "
                        "the import (modules of the project import from its root, e.g. "
                        "'from components.train import train')") from None
    except Exception as e:  # the file's own code failed while it was imported
        frames = [f for f in traceback.extract_tb(e.__traceback__)
                  if not f.filename.startswith(os.path.dirname(importlib.__file__))]
        at = f" at {frames[-1].filename}:{frames[-1].lineno}" if frames else ""
        raise LoadError(f"{path}: importing it raised {type(e).__name__}: {e}{at}; fix the "
                        "pipeline file") from None
    finally:
        sys.dont_write_bytecode = writes_bytecode


def load_pipeline(ref: str) -> tuple[PipelineDefinition | ComponentRun, str]:
    """Import the file and return its ``@pipeline`` (and the file path); ``FILE.py:NAME`` picks
    a pipeline, or a component to run on its own."""
    path, _, name = ref.partition(":")
    if not os.path.isfile(path):
        raise LoadError(f"pipeline file {path} does not exist; pass e.g. pipelines/image_classification.py")
    root = project_root(path)
    if root not in sys.path:
        sys.path.insert(0, root)
    # Import under its dotted name from the project root ("pipelines.image_classification"), so
    # components defined in the file have an entry point the runtime can import in a container.
    module = import_file(path, root)
    found = {
        obj.name: obj for obj in vars(module).values() if isinstance(obj, PipelineDefinition)
    }
    if name:
        matches = [p for attr, p in vars(module).items()
                   if isinstance(p, PipelineDefinition) and name in (attr, p.name)]
        if matches:
            return matches[0], path
        component = next((c for attr, c in vars(module).items()
                          if isinstance(c, Component) and name in (attr, c.name)), None)
        if component is not None:  # a component on its own: a pipeline of one task
            return ComponentRun(component), path
        components = sorted({c.name for c in vars(module).values() if isinstance(c, Component)})
        raise LoadError(f"{path} has no pipeline or component '{name}'; it has pipelines: "
                        f"{', '.join(found) or 'none'}; components: {', '.join(components) or 'none'}")
    if len(found) != 1:
        raise LoadError(
            f"{path} defines {len(found)} pipelines ({', '.join(found) or 'none'}); "
            f"pick one with {path}:<name> (or a component: {path}:<component>)"
        )
    return next(iter(found.values())), path


def load_component(ref: str) -> Component[Any, Any]:
    """``FILE.py:COMPONENT`` -> the component it defines (by name or by its function)."""
    path, _, name = ref.partition(":")
    if not os.path.isfile(path) or not name:
        raise LoadError(f"'{ref}': expected FILE.py:COMPONENT, e.g. components/train.py:train")
    found = load_pipeline(ref)[0]
    if not isinstance(found, ComponentRun):
        raise LoadError(f"{path} has no component '{name}' (by name or by its function); "
                        f"'{name}' is a pipeline")
    return found.component

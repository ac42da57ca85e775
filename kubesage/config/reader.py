"""Reading a target config file: one YAML mapping, read through one typed reader.

Every target's config is read the same way, so a mistake reads the same on every target: the
file, the dotted key, the problem and the fix, e.g.
``config/kfp.yaml: 'image.registy' is not a known setting (did you mean 'image.registry'?)``.
"""

from __future__ import annotations

import difflib
import os
import re
from typing import Any

from kubesage.dsl.errors import KubesageError

_KINDS = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
          dict: "a mapping", list: "a list"}


class ConfigError(KubesageError):
    """A target config file is missing, malformed, or has a wrong value."""


class ConfigReader:
    """Typed access to one mapping of a config file; ``where`` is its dotted key (``spot.``).
    A key that is absent or null is unset."""

    def __init__(self, doc: dict[Any, Any], path: str, error: type[ConfigError] = ConfigError,
                 where: str = "") -> None:
        self.doc, self.path, self.error, self.where = doc, path, error, where

    @classmethod
    def open(cls, path: str, error: type[ConfigError], fix: str) -> ConfigReader:
        """A reader of the YAML mapping in ``path`` (an empty file is empty); ``error`` when the
        file does not exist (``fix`` says what to do instead), is not YAML or not a mapping."""
        import yaml

        if not os.path.exists(path) or os.path.isdir(path):  # /dev/null is an empty config
            raise error(f"config file {path} does not exist; {fix}")
        with open(path) as f:
            try:
                doc: Any = yaml.safe_load(f) or {}
            except yaml.YAMLError as e:
                raise error(f"{path}: not valid YAML ({yaml_problem(e)}); fix the syntax there"
                            ) from None
        if not isinstance(doc, dict):
            raise error(f"{path}: expected a mapping of settings, got {type(doc).__name__}")
        return cls(doc, path, error)

    def key(self, name: str) -> str:
        """The dotted key of setting ``name``."""
        return f"{self.where}{name}"

    def fail(self, name: str, problem: str) -> ConfigError:
        """The error ``<file>: '<dotted key>' <problem and fix>``."""
        return self.error(f"{self.path}: '{self.key(name)}' {problem}")

    def get(self, name: str, kind: type, required: bool = True, default: Any = None, *,
            pattern: re.Pattern[str] | None = None, example: str = "",
            choices: tuple[str, ...] = (), least: float | None = None) -> Any:
        """Setting ``name``: a ``kind`` (true/false is no number; a whole number is a float)
        matching ``pattern``, one of ``choices``, at least ``least``. Unset: ``default``, or an
        error when ``required``. ``example``, a good value, goes into the error's fix."""
        value = self.doc.get(name)
        if value is None:
            if required:
                raise self.fail(name, f"is missing; add it, e.g. {name}: {example}")
            return default
        typed = isinstance(value, (int, float) if kind is float else kind)  # apart: value stays Any
        if not typed or (isinstance(value, bool) and kind is not bool):
            fix = "; quote it" if kind is str and isinstance(value, (int, float)) else (
                f"; e.g. {name}: {example}" if example else "")
            raise self.fail(name, f"must be {_KINDS[kind]}, got {value!r}{fix}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(name, f"is malformed: {value!r}; expected something like {example}")
        if choices and value not in choices:
            raise self.fail(name, f"is {value!r}; use one of: {', '.join(choices)}")
        if least is not None and value < least:
            fix = f"; use e.g. {name}: {example}" if example else f"; use {least} or more"
            raise self.fail(name, f"must be >= {least}, got {value}{fix}")
        return float(value) if kind is float else value

    def child(self, name: str, required: bool = True, example: str = "",
              known: tuple[str, ...] | None = None) -> ConfigReader:
        """A reader of mapping ``name`` (empty when unset and not required); with ``known``,
        every other key in it is an error."""
        sub = self.get(name, dict, required, {}, example=example)
        reader = ConfigReader(sub, self.path, self.error, f"{self.key(name)}.")
        if known is not None:
            reader.unknown(known)
        return reader

    def indexed(self, name: str, required: bool = False, example: str = "") -> ConfigReader:
        """List ``name`` as a reader whose keys are ``name[0]``, ``name[1]``, ... in order."""
        values = self.get(name, list, required, [], example=example)
        return ConfigReader({f"{name}[{i}]": v for i, v in enumerate(values)}, self.path,
                            self.error, self.where)

    def strings(self, name: str, pattern: re.Pattern[str], example: str,
                required: bool = True) -> tuple[str, ...]:
        """List ``name`` of strings matching ``pattern``; when ``required``, at least one."""
        items = self.indexed(name, required, f"[{example}]")
        if required and not items.doc:
            raise self.fail(name, f"is empty; list at least one, e.g. [{example}]")
        return tuple(items.get(k, str, pattern=pattern, example=example) for k in items.doc)

    def path_of(self, name: str, default: str = "", required: bool = False,
                example: str = "") -> str:
        """Setting ``name``, a path relative to the config file's folder, made absolute ("" when
        unset or empty and there is no ``default``)."""
        value = self.get(name, str, required, example=example) or default
        folder = os.path.dirname(os.path.abspath(self.path))
        return os.path.normpath(os.path.join(folder, value)) if value else ""

    def unknown(self, known: tuple[str, ...]) -> None:
        """An error for the first key not in ``known``, naming the closest known one."""
        for name in self.doc:
            if name not in known:
                close = difflib.get_close_matches(str(name), known, n=1)
                hint = f" (did you mean '{self.key(close[0])}'?)" if close else ""
                raise self.fail(str(name), f"is not a known setting{hint}; known here: "
                                f"{', '.join(known)}")


def yaml_problem(error: Exception) -> str:
    """A YAML parse error in one line: what and where (``expected ',' or '}' at line 1, column 9``)."""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    mark = getattr(error, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem

"""The models a server holds: a handler per model, loaded lazily into a bounded LRU cache."""

from __future__ import annotations

import importlib
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

from kubesage.dsl.errors import KubesageError


class Handler(Protocol):
    """One loaded model: what it takes and what it answers."""

    def predict(self, payloads: list[bytes], **options: Any) -> list[dict[str, Any]]:
        """One answer per encoded input (an image file's bytes); ``BadInput`` for a bad one, or
        for an option (``top_k``, ...) the model does not take."""
        ...

    def metadata(self) -> dict[str, Any]:
        """Inputs and outputs as the Open Inference Protocol describes a model."""
        ...


class BadInput(KubesageError):
    """A request the model cannot take (answered 400 with this message)."""


class UnknownModel(KubesageError):
    """No model of that name (answered 404)."""


def handler_factory(entry: str) -> Callable[[str], Handler]:
    """``module:function`` -> the function that loads a model folder into a handler."""
    module, sep, attribute = entry.partition(":")
    if not sep:
        raise KubesageError(f"handler '{entry}': write it as module:function "
                            "(e.g. components.classifier:load)")
    loader: Callable[[str], Handler] = getattr(importlib.import_module(module), attribute)
    return loader


class ModelCache:
    """Model name -> folder; at most ``capacity`` handlers loaded, the least recently used
    unloaded first. Safe to share between the server's threads."""

    def __init__(self, folders: dict[str, str], load: Callable[[str], Handler],
                 capacity: int = 8) -> None:
        self.folders = dict(folders)
        self.capacity = max(1, capacity)
        self._load = load
        self._loaded: OrderedDict[str, Handler] = OrderedDict()
        self._lock = threading.Lock()
        self._loading: dict[str, threading.Lock] = {name: threading.Lock() for name in folders}
        self.loads = 0  # how many times a model was loaded (evictions make it grow)

    @property
    def default(self) -> str:
        """The model a request that names none gets: the only one, else ``default``."""
        if len(self.folders) == 1:
            return next(iter(self.folders))
        if "default" in self.folders:
            return "default"
        raise UnknownModel(f"this server holds {len(self.folders)} models "
                           f"({', '.join(sorted(self.folders))}); name one")

    def add(self, name: str, folder: str) -> bool:
        """Hold model ``name`` (from ``folder``), loaded when first asked for; False when a
        model of that name is held already."""
        with self._lock:
            if name in self.folders:
                return False
            self.folders[name] = folder
            self._loading[name] = threading.Lock()
            return True

    def remove(self, name: str) -> None:
        """Stop holding ``name`` (``UnknownModel`` when it is not held)."""
        with self._lock:
            if name not in self.folders:
                raise UnknownModel(f"no model '{name}' is loaded")
            del self.folders[name]
            self._loaded.pop(name, None)

    def loaded(self) -> list[str]:
        with self._lock:
            return list(self._loaded)

    def get(self, name: str) -> Handler:
        """The handler of ``name``, loading it (and unloading the least recently used) if
        needed."""
        with self._lock:
            if name not in self.folders:
                raise UnknownModel(f"no model '{name}'; this server holds: "
                                   f"{', '.join(sorted(self.folders)) or '(none)'}")
            if name in self._loaded:
                self._loaded.move_to_end(name)
                return self._loaded[name]
        with self._loading[name]:  # one load per model at a time; others wait for it
            with self._lock:
                if name in self._loaded:
                    return self._loaded[name]
            try:
                handler = self._load(self.folders[name])
            except FileNotFoundError as e:
                raise UnknownModel(str(e)) from None
            with self._lock:
                self.loads += 1
                self._loaded[name] = handler
                while len(self._loaded) > self.capacity:
                    self._loaded.popitem(last=False)
            return handler

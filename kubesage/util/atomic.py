"""Atomic file writes: a reader sees the old file or the whole new one, never a partial one.

Standard library only: the runtime inside containers uses it too.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from typing import Any


def write_atomic(path: str, text: str, mode: int = 0o644) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    On any failure the temporary file is removed and ``path`` is untouched. ``mode`` is the
    file's permission (temporary files start private; shared files must be readable).
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, doc: Any, **dump_options: Any) -> None:
    """``write_atomic`` of ``json.dumps(doc, **dump_options)``."""
    write_atomic(path, json.dumps(doc, **dump_options))

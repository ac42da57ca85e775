"""Atomic training checkpoints and resume from the newest valid one (spot interruptions)."""

from __future__ import annotations

import glob
import os
from typing import Any

PATTERN = "ckpt-*.pt"


def save(folder: str, step: int, state: dict[str, Any], keep: int = 2) -> str:
    """Write ``ckpt-<step>.pt`` atomically (temporary file, then rename); keep the newest few."""
    import torch

    path = os.path.join(folder, f"ckpt-{step:09d}.pt")
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in sorted(glob.glob(os.path.join(folder, PATTERN)))[:-keep]:
        os.remove(old)
    return path


def load_latest(folder: str) -> tuple[dict[str, Any] | None, str]:
    """The newest checkpoint that loads (a torn or corrupt file is skipped), and its path."""
    import torch

    for path in sorted(glob.glob(os.path.join(folder, PATTERN)), reverse=True):
        try:
            return torch.load(path, map_location="cpu", weights_only=False), path
        except Exception as e:
            print(f"checkpoints: skipping unreadable {os.path.basename(path)}: {e}", flush=True)
    return None, ""

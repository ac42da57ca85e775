"""Where a run came from: file hashes and the project's git state."""

from __future__ import annotations

import hashlib
import os
import subprocess
from typing import Any


def file_sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def git_state(root: str) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the git checkout at ``root`` ({} outside one)."""
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"], capture_output=True,
                                text=True, timeout=10)
        if commit.returncode != 0:
            return {}
        status = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, timeout=10)
        return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}
    except (OSError, subprocess.TimeoutExpired):
        return {}


def user_name() -> str:
    """Who is making a record: ``$KUBESAGE_USER``, else the login name."""
    import getpass

    try:
        return os.environ.get("KUBESAGE_USER") or getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container's arbitrary UID)
        return f"uid-{os.getuid()}"


def made_by(root: str) -> tuple[str, str, str]:
    """``(user, host, checkout)``: who makes a record, on which host, from which checkout (the
    project folder ``root``: ``kubesage.project.loader.project_root``)."""
    import socket

    return user_name(), socket.gethostname(), os.path.abspath(root)

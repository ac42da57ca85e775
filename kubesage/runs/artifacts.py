"""The local artifact store: one directory per run, step and output, written atomically.

A step writes into ``<name>.partial``; only when it succeeds is that renamed to ``<name>``, so a
failed or interrupted step never leaves an artifact that looks complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil

from kubesage.runs.step_user import hand_to_steps

PARTIAL = ".partial"


class ArtifactStore:
    """Artifacts under ``<root>/artifacts/<run_id>/<step>/<output>``."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(os.path.join(root, "artifacts"))

    def step_dir(self, run_id: str, step: str) -> str:
        return os.path.join(self.root, run_id, step.replace("[", "_").replace("]", ""))

    def prepare(self, run_id: str, step: str, outputs: list[str]) -> dict[str, str]:
        """Fresh ``.partial`` directories for one attempt; returns name -> partial path."""
        base = self.step_dir(run_id, step)
        paths = {}
        for name in outputs:
            partial = os.path.join(base, name + PARTIAL)
            shutil.rmtree(partial, ignore_errors=True)
            os.makedirs(partial)
            paths[name] = hand_to_steps(partial)
        return paths

    @staticmethod
    def commit(partial: str) -> str:
        """Rename a finished ``.partial`` directory to its final name."""
        final = partial[: -len(PARTIAL)]
        shutil.rmtree(final, ignore_errors=True)
        os.replace(partial, final)
        return final

    @staticmethod
    def discard(partial: str) -> None:
        shutil.rmtree(partial, ignore_errors=True)


def sha256_tree(path: str) -> str:
    """Content hash of a file or directory: relative paths and file contents, sorted."""
    digest = hashlib.sha256()
    if os.path.isfile(path):
        return _sha256_file(path)
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for fname in sorted(filenames):
            full = os.path.join(dirpath, fname)
            digest.update(os.fsencode(os.path.relpath(full, path)) + b"\0")
            digest.update(_sha256_file(full).encode())
    return digest.hexdigest()


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint_tree(path: str) -> str:
    """Cheap fingerprint of a data folder: every file's relative path, size and mtime.

    Used for data mounts (which may hold millions of files on FSx): it changes when a file is
    added, removed or rewritten, without reading file contents.
    """
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for fname in sorted(filenames):
            full = os.path.join(dirpath, fname)
            st = os.stat(full)
            # file names as the file system has them: a name that is not UTF-8 hashes too
            digest.update(os.fsencode(os.path.relpath(full, path))
                          + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()

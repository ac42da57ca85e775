"""A step's output artifacts as a person would rather look at them.

An output is a folder: where the step wrote it on this machine, else fetched by content from the
team's artifact store into the local cache. A file inside it is named by a relative path that
must stay inside the folder (``..``, absolute paths and links leading out are refused). Each
file is shown by what it is: an image as a picture, a confusion matrix as a heat map, markdown
rendered (its HTML escaped), JSON pretty-printed, text as text; every file has a download link
with its size and sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

from kubesage.runs.record import StepRecord
from kubesage.runs.workspace import Workspace

IMAGES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
          ".webp": "image/webp"}
TEXT_LIMIT = 256 * 1024  # shown inline; the rest is a download
LIST_LIMIT = 500  # files listed per output


class ArtifactRefused(Exception):
    """A path that leaves the artifact's folder, or names nothing in it."""


@dataclass
class FileEntry:
    """One file of an output folder."""

    path: str  # relative to the folder, with '/'
    size: int


def folder_of(step: StepRecord, output: str, workspace: Workspace) -> str:
    """The local folder holding ``output`` of ``step`` (fetched from the team's store if need
    be); ``ArtifactRefused`` when there is none."""
    out = step.outputs.get(output)
    if out is None:
        raise ArtifactRefused(f"step {step.name} has no output {output!r}")
    path = str(out.get("path") or "")
    if path and os.path.isdir(path):
        return path
    if out.get("uri") and out.get("sha256"):
        return workspace.artifacts.fetch(str(out["uri"]), str(out["sha256"]))
    raise ArtifactRefused(f"output {output!r} of {step.name} is not on this machine"
                          + (f" (it is at {out['uri']})" if out.get("uri") else ""))


def safe_path(folder: str, relative: str) -> str:
    """``relative`` inside ``folder``, or ``ArtifactRefused``."""
    parts = relative.replace("\\", "/").split("/")
    if relative.startswith("/") or any(p in ("..", "") for p in parts) or "\0" in relative:
        raise ArtifactRefused(f"refused: {relative!r} is not a path inside the artifact")
    root = os.path.realpath(folder)
    full = os.path.realpath(os.path.join(root, *parts))
    if os.path.commonpath([root, full]) != root:
        raise ArtifactRefused(f"refused: {relative!r} leads outside the artifact")
    if not os.path.isfile(full):
        raise ArtifactRefused(f"{relative!r} is not a file of this artifact")
    return full


def files(folder: str) -> tuple[list[FileEntry], int]:
    """The files of ``folder`` (at most ``LIST_LIMIT``), and how many there are."""
    found: list[FileEntry] = []
    total = 0
    for base, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            total += 1
            if len(found) < LIST_LIMIT:
                full = os.path.join(base, name)
                found.append(FileEntry(os.path.relpath(full, folder).replace(os.sep, "/"),
                                       os.path.getsize(full)))
    return found, total


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def confusion(doc: Any) -> dict[str, Any] | None:
    """A confusion matrix in ``doc`` (``evaluate``'s ``{"classes", "matrix"}``, or
    ``postprocess``'s ``{"rows", "columns", "matrix"}``, also under ``"confusion"``), as rows
    of cells with their share of the row; None if there is none."""
    if isinstance(doc, dict) and isinstance(doc.get("confusion"), dict):
        doc = doc["confusion"]
    if not isinstance(doc, dict) or not isinstance(doc.get("matrix"), list):
        return None
    matrix = doc["matrix"]
    if not all(isinstance(r, list) and all(isinstance(v, int | float) for v in r) for r in matrix):
        return None
    rows = [str(c) for c in doc.get("rows") or doc.get("classes") or range(len(matrix))]
    columns = [str(c) for c in doc.get("columns") or doc.get("classes") or
               range(max((len(r) for r in matrix), default=0))]
    cells = [[(v, v / (sum(r) or 1)) for v in r] for r in matrix]
    return {"rows": rows, "columns": columns, "cells": cells}


def preview(path: str) -> dict[str, Any]:
    """How to show the file at ``path``: ``{"kind": image|confusion|markdown|json|text|binary,
    ...}``."""
    ext = os.path.splitext(path)[1].lower()
    if ext in IMAGES:
        return {"kind": "image"}
    with open(path, "rb") as f:
        head = f.read(TEXT_LIMIT + 1)
    cut = len(head) > TEXT_LIMIT
    if b"\0" in head[:8192]:
        return {"kind": "binary"}
    text = head[:TEXT_LIMIT].decode("utf-8", "replace")
    if ext == ".md" and not cut:
        from markdown_it import MarkdownIt

        # commonmark with raw HTML off: any HTML in the file is shown as text
        return {"kind": "markdown", "html": MarkdownIt("commonmark", {"html": False})
                .enable("table").render(text)}
    if ext == ".json" and not cut:
        try:
            doc = json.loads(text)
        except ValueError:
            return {"kind": "text", "text": text, "cut": cut}
        return {"kind": "json", "text": json.dumps(doc, indent=2, sort_keys=True),
                "confusion": confusion(doc)}
    return {"kind": "text", "text": text, "cut": cut}

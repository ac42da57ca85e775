"""The shard format written by ``preprocess`` and read by ``train`` and ``evaluate``.

A dataset artifact holds, per split (``train``, ``val``):

- ``<split>.images.u8``: raw uint8 array, shape ``(N, H, W, C)``, C-contiguous, images in the
  (shuffled) order they are to be read, so a reader takes large contiguous slices;
- ``<split>.labels.i64``: int64 array of shape ``(N,)``, class indices;

and ``manifest.json``: ``{"format": "kubesage.shards/v1", "classes": [...], "image_size": [H, W],
"channels": C, "splits": {split: {"count", "per_class", "images_sha256", "labels_sha256"}},
"quarantined": [...], "source_fingerprint": ...}``.
"""

from __future__ import annotations

import json
import os
from typing import Any

FORMAT = "kubesage.shards/v1"


def read_manifest(folder: str) -> dict[str, Any]:
    with open(os.path.join(folder, "manifest.json")) as f:
        manifest: dict[str, Any] = json.load(f)
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{folder}: not a {FORMAT} dataset (format={manifest.get('format')})")
    return manifest


def load_split(folder: str, split: str) -> tuple[Any, Any, dict[str, Any]]:
    """Memory-map one split: (images uint8 N,H,W,C; labels int64 N; manifest)."""
    import numpy as np

    manifest = read_manifest(folder)
    count = manifest["splits"][split]["count"]
    h, w = manifest["image_size"]
    c = manifest["channels"]
    images = np.memmap(os.path.join(folder, f"{split}.images.u8"), dtype=np.uint8, mode="r",
                       shape=(count, h, w, c))
    labels = np.fromfile(os.path.join(folder, f"{split}.labels.i64"), dtype=np.int64)
    return images, labels, manifest

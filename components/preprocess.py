"""preprocess: a raw image tree (class folders) on the data mount -> uint8 shards."""

from __future__ import annotations

import hashlib
import json
import os
import random
from typing import Any

from kubesage import Dataset, Output, Resources, component

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")


def load_image(args: tuple[str, int]) -> tuple[str, Any, str]:
    """Decode, convert to RGB and resize one image; (path, array or None, problem). Shared with
    ``predict_images``, so that images are predicted as the model saw them in training."""
    import numpy as np
    from PIL import Image

    path, size = args
    try:
        with Image.open(path) as img:
            img.load()
            if img.width < 2 or img.height < 2:
                return path, None, f"degenerate size {img.width}x{img.height}"
            rgb = img.convert("RGB").resize((size, size), Image.BILINEAR)
            return path, np.asarray(rgb, dtype=np.uint8), ""
    except Exception as e:  # any decode error quarantines the file, never the step
        return path, None, f"{type(e).__name__}: {e}"


@component(
    version="1.1.0",
    mounts={"fsx": "/fsx"},
    resources=Resources(cpu=2, memory="4Gi"),
    preload=["numpy", "PIL.Image"],
)
def preprocess(
    raw_dir: str,
    data: Output[Dataset],
    image_size: int = 16,
    val_fraction: float = 0.2,
    seed: int = 0,
    subdir: str = "",
) -> None:
    """Decode every image under ``raw_dir/[subdir/]<class>/``, split train/val by class, write
    shards. ``subdir`` picks one client's folder in a per-client fan-out.

    Unreadable or degenerate images are quarantined (listed in the manifest), never fatal.
    """
    import multiprocessing

    import numpy as np

    raw_dir = os.path.join(raw_dir, subdir) if subdir else raw_dir

    classes = sorted(d for d in os.listdir(raw_dir) if os.path.isdir(os.path.join(raw_dir, d)))
    if not classes:
        raise ValueError(f"{raw_dir} has no class folders; expected {raw_dir}/<class>/<image>")
    files, misnamed = [], []
    for label, c in enumerate(classes):
        found = [f for f in sorted(os.listdir(os.path.join(raw_dir, c)))
                 if f.lower().endswith(EXTENSIONS)]
        if not found:
            raise ValueError(f"class folder {os.path.join(raw_dir, c)} has no images; add images "
                             f"or remove it (images end in {', '.join(EXTENSIONS)})")
        for f in found:
            try:
                f.encode("utf-8")
            except UnicodeEncodeError:  # a name from another system's encoding
                misnamed.append(os.path.join(c, f))
                continue
            files.append((os.path.join(raw_dir, c, f), label))
    fingerprint = hashlib.sha256()
    for path, _ in files:
        st = os.stat(path)
        fingerprint.update(f"{os.path.relpath(path, raw_dir)}:{st.st_size}\n".encode())
    print(f"preprocess: {len(files)} images in {len(classes)} classes from {raw_dir}", flush=True)
    with multiprocessing.Pool(os.cpu_count() or 1) as pool:
        decoded = []
        for i, item in enumerate(
            pool.imap(load_image, [(p, image_size) for p, _ in files], chunksize=64)
        ):
            decoded.append(item)
            if (i + 1) % 500 == 0 or i + 1 == len(files):
                print(f"preprocess: decoded {i + 1}/{len(files)}", flush=True)
    quarantined = [{"path": os.path.relpath(p, raw_dir), "problem": why}
                   for p, arr, why in decoded if arr is None]
    for q in quarantined:
        print(f"preprocess: quarantined {q['path']}: {q['problem']}; replace or remove it",
              flush=True)
    for name in misnamed:
        shown = name.encode("utf-8", "backslashreplace").decode()
        print(f"preprocess: quarantined {shown}: its name is not UTF-8; rename it", flush=True)
        quarantined.append({"path": shown, "problem": "the name is not UTF-8"})
    good = [(arr, label) for (_, arr, _), (_, label) in zip(decoded, files, strict=True) if arr is not None]
    # Deterministic stratified split: shuffle each class with the seed, cut val_fraction off.
    rng = random.Random(seed)
    splits: dict[str, list[tuple[Any, int]]] = {"train": [], "val": []}
    for label in range(len(classes)):
        members = [g for g in good if g[1] == label]
        rng.shuffle(members)
        n_val = round(len(members) * val_fraction)
        splits["val"] += members[:n_val]
        splits["train"] += members[n_val:]
    manifest: dict[str, Any] = {
        "format": "kubesage.shards/v1",
        "classes": classes,
        "image_size": [image_size, image_size],
        "channels": 3,
        "seed": seed,
        "splits": {},
        "quarantined": quarantined,
        "source_fingerprint": fingerprint.hexdigest(),
    }
    for split, items in splits.items():
        rng.shuffle(items)  # shards are written in shuffled order
        images = np.stack([a for a, _ in items]) if items else np.zeros(
            (0, image_size, image_size, 3), np.uint8)
        labels = np.array([lbl for _, lbl in items], dtype=np.int64)
        images.tofile(data.file(f"{split}.images.u8"))
        labels.tofile(data.file(f"{split}.labels.i64"))
        manifest["splits"][split] = {
            "count": len(items),
            "per_class": {c: int((labels == i).sum()) for i, c in enumerate(classes)},
            "images_sha256": hashlib.sha256(images.tobytes()).hexdigest(),
            "labels_sha256": hashlib.sha256(labels.tobytes()).hexdigest(),
        }
    with open(data.file("manifest.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    data.metadata.update(classes=len(classes), train=len(splits["train"]),
                         val=len(splits["val"]), quarantined=len(quarantined))
    print(f"preprocess: train={len(splits['train'])} val={len(splits['val'])} "
          f"quarantined={len(quarantined)}", flush=True)

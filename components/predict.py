"""predict: batch inference with a trained model over a dataset split or a folder of images.

Two entry points share one engine: ``predict`` reads a split of the shards ``preprocess`` wrote
(a dataset artifact), ``predict_images`` a folder of images on the data mount (flat, or in class
subfolders whose names are the true classes). Both write a ``predictions`` artifact:

- ``predictions.jsonl``: one line per image, sorted by ``file``:
  ``{"file", "class", "score", "top_k": [[class, score], ...], "label"}`` (``label``, the true
  class, only where it is known); scores are softmax probabilities rounded to 6 decimals;
- ``summary.json``: count, per-class counts, mean score, throughput, skipped images.

Data-parallel under torchrun: the images are cut into batches once, whatever the world size;
each rank predicts a contiguous run of whole batches, and rank 0 gathers and writes. Every image
is computed in the same batch on every layout, so ``predictions.jsonl`` is byte-identical on 1 or
N processes (on the same kind of device).

Both declare ``Serving(handler="components.classifier:load")``: the serving image answers for an
image what they write for it. On SageMaker they compile to a batch transform with that image,
between two halves of this code (``kubesage.runtime.context.BatchPhase``): ``requests`` reads the
images as here and writes them as PNG lines, ``collect`` turns the job's answers into the same
``predictions.jsonl`` and ``summary.json``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from kubesage import Dataset, Input, Metrics, Model, Output, Resources, Serving, component

PREDICTIONS_FILE = "predictions.jsonl"
SUMMARY_FILE = "summary.json"
SKIPPED_FILE = "skipped.json"  # a requests phase's unreadable images
SERVING = Serving(handler="components.classifier:load")

# (indices of a batch, the (height, width) the model expects) -> (uint8 NHWC images of those
# that could be read, their indices, [(index, problem)] of those that could not)
ReadBatch = Callable[[list[int], tuple[int, int]], tuple[Any, list[int], list[tuple[int, str]]]]


@component(version="1.1.0", resources=Resources(cpu=1, memory="4Gi"), serving=SERVING,
           preload=["torch", "torchvision", "components.models", "components.shards"])
def predict(
    model: Input[Model],
    data: Input[Dataset],
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    split: str = "val",
    top_k: int = 3,
    batch_size: int = 256,
) -> int:
    """Predict every image of ``split`` of a ``preprocess`` dataset; returns the image count.

    Files are named ``<split>/<index>`` (the index in the shard); each line carries the label.
    """
    import numpy as np

    from components.shards import load_split, read_manifest

    source = {"kind": "dataset", "split": split}
    if collecting():
        return collect(model.file("model.pt"), predictions, metrics, source=source, top_k=top_k)
    splits = sorted(read_manifest(data.path)["splits"])
    if split not in splits:
        raise ValueError(f"the dataset has no split '{split}'; use one of: {', '.join(splits)}")
    images, labels, manifest = load_split(data.path, split)
    if len(labels) == 0:
        raise ValueError(f"split '{split}' of the dataset is empty; predict another split "
                         f"({', '.join(splits)})")
    width = max(6, len(str(len(labels) - 1)))
    files = [f"{split}/{i:0{width}d}" for i in range(len(labels))]
    truth = [manifest["classes"][int(y)] for y in labels]

    have = tuple(manifest["image_size"])

    def read(batch: list[int], size: tuple[int, int]) -> tuple[Any, list[int], list[Any]]:
        if have != size:
            raise ValueError(f"the dataset's images are {have[0]}x{have[1]} but the model "
                             f"expects {size[0]}x{size[1]}; preprocess with image_size={size[0]}")
        return np.array(images[batch[0]:batch[-1] + 1]), batch, []  # a copy: writable

    return run_prediction(model.file("model.pt"), files, truth, read, predictions, metrics,
                          source=source, top_k=top_k, batch_size=batch_size)


@component(version="1.1.0", mounts={"fsx": "/fsx"}, resources=Resources(cpu=1, memory="4Gi"),
           serving=SERVING, preload=["torch", "torchvision", "components.models", "PIL.Image"])
def predict_images(
    model: Input[Model],
    images_dir: str,
    predictions: Output[Dataset],
    metrics: Output[Metrics],
    top_k: int = 3,
    batch_size: int = 256,
) -> int:
    """Predict every image under ``images_dir`` (on the data mount, e.g. ``/fsx/incoming``),
    flat or in class subfolders; returns the count predicted. Files are named by their path
    below ``images_dir``; an image in a subfolder is labelled with the subfolder's name.
    Unreadable images are skipped and listed in the summary, never fatal.
    """
    import numpy as np

    from components.preprocess import load_image

    source = {"kind": "folder", "path": images_dir}
    if collecting():
        return collect(model.file("model.pt"), predictions, metrics, source=source, top_k=top_k)
    files, truth, misnamed = list_images(images_dir)

    def read(batch: list[int], size: tuple[int, int]) -> tuple[Any, list[int], list[Any]]:
        height, width = size
        if height != width:
            raise ValueError(f"the model expects {height}x{width} images; predict_images "
                             "resizes to squares only (as preprocess does): train on squares")
        good, arrays, bad = [], [], []
        for i in batch:
            if files[i] in misnamed:
                bad.append((i, "the name is not UTF-8; rename it"))
                continue
            _, array, problem = load_image((os.path.join(images_dir, files[i]), height))
            if array is None:
                bad.append((i, problem))
            else:
                good.append(i)
                arrays.append(array)
        stacked = np.stack(arrays) if arrays else np.zeros((0, height, width, 3), np.uint8)
        return stacked, good, bad

    shown = [f.encode("utf-8", "backslashreplace").decode() for f in files]
    return run_prediction(model.file("model.pt"), shown, truth, read, predictions, metrics,
                          source=source, top_k=top_k, batch_size=batch_size)


def list_images(folder: str) -> tuple[list[str], list[str | None], set[str]]:
    """Images below ``folder`` (hidden entries skipped): (paths relative to it, sorted; the true
    class of each: its top-level subfolder, None for a file directly in ``folder``; the paths
    whose names are not UTF-8)."""
    from components.preprocess import EXTENSIONS

    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a folder; pass images_dir=<a folder of images on the "
                         "data mount>, e.g. /fsx/digits")
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in names:
            if name.lower().endswith(EXTENSIONS) and not name.startswith("."):
                found.append(os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/"))
    if not found:
        raise ValueError(f"{folder} has no images (files ending in {', '.join(EXTENSIONS)}); "
                         "put images in it, flat or in class subfolders")
    found.sort()
    misnamed = set()
    for path in found:
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            misnamed.add(path)
    truth = [path.split("/", 1)[0] if "/" in path else None for path in found]
    return found, truth, misnamed


def run_prediction(
    model_path: str,
    files: list[str],
    truth: list[str | None],
    read: ReadBatch,
    predictions: Dataset,
    metrics: Metrics,
    *,
    source: dict[str, Any],
    top_k: int,
    batch_size: int,
) -> int:
    """Predict ``files`` (read in batches by ``read``) on this rank's share, gather on rank 0,
    write ``predictions.jsonl`` and ``summary.json`` there; returns the count predicted. In a
    batch transform's ``requests`` phase, writes the images as requests instead."""
    import torch
    import torch.distributed as dist

    from components.models import load_classifier
    from kubesage.runtime.context import batch_phase, world

    if top_k < 1 or batch_size < 1:
        raise ValueError(f"top_k ({top_k}) and batch_size ({batch_size}) must be at least 1")
    me = world()
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{me.local_rank}" if cuda else "cpu")
    if not cuda:
        torch.set_num_threads(1)  # the same float results on every machine; scale out instead
    classifier = load_classifier(model_path, device)
    classes = classifier.classes
    k = min(top_k, len(classes))
    start = time.time()
    batches = [list(range(s, min(s + batch_size, len(files))))
               for s in range(0, len(files), batch_size)]
    phase = batch_phase()
    if phase is not None and phase.name == "requests":
        return write_requests(files, truth, read, batches, classifier.image_size, k, predictions)
    share = batches[me.rank * len(batches) // me.world_size:
                    (me.rank + 1) * len(batches) // me.world_size]
    rows: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = []
    with torch.no_grad():
        for batch in share:
            images, kept, bad = read(batch, classifier.image_size)
            skipped += [{"file": files[i], "problem": why} for i, why in bad]
            if not kept:
                continue
            logits = classifier.net(classifier.normalize(torch.as_tensor(images)))
            probs = torch.softmax(logits.float(), dim=1)
            probs = probs.double().cpu().numpy()
            for i, p in zip(kept, probs, strict=True):
                rows.append(prediction_row(files[i], truth[i], p, classes, k))
    if me.distributed:
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        gathered: list[Any] = [None] * me.world_size
        dist.gather_object((rows, skipped), gathered if me.is_main else None, dst=0)
        rows = [r for part, _ in gathered if part for r in part] if me.is_main else []
        skipped = [s for part in gathered if part for s in part[1]] if me.is_main else []
    if me.is_main:
        write_predictions(rows, skipped, classes, k, source, predictions, metrics,
                          seconds=time.time() - start, world_size=me.world_size, total=len(files))
    if me.distributed:
        dist.barrier()  # every rank leaves together, once rank 0 has written
    return len(rows)


def write_predictions(rows: list[dict[str, Any]], skipped: list[dict[str, str]],
                      classes: list[str], k: int, source: dict[str, Any], predictions: Dataset,
                      metrics: Metrics, *, seconds: float | None, world_size: int,
                      total: int) -> None:
    """``predictions.jsonl`` (sorted by file) and ``summary.json``, the metadata and metrics.
    ``seconds`` is None where the inference ran elsewhere (a batch transform job)."""
    from kubesage.util.atomic import write_atomic

    rows.sort(key=lambda r: r["file"])
    skipped.sort(key=lambda s: s["file"])
    if not rows:
        raise unreadable(total, skipped)
    count = len(rows)
    per_class = dict.fromkeys(classes, 0)
    for r in rows:
        per_class[r["class"]] += 1
    mean_score = round(sum(r["score"] for r in rows) / count, 6)
    rate = round(count / max(seconds, 1e-9), 1) if seconds is not None else None
    summary = {
        "count": count, "classes": classes, "per_class": per_class, "mean_score": mean_score,
        "labelled": sum(1 for r in rows if "label" in r), "top_k": k, "source": source,
        "skipped": skipped, "world_size": world_size,
        "seconds": round(seconds, 3) if seconds is not None else None, "images_per_s": rate,
    }
    # the summary is written last: a predictions artifact with a summary is complete
    write_atomic(predictions.file(PREDICTIONS_FILE), "".join(json.dumps(r) + "\n" for r in rows))
    write_atomic(predictions.file(SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
    predictions.metadata.update(count=count, mean_score=mean_score, skipped=len(skipped))
    metrics.log_metric("count", count)
    metrics.log_metric("mean_score", mean_score)
    if rate is not None:
        metrics.log_metric("images_per_s", rate)
        print(f"predict: {count} images in {seconds:.2f}s ({rate} img/s, {world_size} "
              f"process(es)), mean score {mean_score}, {len(skipped)} skipped", flush=True)
    else:
        print(f"predict: {count} answers of the batch transform, mean score {mean_score}, "
              f"{len(skipped)} skipped", flush=True)
    for s in skipped:
        print(f"predict: skipped {s['file']}: {s['problem']}", flush=True)


def unreadable(total: int, skipped: list[dict[str, str]]) -> ValueError:
    """The error when none of ``total`` images could be read."""
    first = min(skipped, key=lambda s: s["file"])
    return ValueError(f"none of the {total} images could be read (first: {first['file']}: "
                      f"{first['problem']}); fix the images")


def collecting() -> bool:
    """Whether this step is the collect half around a batch transform (``BatchPhase``)."""
    from kubesage.runtime.context import batch_phase

    phase = batch_phase()
    return phase is not None and phase.name == "collect"


def write_requests(files: list[str], truth: list[str | None], read: ReadBatch,
                   batches: list[list[int]], size: tuple[int, int], k: int,
                   predictions: Dataset) -> int:
    """The ``requests`` half: every readable image, as the model will see it (decoded and
    resized by ``read``), PNG-encoded (lossless) in ``requests.jsonl``, one line per image
    ``{"file", "label"?, "top_k", "b64"}``, sorted by file; the unreadable in ``skipped.json``."""
    import base64
    import io

    from PIL import Image

    from kubesage.runtime.context import REQUESTS_FILE
    from kubesage.util.atomic import write_atomic

    lines, skipped = [], []
    for batch in batches:
        images, kept, bad = read(batch, size)
        skipped += [{"file": files[i], "problem": why} for i, why in bad]
        for i, image in zip(kept, images, strict=True):
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            line: dict[str, Any] = {"file": files[i]}
            if truth[i] is not None:
                line["label"] = truth[i]
            line.update(top_k=k, b64=base64.b64encode(png.getvalue()).decode())
            lines.append(line)
    if not lines:
        raise unreadable(len(files), skipped)
    lines.sort(key=lambda x: x["file"])
    write_atomic(predictions.file(SKIPPED_FILE), json.dumps(skipped, indent=2) + "\n")
    write_atomic(predictions.file(REQUESTS_FILE), "".join(json.dumps(x) + "\n" for x in lines))
    print(f"predict: {len(lines)} images written as batch transform requests, "
          f"{len(skipped)} skipped", flush=True)
    return len(lines)


def collect(model_path: str, predictions: Dataset, metrics: Metrics, *,
            source: dict[str, Any], top_k: int) -> int:
    """The ``collect`` half: the batch transform's answers (one line per request, in
    ``<request file>.out``) as ``predictions.jsonl`` and ``summary.json``, exactly as a whole
    run writes them; refuses answers that do not match the requests one for one."""
    from components.models import load_classifier
    from kubesage.runtime.context import REQUESTS_FILE, batch_phase

    phase = batch_phase()
    assert phase is not None
    with open(os.path.join(phase.requests, REQUESTS_FILE)) as f:
        asked = [json.loads(line)["file"] for line in f if line.strip()]
    with open(os.path.join(phase.requests, SKIPPED_FILE)) as f:
        skipped = json.load(f)
    answers_file = os.path.join(phase.results, REQUESTS_FILE + ".out")
    if not os.path.isfile(answers_file):
        raise ValueError(f"the batch transform wrote no {REQUESTS_FILE}.out in {phase.results}; "
                         "see the transform job's log")
    rows = []
    with open(answers_file) as f:
        for n, text in enumerate(f, 1):
            if not text.strip():
                continue
            answer = json.loads(text)
            if "error" in answer or "class" not in answer:
                raise ValueError(f"answer {n} of the batch transform is not a prediction: "
                                 f"{text.strip()[:300]}")
            row = {"file": answer["file"], "class": answer["class"], "score": answer["score"],
                   "top_k": answer["top_k"]}
            if "label" in answer:
                row["label"] = answer["label"]
            rows.append(row)
    if sorted(r["file"] for r in rows) != sorted(asked):
        raise ValueError(f"the batch transform answered {len(rows)} images for {len(asked)} "
                         "requests, or other files; its answers do not match the requests")
    classes = load_classifier(model_path).classes
    write_predictions(rows, skipped, classes, min(top_k, len(classes)), source, predictions,
                      metrics, seconds=None, world_size=1, total=len(asked) + len(skipped))
    return len(rows)


def prediction_row(file: str, label: str | None, probs: Any, classes: list[str],
                   k: int) -> dict[str, Any]:
    """One JSONL line: the top ``k`` classes by probability (ties: class order), rounded."""
    import numpy as np

    order = np.argsort(-probs, kind="stable")[:k]
    top = [[classes[c], round(float(probs[c]), 6)] for c in order]
    row: dict[str, Any] = {"file": file, "class": top[0][0], "score": top[0][1], "top_k": top}
    if label is not None:
        row["label"] = label
    return row

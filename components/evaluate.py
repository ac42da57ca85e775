"""evaluate: accuracy, per-class precision/recall and a confusion matrix on the val split."""

from __future__ import annotations

import json
from typing import Any

from kubesage import Dataset, Input, Metrics, Model, Output, Resources, component


@component(version="1.0.0", resources=Resources(cpu=1, memory="4Gi"),
           preload=["torch", "torchvision", "components.models", "components.shards", "PIL.Image"])
def evaluate(
    data: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    report: Output[Dataset],
) -> float:
    """Evaluate on the validation split; returns accuracy (for conditions).

    ``report`` holds ``evaluation.json`` (SageMaker PropertyFile form:
    ``{"metrics": {"accuracy": {"value": ...}}}``), ``confusion_matrix.json`` and
    ``confusion_matrix.png``; ``metrics`` carries accuracy and per-class precision/recall.
    """
    import numpy as np
    import torch

    from components.models import load_classifier
    from components.shards import load_split

    torch.set_num_threads(1)
    images, labels, manifest = load_split(data.path, "val")
    classifier = load_classifier(model.file("model.pt"))
    classes = classifier.classes
    x_all = torch.from_numpy(np.array(images))
    preds = []
    with torch.no_grad():
        for i in range(0, len(x_all), 256):
            preds.append(classifier.net(classifier.normalize(x_all[i:i + 256])).argmax(1))
    pred = torch.cat(preds).numpy()
    k = len(classes)
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (labels, pred), 1)
    accuracy = float((pred == labels).mean())
    per_class = {}
    for i, name in enumerate(classes):
        tp = int(confusion[i, i])
        predicted, actual = int(confusion[:, i].sum()), int(confusion[i, :].sum())
        per_class[name] = {"precision": tp / predicted if predicted else 0.0,
                           "recall": tp / actual if actual else 0.0, "support": actual}
    evaluation = {"metrics": {"accuracy": {"value": accuracy}}, "per_class": per_class,
                  "count": int(len(labels))}
    with open(report.file("evaluation.json"), "w") as f:
        json.dump(evaluation, f, indent=2)
    with open(report.file("confusion_matrix.json"), "w") as f:
        json.dump({"classes": classes, "matrix": confusion.tolist()}, f)
    draw_confusion(confusion, classes, report.file("confusion_matrix.png"))
    metrics.log_metric("accuracy", accuracy)
    for name, row in per_class.items():
        metrics.log_metric(f"precision_{name}", row["precision"])
        metrics.log_metric(f"recall_{name}", row["recall"])
    print(f"evaluate: accuracy={accuracy:.4f} on {len(labels)} validation images", flush=True)
    return accuracy


def draw_confusion(matrix: Any, classes: list[str], path: str, cell: int = 44) -> None:
    """A readable confusion matrix PNG: counts in cells, shaded by row share, labelled axes."""
    from PIL import Image, ImageDraw

    k = len(classes)
    margin = 90
    size = margin + k * cell + 20
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.text((margin, 8), "predicted ->", fill="black")
    draw.text((6, margin - 28), "true", fill="black")
    for i in range(k):
        total = max(1, int(matrix[i].sum()))
        draw.text((margin + i * cell + 4, margin - 18), str(classes[i])[:6], fill="black")
        draw.text((6, margin + i * cell + cell // 3), str(classes[i])[:12], fill="black")
        for j in range(k):
            share = int(matrix[i, j]) / total
            shade = int(255 * (1 - share))
            color = (shade, shade, 255) if i == j else (255, shade, shade)
            x0, y0 = margin + j * cell, margin + i * cell
            draw.rectangle([x0, y0, x0 + cell - 1, y0 + cell - 1], fill=color, outline="grey")
            draw.text((x0 + 6, y0 + cell // 3), str(int(matrix[i, j])),
                      fill="white" if share > 0.6 else "black")
    img.save(path)

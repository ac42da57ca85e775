"""evaluate: accuracy, per-class precision/recall and a confusion matrix on the val split."""

from __future__ import annotations

import json

from kubesage import Dataset, Input, Metrics, Model, Output, Resources, component


@component(version="1.0.0", resources=Resources(cpu=1, memory="4Gi"))
def evaluate(
    data: Input[Dataset],
    model: Input[Model],
    metrics: Output[Metrics],
    report: Output[Dataset],
) -> float:
    """Evaluate on the validation split; returns accuracy (for conditions).

    ``report`` holds ``evaluation.json`` (SageMaker PropertyFile form:
    ``{"metrics": {"accuracy": {"value": ...}}}``) and ``confusion_matrix.json``.
    """
    import numpy as np
    import torch

    from components.models import build_model
    from components.shards import load_split

    torch.set_num_threads(1)
    images, labels, manifest = load_split(data.path, "val")
    saved = torch.load(model.file("model.pt"), map_location="cpu", weights_only=False)
    net = build_model(saved["arch"], len(saved["classes"]))
    net.load_state_dict(saved["state_dict"])
    net.eval()
    pre = saved["preprocessing"]
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1) * pre["scale"]
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1) * pre["scale"]
    x_all = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
    preds = []
    with torch.no_grad():
        for i in range(0, len(x_all), 256):
            preds.append(net((x_all[i:i + 256].float() - mean) / std).argmax(1))
    pred = torch.cat(preds).numpy()
    classes = saved["classes"]
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
    metrics.log_metric("accuracy", accuracy)
    print(f"evaluate: accuracy={accuracy:.4f} on {len(labels)} validation images", flush=True)
    return accuracy

"""train: a PyTorch image classifier on the shards written by ``preprocess``."""

from __future__ import annotations

import json
import os
import time

from kubesage import Dataset, Input, Metrics, Model, Output, Resources, component

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)


@component(version="1.0.0", resources=Resources(cpu=2, memory="8Gi"))
def train(
    data: Input[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    arch: str = "smallcnn",
    epochs: int = 10,
    batch_size: int = 64,
    lr: float = 0.05,
    seed: int = 0,
) -> None:
    """Train ``arch`` with SGD + cosine schedule; save weights, class names and preprocessing."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from components.models import build_model
    from components.shards import load_split

    torch.manual_seed(seed)
    torch.set_num_threads(1)  # deterministic on CPU; data parallelism scales out instead
    images, labels, manifest = load_split(data.path, "train")
    x_all = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2)
    y_all = torch.from_numpy(labels)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    net = build_model(arch, len(manifest["classes"]))
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    steps = epochs * max(1, (len(x_all) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(epochs):
        net.train()
        start, seen, correct, loss_sum = time.time(), 0, 0, 0.0
        order = torch.randperm(len(x_all), generator=gen)
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            x = (x_all[idx].float() - mean) / std
            y = y_all[idx]
            out = net(x)
            loss = F.cross_entropy(out, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            seen += len(y)
            correct += int((out.argmax(1) == y).sum())
            loss_sum += float(loss.detach()) * len(y)
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen,
               "images_per_s": seen / (time.time() - start)}
        history.append(row)
        print(f"train: epoch {epoch + 1}/{epochs} loss={row['loss']:.4f} "
              f"acc={row['accuracy']:.4f} {row['images_per_s']:.0f} img/s", flush=True)
    torch.save({
        "arch": arch,
        "state_dict": net.state_dict(),
        "classes": manifest["classes"],
        "preprocessing": {"image_size": manifest["image_size"], "channels": 3,
                          "mean": MEAN, "std": STD, "scale": 255},
    }, model.file("model.pt"))
    with open(model.file("history.json"), "w") as f:
        json.dump(history, f, indent=2)
    model.metadata.update(arch=arch, classes=manifest["classes"], epochs=epochs)
    metrics.log_metric("train_loss", history[-1]["loss"])
    metrics.log_metric("train_accuracy", history[-1]["accuracy"])
    assert os.path.exists(model.file("model.pt"))

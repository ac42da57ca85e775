"""Model architectures known to ``train``: torchvision classifiers by name and a small CNN."""

from __future__ import annotations

from typing import Any


def build_model(arch: str, num_classes: int) -> Any:
    """``smallcnn`` (tiny images, CPU friendly) or any torchvision classifier (``resnet18``)."""
    import torch.nn as nn

    if arch == "smallcnn":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
        )
    import torchvision

    try:
        return torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    except ValueError:
        known = ", ".join(sorted(torchvision.models.list_models(torchvision.models)))
        raise ValueError(f"unknown model '{arch}'; use smallcnn or one of: {known}") from None

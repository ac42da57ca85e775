"""Model architectures known to ``train``: torchvision classifiers by name and a small CNN."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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



@dataclass(frozen=True)
class Classifier:
    """A trained network ready for inference, with what it expects of its input."""

    net: Any  # in eval mode, on its device
    classes: list[str]
    image_size: tuple[int, int]  # (height, width)
    normalize: Callable[[Any], Any]  # uint8 NHWC batch -> the float NCHW input it was trained on


def load_classifier(path: str, device: Any = "cpu") -> Classifier:
    """Load a ``model.pt`` written by ``train`` (weights, class names, preprocessing)."""
    import torch

    saved = torch.load(path, map_location="cpu", weights_only=False)
    net = build_model(saved["arch"], len(saved["classes"]))
    net.load_state_dict(saved["state_dict"])
    net.to(device).eval()
    pre = saved["preprocessing"]
    mean = torch.tensor(pre["mean"], device=device).view(1, 3, 1, 1) * pre["scale"]
    std = torch.tensor(pre["std"], device=device).view(1, 3, 1, 1) * pre["scale"]

    def normalize(images: Any) -> Any:
        return (images.to(device).permute(0, 3, 1, 2).float() - mean) / std

    height, width = pre["image_size"]
    return Classifier(net, list(saved["classes"]), (int(height), int(width)), normalize)

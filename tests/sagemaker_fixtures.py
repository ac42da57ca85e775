"""Shared set-up of the SageMaker target tests: target configs written per test."""

from __future__ import annotations

import os
from typing import Any

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNFUSED = {"fusion": {"mode": "off"}}  # one step per task: how each kind of step compiles


def example_config() -> dict[str, Any]:
    """The repository's config/sagemaker.yaml as a dict."""
    with open(os.path.join(REPO, "config", "sagemaker.yaml")) as f:
        doc: dict[str, Any] = yaml.safe_load(f)
    return doc


def write_sagemaker_config(folder: str, fsx: str | None = None, store: str | None = None,
                           image_tag: str = "latest", **changes: Any) -> str:
    """A target config in ``folder`` (and its local config, when ``fsx``/``store`` are given)."""
    doc = example_config()
    doc.update(changes)
    for key, value in list(doc.items()):
        if value is None:
            del doc[key]
    with open(os.path.join(folder, "local.yaml"), "w") as f:  # its store records runs too
        yaml.safe_dump({"mounts": {"fsx": fsx or os.path.join(REPO, "data", "fsx")},
                        "store": store or os.path.join(folder, "store"), "image_tag": image_tag}, f)
    doc["local_config"] = "local.yaml"
    path = os.path.join(folder, "sagemaker.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path

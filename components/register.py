"""register: record a model that passed the bar in a model registry (a folder locally)."""

from __future__ import annotations

import json
import shutil

from kubesage import Input, Model, Output, component


@component(version="1.0.0")
def register(
    model: Input[Model],
    registered: Output[Model],
    model_name: str,
    accuracy: float,
) -> str:
    """Copy the model with a model card (name, metrics, lineage); returns the model name."""
    shutil.copytree(model.path, registered.path, dirs_exist_ok=True)
    card = {"name": model_name, "metrics": {"accuracy": accuracy},
            "source": {"path": model.path, "metadata": model.metadata}}
    with open(registered.file("model_card.json"), "w") as f:
        json.dump(card, f, indent=2)
    registered.metadata.update(name=model_name, accuracy=accuracy)
    print(f"register: {model_name} registered with accuracy {accuracy:.4f}", flush=True)
    return model_name

"""``kubesage compile --explain``: what fusion does to a pipeline on a cloud target.

Each target with fused jobs has a ``fusion`` module (``kubesage.targets.<name>.fusion``) whose
``explain(pipeline, config_path)`` says it in words and numbers (``kubesage.plan.explain``).
"""

from __future__ import annotations

import importlib
import importlib.util

from kubesage.dsl.pipeline import Pipeline


def explain_fusion(target: str, pipeline: Pipeline, config_path: str | None = None) -> str:
    """The ``--explain`` text of ``pipeline`` on ``target``."""
    module = f"kubesage.targets.{target}.fusion"
    if importlib.util.find_spec(module) is None:
        return (f"fusion on {target}: none; every step runs as it is (fusion shares jobs on the "
                "cloud targets, kfp and sagemaker)\n")
    text: str = importlib.import_module(module).explain(pipeline, config_path)
    return text

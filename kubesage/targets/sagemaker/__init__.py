"""The sagemaker target (not landed yet)."""

from __future__ import annotations

from typing import Any

from kubesage.dsl.errors import KubesageError

NAME = "sagemaker"


def _missing(*_: Any, **__: Any) -> Any:
    raise KubesageError(f"the {NAME} target has not landed yet; nothing was written or submitted")


compile_pipeline = validate_file = run_pipeline = submit = _missing

"""``Condition(a >= b)`` -> a SageMaker condition; task outputs are read with ``JsonGet``.

A task's returned value exists on SageMaker only as a file: the component's own report when the
target config names one (``components.evaluate.returns.output``: the evaluation PropertyFile), or
the result file the runtime writes for every processing step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubesage.dsl.channel import Comparison

_CONDITIONS = {
    "==": "ConditionEquals",
    "<": "ConditionLessThan",
    "<=": "ConditionLessThanOrEqualTo",
    ">": "ConditionGreaterThan",
    ">=": "ConditionGreaterThanOrEqualTo",
}


def compile_condition(comparison: Comparison, resolve: Callable[[Any], Any]) -> Any:
    """The SDK condition for ``comparison``; ``resolve`` maps channels to SDK expressions."""
    from sagemaker.core.workflow import conditions

    left = resolve(comparison.left)
    right = resolve(comparison.right)
    if comparison.op == "!=":
        return conditions.ConditionNot(expression=conditions.ConditionEquals(left=left, right=right))
    cls = getattr(conditions, _CONDITIONS[comparison.op])
    return cls(left=left, right=right)


def describe(comparison: Comparison) -> str:
    """``output 'output' of task 'evaluate' >= pipeline parameter 'threshold'``."""
    from kubesage.dsl.channel import Channel

    right = comparison.right
    text = right.describe() if isinstance(right, Channel) else repr(right)
    return f"{comparison.left.describe()} {comparison.op} {text}"

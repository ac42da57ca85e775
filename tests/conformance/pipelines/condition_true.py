"""A condition that holds: the gated step runs."""

from components.diagnostics import diag_note, diag_score
from kubesage import Condition, pipeline


@pipeline(name="conformance-condition-true")
def condition_true(value: float = 0.8, threshold: float = 0.5) -> None:
    score = diag_score(value=value)
    with Condition(score.output >= threshold):
        diag_note(message="the condition held").set_name("gated")

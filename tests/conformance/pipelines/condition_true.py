"""A condition that holds: the gated step runs."""

from kubesage import Condition, pipeline
from kubesage.testing.probes import diag_note, diag_score


@pipeline(name="conformance-condition-true")
def condition_true(value: float = 0.8, threshold: float = 0.5) -> None:
    score = diag_score(value=value)
    with Condition(score.output >= threshold):
        diag_note(message="the condition held").set_name("gated")

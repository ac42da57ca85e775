"""A condition that does not hold: the gated step is skipped."""

from kubesage import Condition, pipeline
from kubesage.testing.probes import diag_note, diag_score


@pipeline(name="conformance-condition-false")
def condition_false(value: float = 0.2, threshold: float = 0.5) -> None:
    score = diag_score(value=value)
    with Condition(score.output >= threshold):
        diag_note(message="the condition held").set_name("gated")

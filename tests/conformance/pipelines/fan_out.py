"""A literal fan-out: ParallelFor over a list literal of three items."""

from components.diagnostics import diag_shout
from kubesage import ParallelFor, pipeline


@pipeline(name="conformance-fan-out")
def fan_out() -> None:
    with ParallelFor(["red", "green", "blue"]) as colour:
        diag_shout(word=colour)

"""A literal fan-out: ParallelFor over a list literal of three items."""

from kubesage import ParallelFor, pipeline
from kubesage.testing.probes import diag_shout


@pipeline(name="conformance-fan-out")
def fan_out() -> None:
    with ParallelFor(["red", "green", "blue"]) as colour:
        diag_shout(word=colour)

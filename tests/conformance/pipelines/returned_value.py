"""A returned value read by a later step as a parameter."""

from kubesage import pipeline
from kubesage.testing.probes import diag_add


@pipeline(name="conformance-returned-value")
def returned_value(start: int = 40) -> None:
    first = diag_add(value=start, amount=1).set_name("first")
    diag_add(value=first.output, amount=1).set_name("second")

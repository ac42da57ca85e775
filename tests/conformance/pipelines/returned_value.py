"""A returned value read by a later step as a parameter."""

from components.diagnostics import diag_add
from kubesage import pipeline


@pipeline(name="conformance-returned-value")
def returned_value(start: int = 40) -> None:
    first = diag_add(value=start, amount=1).set_name("first")
    diag_add(value=first.output, amount=1).set_name("second")

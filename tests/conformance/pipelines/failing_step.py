"""A failing step: the run fails and the step after it is not run."""

from kubesage import pipeline
from kubesage.testing.probes import diag_fail, diag_note


@pipeline(name="conformance-failing-step")
def failing_step() -> None:
    first = diag_note(message="before the failure").set_name("first")
    bad = diag_fail(reason=first.output).set_name("bad")
    diag_note(message=bad.output).set_name("after-bad")

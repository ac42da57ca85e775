"""Retries: a step fails its first attempt and succeeds on the second (declared retries=1)."""

from components.diagnostics import diag_flaky
from kubesage import pipeline


@pipeline(name="conformance-retries")
def retries() -> None:
    diag_flaky(marker="flaky")

"""Retries: a step fails its first attempt and succeeds on the second (declared retries=1)."""

from kubesage import pipeline
from kubesage.testing.probes import diag_flaky


@pipeline(name="conformance-retries")
def retries() -> None:
    diag_flaky(marker="flaky")

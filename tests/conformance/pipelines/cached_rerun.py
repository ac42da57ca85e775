"""A cached re-run: the harness runs this twice on one store; the second run is all cached."""

from kubesage import pipeline
from kubesage.testing.probes import diag_count_lines, diag_write_lines


@pipeline(name="conformance-cached-rerun")
def cached_rerun(lines: int = 3) -> None:
    written = diag_write_lines(lines=lines)
    diag_count_lines(data=written.outputs["data"])

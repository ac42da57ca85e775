"""A cached re-run: the harness runs this twice on one store; the second run is all cached."""

from components.diagnostics import diag_count_lines, diag_write_lines
from kubesage import pipeline


@pipeline(name="conformance-cached-rerun")
def cached_rerun(lines: int = 3) -> None:
    written = diag_write_lines(lines=lines)
    diag_count_lines(data=written.outputs["data"])

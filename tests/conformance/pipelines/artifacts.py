"""Artifacts of every type (Artifact, Dataset, Model, Metrics) with metadata, made and read."""

from components.diagnostics import diag_make_artifacts, diag_read_artifacts
from kubesage import pipeline


@pipeline(name="conformance-artifacts")
def artifacts(rows: int = 4) -> None:
    made = diag_make_artifacts(rows=rows)
    diag_read_artifacts(artifact=made.outputs["artifact"], dataset=made.outputs["dataset"],
                        model=made.outputs["model"], metrics=made.outputs["metrics"], rows=rows)

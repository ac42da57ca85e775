"""Artifacts of every type (Artifact, Dataset, Model, Metrics) with metadata, made and read."""

from kubesage import pipeline
from kubesage.testing.probes import diag_make_artifacts, diag_read_artifacts


@pipeline(name="conformance-artifacts")
def artifacts(rows: int = 4) -> None:
    made = diag_make_artifacts(rows=rows)
    diag_read_artifacts(artifact=made.outputs["artifact"], dataset=made.outputs["dataset"],
                        model=made.outputs["model"], metrics=made.outputs["metrics"], rows=rows)

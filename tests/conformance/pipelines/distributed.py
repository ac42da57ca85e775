"""A two-node distributed step (one process a node): gloo all_reduce of rank + 1."""

from kubesage import pipeline
from kubesage.testing.probes import diag_allreduce


@pipeline(name="conformance-distributed")
def distributed() -> None:
    diag_allreduce()  # Distribution(nodes=2, procs_per_node=1) is the component's own

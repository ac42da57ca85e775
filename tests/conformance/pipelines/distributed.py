"""A two-node distributed step (one process a node): gloo all_reduce of rank + 1."""

from components.diagnostics import diag_allreduce
from kubesage import pipeline


@pipeline(name="conformance-distributed")
def distributed() -> None:
    diag_allreduce()  # Distribution(nodes=2, procs_per_node=1) is the component's own

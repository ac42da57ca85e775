"""Pipelines that break a service limit (tests/test_sagemaker_limits.py)."""

from components.preprocess import preprocess
from components.train import train
from kubesage import pipeline


@pipeline(name="crowded-nodes")
def crowded_nodes() -> None:
    """4 nodes x 8 processes: 8 processes per node want 8 GPUs per instance."""
    prep = preprocess(raw_dir="/fsx/digits")
    train(data=prep.outputs["data"]).set_distribution(4, 8)


@pipeline(name="gpu-on-cpu")
def gpu_on_cpu() -> None:
    """train wants a GPU per process; the config gives it a CPU instance type."""
    prep = preprocess(raw_dir="/fsx/digits")
    train(data=prep.outputs["data"])

"""kubesage: write ML pipeline components once, run them locally, on Kubeflow or on SageMaker."""

from typing import Any

from kubesage.dsl import *  # noqa: F403
from kubesage.dsl import Component
from kubesage.dsl import __all__ as _dsl_all

__all__ = [*_dsl_all, "load_kfp_component"]


def load_kfp_component(path: str, version: str = "0.1.0") -> Component[..., Any]:
    """A component from a Kubeflow component YAML file, to call in any kubesage pipeline.

    Both forms teams share load: the v1 ``implementation: container:`` file and the v2 file the
    kfp compiler writes. It runs its own image and command on every target.
    """
    from kubesage.targets.kfp.component_yaml import import_component

    return import_component(path, version)

__version__ = "0.1.0"

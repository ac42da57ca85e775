"""kubesage: write ML pipeline components once, run them locally, on Kubeflow or on SageMaker."""

from kubesage.dsl import *  # noqa: F403
from kubesage.dsl import __all__ as __all__

__version__ = "0.1.0"

"""Targets: the places a pipeline runs. ``base`` defines the ``Target`` interface and the
registry; each target is a package beside it (``local``, ``kfp``,
``sagemaker``). Nothing outside a target imports its SDK.
"""

from kubesage.targets.base import (
    DeployOptions,
    RunOptions,
    SubmitOptions,
    Target,
    Unsupported,
    Workspace,
    for_file,
    get,
    names,
    register,
)

__all__ = ["DeployOptions", "RunOptions", "SubmitOptions", "Target", "Unsupported", "Workspace",
           "for_file", "get", "names", "register"]

"""Deploys, recorded: which models (and the runs that made them) an endpoint serves, who
deployed them and when, so lineage leads from an endpoint back to its runs."""

from __future__ import annotations

from typing import Any, Protocol

from kubesage.runs.lineage import user_name
from kubesage.runs.options import DeployOptions
from kubesage.runs.workspace import Workspace


class Deploys(Protocol):
    """What recording a deploy needs of its target."""

    @property
    def name(self) -> str: ...

    def deploy(self, models: dict[str, str], options: DeployOptions) -> dict[str, Any]: ...


def deploy(workspace: Workspace, target: Deploys, models: dict[str, str],
           options: DeployOptions) -> dict[str, Any]:
    """Serve ``models`` (name -> model reference) with ``target``, then record the deploy in the
    workspace's store: the endpoint, the models and the runs they came from."""
    result = target.deploy(models, options)
    runs = {}
    for name, ref in models.items():
        run_id = ref.partition(":")[0]
        try:
            runs[name] = workspace.store.get(run_id).run_id
        except KeyError:  # a folder or an s3:// model: no run of this store made it
            continue
    workspace.store.save_deploy(options.name, target.name, user_name(),
                                {"models": models, "runs": runs, "result": result})
    return result

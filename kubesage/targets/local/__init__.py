"""The local target: each step in a Docker container (or a local process) on this machine.

Modules, one concern each: ``config`` (config/local.yaml), ``runner`` (a run's parts),
``scheduler`` (dependency order, parallelism, conditions), ``step`` (values, inputs, cache
key), ``attempts`` (retries, logs, committing outputs), ``warm_start`` (containers started
ahead of their turn), ``docker_executor`` and ``process_executor`` (where a step attempt runs),
``container_step`` (imported Kubeflow container components).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from kubesage.targets.base import RunOptions, Target

if TYPE_CHECKING:
    from kubesage.config.local import LocalConfig
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.record import RunRecord


class LocalTarget(Target):
    """Runs pipelines on this machine; nothing to compile or submit."""

    name = "local"
    description = "each step in a Docker container (or a process) on this machine"
    contracts = ("local",)
    runners = ("docker", "subprocess")
    honours = frozenset({"runner", "tags", "use_cache", "images", "rerun_of", "resume_from",
                         "inputs"})

    def load_config(self, path: str | None = None) -> LocalConfig:
        from kubesage.config.local import load_local_config

        return load_local_config(path)

    def local_config(self, config_path: str | None = None) -> LocalConfig:
        return self.load_config(config_path)

    def run(self, pipeline: Pipeline, options: RunOptions) -> RunRecord:
        from kubesage.project.loader import project_root
        from kubesage.targets.local.runner import runner_for

        self.check(pipeline, options)
        root = project_root(options.pipeline_file or os.getcwd())
        runner = runner_for(options.runner or "docker", self.load_config(options.config), root,
                            log=options.out())
        return runner.run(pipeline, options)


TARGET = LocalTarget()

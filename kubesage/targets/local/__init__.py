"""The local target: each step in a Docker container (or a local process) on this machine.

Modules, one concern each: ``runner`` (a run's execution), ``scheduler`` (dependency order,
parallelism, conditions), ``step`` (values, inputs, cache key), ``attempts`` (retries, logs,
committing outputs), ``warm_start`` (containers started ahead of their turn),
``docker_executor`` and ``process_executor`` (where a step attempt runs), ``container_step``
(imported Kubeflow container components). Its config is the local config
(``kubesage.config.local``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kubesage.targets.base import RunOptions, Target, Unsupported

if TYPE_CHECKING:
    from kubesage.dsl.pipeline import Pipeline
    from kubesage.runs.launch import Images, RunSetup
    from kubesage.runs.record import RunRecord
    from kubesage.targets.local.executor import Executor
    from kubesage.targets.local.runner import LocalRun


class LocalTarget(Target):
    """Runs pipelines on this machine; nothing to compile or submit.

    ``executor`` and ``root``: a runner's own executor and project, kept for every run (by
    default each run gets the executor ``--runner`` names, for the pipeline file's project).
    """

    name = "local"
    description = "each step in a Docker container (or a process) on this machine"
    contracts = ("local",)
    runners = ("docker", "subprocess")
    honours = frozenset({"runner", "tags", "use_cache", "images", "rerun_of", "resume_from",
                         "inputs"})

    def __init__(self, executor: Executor | None = None, root: str | None = None) -> None:
        self.executor = executor
        self.root = root

    def check(self, pipeline: Pipeline, options: RunOptions) -> None:
        super().check(pipeline, options)
        foreign = sorted({t.spec.name for t in pipeline.tasks if t.spec.container})
        if foreign and _kind(options) != "docker":
            raise Unsupported(
                f"{', '.join(foreign)}: container components (imported Kubeflow YAML) run their "
                f"own image, which the {_kind(options)} runner cannot do; use --runner docker")

    def images(self, setup: RunSetup) -> Images:
        """Images on the Docker engine; for the subprocess runner, the project's code."""
        if self.root is not None:
            setup.root = self.root
        if _kind(setup.options) == "subprocess":
            from kubesage.targets.local.process_executor import ProcessExecutor

            return ProcessExecutor(setup.root, setup.local.gpus)
        return super().images(setup)

    def prepare(self, setup: RunSetup) -> LocalRun:
        from kubesage.targets.local.runner import LocalRun, make_executor

        executor = self.executor or make_executor(_kind(setup.options), setup.local, setup.root)
        return LocalRun(setup, executor)

    def pins(self, record: RunRecord, pipeline_file: str) -> dict[str, str]:
        """A subprocess run pins nothing (its steps run the working tree): refused when the
        code changed since; a Docker run pins the image IDs it ran."""
        if record.runner == "subprocess":
            from kubesage.project.loader import project_root
            from kubesage.targets.local.process_executor import ProcessExecutor

            return ProcessExecutor(project_root(pipeline_file)).pins(record.images)
        return super().pins(record, pipeline_file)


def _kind(options: RunOptions) -> str:
    return options.runner or "docker"


TARGET = LocalTarget()

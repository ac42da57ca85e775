"""``kubesage submit --target kfp``: start runs on a Kubeflow Pipelines API through kfp.Client.

The host, namespace, experiment and service account come from the target config; the
environment overrides them for one shell (``KFP_HOST``, ``KFP_NAMESPACE``, ``KFP_EXPERIMENT``,
``KFP_RUN_NAME``, and ``KFP_TOKEN`` for a bearer token). A ``.py`` pipeline is compiled on the fly
(parameters checked against the pipeline); a ``.yaml`` is validated first (parameters checked
against its declared inputs). Each run started becomes a run record
(``kubesage.runs.submitted``); ``runs`` reads them back and retries failed ones.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any, TextIO

from kubesage.docker_engine.images import check_pushed
from kubesage.dsl.errors import ParameterError
from kubesage.dsl.pipeline import typed_values
from kubesage.runs.submitted import Submission, SubmissionError
from kubesage.targets.kfp.components import IR_PARAMETER_TYPES
from kubesage.targets.kfp.config import KfpConfig


class SubmitError(SubmissionError):
    """A run could not be submitted (``submission``: what was started before the failure)."""


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom runs are submitted."""

    host: str
    namespace: str
    experiment: str
    service_account: str
    run_name: str
    token: str | None


def endpoint(config: KfpConfig, pipeline_name: str) -> Endpoint:
    """The config's API settings with the environment's overrides applied."""
    host = os.environ.get("KFP_HOST") or config.host
    if not host:
        raise SubmitError(f"no Kubeflow Pipelines host: set 'host' in {config.source} or KFP_HOST "
                          "(e.g. http://localhost:8080 after kubectl port-forward)")
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Endpoint(
        host=host.rstrip("/"),
        namespace=os.environ.get("KFP_NAMESPACE") or config.namespace,
        experiment=os.environ.get("KFP_EXPERIMENT") or config.experiment,
        service_account=config.service_account,
        run_name=os.environ.get("KFP_RUN_NAME") or f"{pipeline_name}-{stamp}",
        token=os.environ.get("KFP_TOKEN") or None,
    )


def declared_parameters(path: str) -> tuple[str, dict[str, str]]:
    """(pipeline name, parameter name -> kubesage type) of a compiled pipeline YAML."""
    import yaml

    with open(path) as f:
        doc = next(yaml.safe_load_all(f))
    params = doc.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    return doc["pipelineInfo"]["name"], {n: IR_PARAMETER_TYPES.get(p.get("parameterType", ""), "str")
                                         for n, p in params.items()}


def images_of(path: str) -> list[str]:
    """Every image a compiled pipeline YAML runs."""
    import yaml

    with open(path) as f:
        doc = next(yaml.safe_load_all(f))
    return sorted({e["container"]["image"] for e in doc.get("deploymentSpec", {})
                   .get("executors", {}).values() if "container" in e})


def typed_arguments(path: str, given: dict[str, Any]) -> dict[str, Any]:
    """Command-line values checked against the compiled pipeline's declared parameters."""
    name, declared = declared_parameters(path)
    return typed_values(name, declared, given)


def _per_client(arguments: dict[str, Any], declared: dict[str, str],
                clients: list[str] | None) -> list[tuple[str, dict[str, Any]]]:
    if not clients:
        return [("", arguments)]
    if declared.get("client") == "str":
        return [(c, {**arguments, "client": c}) for c in clients]
    if declared.get("clients") == "list":
        return [(c, {**arguments, "clients": [c]}) for c in clients]
    raise ParameterError("--clients starts one run per client, so the pipeline needs a 'client' "
                         "(str) or 'clients' (list) parameter; this one has neither")


def submit(ref: str, params: dict[str, Any], config: KfpConfig,
           clients: list[str] | None = None,
           out: TextIO | None = None) -> tuple[dict[str, Any], Submission]:
    """Submit ``ref`` (a ``.py`` pipeline or a compiled ``.yaml``) under ``config``; what was
    started, and the submission as its run records keep it. A failure part-way raises a
    ``SubmitError`` whose ``submission`` holds the runs already started."""
    log = out or sys.stderr
    with tempfile.TemporaryDirectory(prefix="kubesage-kfp-") as tmp:
        path = ref.partition(":")[0]
        pipeline_hash, secrets = "", []
        if path.endswith(".py"):
            from kubesage.docker_engine.images import content_refs
            from kubesage.project.loader import load_pipeline, project_root
            from kubesage.targets.kfp.compiler import compile_to_file

            pipeline = load_pipeline(ref)[0].build()
            pipeline_hash = pipeline.digest()
            secrets = [p.name for p in pipeline.parameters if p.type == "secret"]
            arguments = pipeline.resolve_parameters(params)
            refs = content_refs(project_root(path), {t.spec.image for t in pipeline.tasks})
            package = compile_to_file(pipeline, os.path.join(tmp, f"{pipeline.name}.yaml"),
                                      config.with_content_tags(refs))
        elif path.endswith((".yaml", ".yml")):
            from kubesage.targets.kfp.validate import validate_file

            validate_file(path)
            package = path
            arguments = typed_arguments(path, params)
        else:
            raise SubmitError(f"{ref}: expected a pipeline (.py) or a compiled Kubeflow pipeline "
                              "(.yaml)")
        digests = check_pushed(images_of(package))
        name, declared = declared_parameters(package)
        with open(package) as f:
            text = f.read()
        where = endpoint(config, name)
        sub = Submission(
            target="kfp", pipeline=name, compiled_text=text, compiled_name=f"{name}.yaml",
            pipeline_file=path if pipeline_hash else "",
            pipeline_hash=pipeline_hash or hashlib.sha256(text.encode()).hexdigest(),
            images=digests, steps=executor_tasks(package),
            config=config.source if os.path.isfile(config.source) else "", secrets=secrets)
        client = _client(where)
        runs: list[dict[str, Any]] = []
        for client_name, args in _per_client(arguments, declared, clients):
            run_name = f"{where.run_name}-{client_name}" if client_name else where.run_name
            try:
                with contextlib.redirect_stdout(log):  # kfp.Client prints links on stdout
                    result = client.create_run_from_pipeline_package(
                        package, arguments=args, run_name=run_name,
                        experiment_name=where.experiment, namespace=where.namespace,
                        service_account=where.service_account or None)
            except Exception as e:  # kfp_server_api raises ApiException, urllib3 its own errors
                started = "".join(f"; already started: {r['run_name']} {r['url']}" for r in runs)
                error = SubmitError(f"submitting {run_name} to {where.host} failed: {_short(e)}"
                                    f"{started}")
                error.submission = sub
                raise error from None
            runs.append({"run_id": result.run_id, "run_name": run_name, "arguments": args,
                         "url": f"{where.host}/#/runs/details/{result.run_id}"})
            remote = {"service": "kfp", "host": where.host, "namespace": where.namespace,
                      "run_id": result.run_id, "url": runs[-1]["url"]}
            if client_name:
                remote.update(client=client_name,
                              client_parameter="client" if "client" in args else "clients")
            sub.executions.append((remote, args))
            print(f"submitted {run_name}: {runs[-1]['url']}", file=log, flush=True)
    return {"target": "kfp", "host": where.host, "namespace": where.namespace,
            "experiment": where.experiment, "pipeline": name, "runs": runs}, sub


def executor_tasks(path: str) -> list[tuple[str, str]]:
    """(task name, component name) of every task of a compiled pipeline that runs a container,
    inside loops and conditions too, each after the tasks it depends on."""
    import yaml

    with open(path) as f:
        doc = next(yaml.safe_load_all(f))
    components = doc.get("components", {})
    found: list[tuple[str, str]] = []

    def walk(dag: dict[str, Any]) -> None:
        tasks: dict[str, Any] = dag.get("tasks", {})  # each after the tasks it needs
        done: set[str] = set()
        ordered: list[str] = []
        while len(ordered) < len(tasks):
            ready = [n for n in sorted(tasks) if n not in done and
                     set(tasks[n].get("dependentTasks", [])) & set(tasks) <= done] or \
                [n for n in sorted(tasks) if n not in done]
            ordered.append(ready[0])
            done.add(ready[0])
        for task_name in ordered:
            task = tasks[task_name]
            ref = task.get("componentRef", {}).get("name", "")
            inner = components.get(ref, {}).get("dag")
            if inner is not None:
                walk(inner)
            else:
                found.append((task_name, ref.removeprefix("comp-")))

    walk(doc.get("root", {}).get("dag", {}))
    from kubesage.targets.kfp.fused import compiled_members

    fused = compiled_members(doc)  # a fused task's members are the record's steps
    return [(member, component) for name, component in found
            for member in fused.get(name, [name])]


def _client(where: Endpoint) -> Any:
    import kfp

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2+"
            return kfp.Client(host=where.host, namespace=where.namespace, existing_token=where.token)
    except Exception as e:
        raise SubmitError(f"cannot reach Kubeflow Pipelines at {where.host}: {_short(e)}") from None


def _short(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"

"""``kubesage submit``, ``deploy`` and ``serve``: runs on a service, and models behind an
endpoint (a service's, or one on loopback here)."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import Any

from kubesage.cli.common import EXIT_FAILED, pairs, print_record, say, track, workspace
from kubesage.dsl.errors import KubesageError
from kubesage.runs.deploys import deploy
from kubesage.runs.submitted import deployable
from kubesage.targets import base as targets


def cmd_submit(args: argparse.Namespace) -> int:
    clients = [c for c in args.clients.split(",") if c] if args.clients else None
    target = targets.get(args.target)
    ws = workspace(args.config, args.target)
    wait = args.wait or bool(args.deploy)  # a deploy waits for the models
    result = target.submit(args.pipeline, targets.SubmitOptions(
        params=pairs(args.param, "--param"), config=args.config, wait=wait, clients=clients,
        tags=pairs(args.tag, "--tag")), ws)
    records = [ws.store.get(started["kubesage_run_id"]) for started in
               result.get("executions", result.get("runs", []))] if wait else []
    if args.deploy:
        result["deployment"] = _deploy_runs(ws, target, records, args)
    print(json.dumps(result, indent=2, default=str))
    code = 0
    for record in records:
        track(ws, record)  # ended: to MLflow, as a local run
        with contextlib.redirect_stdout(sys.stderr):  # stdout stays the JSON
            print_record(record.to_dict())
        code = max(code, 0 if record.status == "succeeded" else EXIT_FAILED)
    return code


def _deploy_runs(ws: targets.Workspace, target: targets.Target, records: list[Any],
                 args: argparse.Namespace) -> dict[str, Any]:
    """Serve the model of each run that succeeded whole behind endpoint ``args.deploy``, one
    model per client; the others are named, not served."""
    models, skipped = deployable(records)
    for name, why in skipped.items():
        say(f"not deployed: {name}: {why}")
    if not models:
        return {"deployed": [], "not_deployed": skipped}
    done = deploy(ws, target, models, targets.DeployOptions(
        name=args.deploy, config=args.config, per_client=bool(args.clients)))
    done["not_deployed"] = skipped
    say(f"deployed {', '.join(sorted(models))} to {args.deploy}")
    return done


def cmd_deploy(args: argparse.Namespace) -> int:
    refs = dict(pairs(args.model, "--model"))
    if args.model_ref:
        refs.setdefault(args.name, args.model_ref)
    if not refs:
        raise KubesageError("name a model: kubesage deploy MODEL_REF, or --model CLIENT=MODEL_REF "
                            "for each client")
    result = deploy(workspace(args.config, args.target), targets.get(args.target), refs,
                    targets.DeployOptions(name=args.name, config=args.config, output=args.output,
                                          apply=args.apply, per_client=args.per_client,
                                          replace=args.replace))
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from kubesage.docker_engine.images import ensure_fresh
    from kubesage.project.loader import project_root
    from kubesage.serving.local import IMAGE, model_folder, serve

    refs = dict(pairs(args.model, "--model"))
    if args.model_ref:
        refs.setdefault("default" if refs else "model", args.model_ref)
    if not refs:
        raise KubesageError("name a model: kubesage serve MODEL_REF, or --model NAME=MODEL_REF "
                            "(a folder, RUN_ID:step/output or RUN_ID)")
    ws = workspace(args.config)
    folders = {name: model_folder(ref, ws.store) for name, ref in refs.items()}
    ensure_fresh(project_root(os.getcwd()), {IMAGE}, ws.local.image_tag, say)
    serve(folders, ws.local.image(IMAGE), args.port, say, args.max_models)
    return 0


def add_parsers(sub: Any) -> None:
    submit = sub.add_parser("submit", help="submit a pipeline or compiled file to a target")
    submit.add_argument("pipeline", help="pipeline file (.py) or compiled artifact")
    submit.add_argument("--target", required=True, help=", ".join(targets.names()))
    submit.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    submit.add_argument("--config", help="target config (default: config/<target>.yaml)")
    submit.add_argument("--clients", help="comma-separated clients: one execution each")
    submit.add_argument("--wait", action="store_true", help="stream status until the run ends")
    submit.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                        help="label the runs (kubesage runs list --tag filters on it)")
    submit.add_argument("--deploy", metavar="ENDPOINT",
                        help="wait, then serve each run's model behind ENDPOINT (per client: "
                             "that client's model, the endpoint's other clients kept)")
    submit.set_defaults(func=cmd_submit)
    _add_serve(sub)
    _add_deploy(sub)


def _add_serve(sub: Any) -> None:
    srv = sub.add_parser("serve", help="serve models over HTTP on loopback (SageMaker's contract "
                         "and KServe's v2 protocol), in the serving image")
    srv.add_argument("model_ref", nargs="?", metavar="MODEL_REF",
                     help="a model folder, RUN_ID:step/output or RUN_ID (its model output)")
    srv.add_argument("--model", action="append", default=[], metavar="NAME=MODEL_REF",
                     help="serve several models, each under its own name (one per client)")
    srv.add_argument("--port", type=int, default=8080)
    srv.add_argument("--max-models", type=int, default=8,
                     help="models loaded at once; the least recently used is unloaded")
    srv.add_argument("--config", help="local target config (default: config/local.yaml)")
    srv.set_defaults(func=cmd_serve)


def _add_deploy(sub: Any) -> None:
    dep = sub.add_parser("deploy", help="serve trained models behind an endpoint: SageMaker "
                         "(model, endpoint config, endpoint) or a KServe InferenceService")
    dep.add_argument("model_ref", nargs="?", metavar="MODEL_REF",
                     help="sagemaker: a model folder, RUN_ID:step/output, RUN_ID (a local or "
                          "submitted run) or s3://.../model.tar.gz; kfp: the model's URI the "
                          "cluster reads (s3://, gs://, pvc://claim/path)")
    dep.add_argument("--model", action="append", default=[], metavar="CLIENT=MODEL_REF",
                     help="one model per client (SageMaker: a multi-model endpoint)")
    dep.add_argument("--target", required=True, help=", ".join(targets.names()))
    dep.add_argument("--name", required=True, help="the endpoint / InferenceService name")
    dep.add_argument("--config", help="target config (default: config/<target>.yaml)")
    dep.add_argument("-o", "--output", help="kfp: where to write the InferenceService manifest")
    dep.add_argument("--apply", action="store_true", help="kfp: kubectl apply the manifest")
    dep.add_argument("--per-client", action="store_true",
                     help="one model per client even for one (a multi-model endpoint; an "
                          "InferenceService named NAME-CLIENT)")
    dep.add_argument("--replace", action="store_true",
                     help="sagemaker: serve only these models, dropping the endpoint's others "
                          "(by default a multi-model endpoint keeps the clients not named)")
    dep.set_defaults(func=cmd_deploy)

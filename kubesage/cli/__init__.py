"""The ``kubesage`` command line: parse, call, print.

Exit codes: 0 done (a run succeeded); 1 a run failed; 2 an error in what was given (pipeline,
config, parameter, file), named on stderr; 3 a target refuses an option or feature it cannot
honour; 128+N stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from typing import TYPE_CHECKING, Any

from kubesage.dsl.errors import KubesageError
from kubesage.targets import base as targets

if TYPE_CHECKING:
    from kubesage.runs.store import RunStore

EXIT_FAILED, EXIT_ERROR, EXIT_REFUSED = 1, 2, 3


def _pairs(pairs: list[str], flag: str) -> dict[str, str]:
    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise KubesageError(f"{flag} {pair!r}: write it as name=value")
        out[name] = value
    return out


def _params(pairs: list[str]) -> dict[str, str]:
    return _pairs(pairs, "--param")


def _emit(record: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps(record.to_dict(), indent=2))
    else:
        _print_record(record.to_dict())
    return 0 if record.status == "succeeded" else 1


def _store(config_path: str | None, target: str = "local") -> RunStore:
    """The run store of ``target``'s local config, after marking runs whose process died
    (SIGKILL, power loss) abandoned and removing their containers."""
    from kubesage.runs.store import RunStore
    from kubesage.runs.sweep import sweep

    store = RunStore(targets.get(target).local_config(config_path).store)
    sweep(store, say=lambda text: print(text, file=sys.stderr))
    return store


def _track(record: Any, target: str, config_path: str | None) -> None:
    """Hand the run to MLflow in the background (never slows or fails the run)."""
    from kubesage.tracking.experiments import log_in_background

    config = targets.get(target).local_config(config_path)
    log_in_background(config.store, config.tracking_uri, record.run_id)


def cmd_compare(args: argparse.Namespace) -> int:
    from kubesage.tracking.compare import plot, table

    store = _store(args.config)
    records = []
    for run_id in args.run_ids:
        try:
            records.append(store.get(run_id))
        except KeyError:
            raise KubesageError(f"no run '{run_id}'; 'kubesage runs list' shows them") from None
    print(table(records))
    try:
        drawn = plot(records, args.output)
    except ValueError as e:  # runs without curves (a service's runs) still compare by metrics
        print(f"\nno plot: {e}")
        return 0
    print(f"\nlearning curves ({', '.join(drawn)}): {args.output}")
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    from kubesage.config.local import load_local_config
    from kubesage.runs.store import RunStore
    from kubesage.runtime.context import mlflow_store_lock
    from kubesage.tracking.experiments import log_run

    config = load_local_config(args.config)
    store = RunStore(config.store)
    for run_id in args.run_ids:
        with mlflow_store_lock(config.tracking_uri):
            mlflow_id = log_run(store.get(run_id), config.tracking_uri)
        print(f"{run_id} -> MLflow run {mlflow_id} ({config.tracking_uri})")
    return 0


def cmd_components(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from kubesage.catalog import Catalog

    if args.components_command == "export":
        return _export_component(args)
    catalog = Catalog(args.catalog)
    if args.components_command == "publish":
        component = _component_from(args.component, args.version)
        image = args.image or _local_image_id(component.spec.image)
        entry = catalog.publish(component, image, args.publisher)
        print(f"published {entry.name}@{entry.version} ({entry.image[:19]}) to {catalog.location}")
        return 0
    if args.components_command == "list":
        entries = catalog.list()
        if args.json:
            print(json.dumps([asdict(e) for e in entries], indent=2))
            return 0
        for e in entries:
            summary = e.description.splitlines()[0] if e.description else ""
            print(f"{e.name + '@' + e.version:32} {e.image[:19]:20} {summary}")
        return 0
    name, _, version = args.ref.partition("@")
    versions = catalog.versions(name)
    entry = catalog.get(name, version or (versions[-1] if versions else "0.0.0"))
    if args.json:
        print(json.dumps(asdict(entry), indent=2))
    else:
        print(f"{entry.name}@{entry.version}  image {entry.image}\n  published by "
              f"{entry.publisher}; versions: {', '.join(catalog.versions(name))}\n")
        print(entry.description)
        spec = entry.spec
        for p in spec.parameters:
            print(f"  param  {p.name}: {p.type}" + ("" if p.required else f" = {p.default!r}"))
        for a in spec.inputs:
            print(f"  input  {a.name}: {a.type}")
        for o in list(spec.outputs) + list(spec.returns):
            print(f"  output {o.name}: {o.type}")
        if spec.container is not None:
            print(f"  runs   {' '.join([*spec.container.command, *spec.container.args])[:200]}")
    return 0


def _export_component(args: argparse.Namespace) -> int:
    from kubesage.catalog import Catalog
    from kubesage.targets.kfp import export_component

    if ":" in args.ref:
        spec = _component_from(args.ref).spec
    else:
        catalog = Catalog(args.catalog)
        name, _, version = args.ref.partition("@")
        versions = catalog.versions(name)
        spec = catalog.get(name, version or (versions[-1] if versions else "0.0.0")).spec
    export_component(spec, args.output, args.config)
    print(f"{args.output}: {spec.name}@{spec.version} as a Kubeflow component")
    return 0


def _component_from(ref: str, version: str | None = None) -> Any:
    """``path/to/file.py:name`` -> the component object it defines; ``FILE.yaml`` -> imported."""

    from kubesage.dsl.component import Component
    from kubesage.project.loader import import_file, project_root

    if ref.endswith((".yaml", ".yml")):
        from kubesage import load_kfp_component

        if not version:
            raise KubesageError(f"{ref}: a Kubeflow component YAML has no version; pass --version X.Y.Z")
        return load_kfp_component(ref, version)
    if version:
        raise KubesageError(f"{ref}: --version is for Kubeflow component YAML; a kubesage "
                            "component declares its version in @component(version=...)")
    path, _, attr = ref.partition(":")
    if not os.path.isfile(path) or not attr:
        raise KubesageError(f"'{ref}': expected FILE.py:COMPONENT, e.g. components/train.py:train")
    root = project_root(path)
    if root not in sys.path:
        sys.path.insert(0, root)
    found = [c for name, c in vars(import_file(path, root)).items()
             if isinstance(c, Component) and attr in (name, c.name)]
    if not found:
        raise KubesageError(f"{path} has no component '{attr}' (by name or by its function)")
    return found[0]


def _local_image_id(logical: str) -> str:
    from kubesage.config.local import load_local_config
    from kubesage.targets.local.docker_executor import DockerExecutor

    return DockerExecutor().environment_id(load_local_config().image(logical))


def cmd_rerun(args: argparse.Namespace) -> int:
    from kubesage.runs.rerun import rerun

    store = _store(args.config)
    records = rerun(store, args.run_id, log=sys.stderr, from_failed=args.from_failed,
                    wait=args.wait)
    code = 0
    for record in records:
        if record.status != "running":  # ended (a submitted one: waited for)
            _track(record, record.target, record.config or None)
        code = max(code, _emit(record, args.json) if record.status != "running" else 0)
        if record.status == "running":
            print(f"run {record.run_id} submitted; 'kubesage runs refresh {record.run_id}' "
                  "reads its state", file=sys.stderr)
    return code


def cmd_run(args: argparse.Namespace) -> int:
    from kubesage.project.loader import load_pipeline

    definition, path = load_pipeline(args.pipeline)
    pipeline = definition.build()
    target = targets.get(args.target)
    options = targets.RunOptions(
        params=_params(args.param), config=args.config, pipeline_file=path, runner=args.runner,
        tags=_pairs(args.tag, "--tag"), use_cache=not args.no_cache,
        inputs=_pairs(args.input, "--input"))
    target.check(pipeline, options)
    _store(args.config, args.target)
    record = target.run(pipeline, options)
    _track(record, args.target, args.config)
    return _emit(record, args.json)


def cmd_runs(args: argparse.Namespace) -> int:
    store = _store(args.config)
    if args.runs_command == "refresh":
        return _refresh(store, args.run_id)
    if args.runs_command == "list":
        wanted = _pairs(args.tag, "--tag")
        records = [r.to_dict() for r in store.list(limit=args.limit, pipeline=args.pipeline)
                   if all(r.tags.get(k) == v for k, v in wanted.items())]
        if args.json:
            print(json.dumps([{k: r[k] for k in ("run_id", "pipeline", "target", "status",
                                                   "started", "duration_s", "tags", "metrics",
                                                   "remote")}
                              for r in records], indent=2))
        else:
            print(f"{'RUN ID':48} {'TARGET':9} {'STATUS':10} {'STEPS':>5} {'SECONDS':>8}")
            for r in records:
                where = r["target"] + ("*" if r["remote"] else "")
                print(f"{r['run_id']:48} {where:9} {r['status']:10} {len(r['steps']):>5} "
                      f"{r['duration_s'] or 0:>8.1f}")
            if any(r["remote"] for r in records):
                print("(* run by the service; 'kubesage runs refresh' reads their state)")
        return 0
    try:
        record = store.get(args.run_id).to_dict()
    except KeyError:
        raise KubesageError(f"no run '{args.run_id}'; 'kubesage runs list' shows the runs") from None
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        _print_record(record)
    return 0


def _refresh(store: RunStore, run_id: str | None) -> int:
    """Read submitted runs' states from their services: ``run_id``, else every one still
    running."""
    from kubesage.runs.submitted import notifications, update

    if run_id:
        try:
            records = [store.get(run_id)]
        except KeyError:
            raise KubesageError(f"no run '{run_id}'; 'kubesage runs list' shows the runs") from None
        if not records[0].remote:
            raise KubesageError(f"run {records[0].run_id} ran here ({records[0].target}); its "
                                "record is written as it runs, there is nothing to refresh")
    else:
        records = [r for r in store.running() if r.remote]
        if not records:
            print("no submitted run is still running", file=sys.stderr)
    for record in records:
        def say(text: str, prefix: str = record.run_id) -> None:
            print(f"{prefix}: {text}", file=sys.stderr)

        target, config, was = targets.get(record.target), record.config or None, record.status
        with notifications(target, config, say) as notify:
            ended = update(record, target.read(record), say, notify)
        store.save(record)
        if ended and was == "running":  # it ended since last read: to MLflow, as a local run
            _track(record, record.target, config)
        print(f"{record.run_id:48} {record.target:9} {record.status:10} "
              f"{sum(s.status == 'succeeded' for s in record.steps)}/{len(record.steps)} steps "
              "succeeded")
    return 0


def _print_record(r: dict[str, Any]) -> None:
    print(f"run {r['run_id']}  {r['status']}  ({r['runner']}, {r['duration_s']}s)")
    remote = r.get("remote") or {}
    if remote:
        print(f"  on {r['target']}: {remote.get('arn') or remote.get('url')}")
    print(f"  pipeline {r['pipeline']}  sha256 {r['pipeline_hash'][:12]}")
    print(f"  parameters {json.dumps(r['parameters'])}")
    for s in r["steps"]:
        extra = " (cached)" if s["cached"] else ""
        print(f"  {s['name']:28} {s['status']:10}{extra:9} {s['duration_s'] or 0:>7.1f}s")
        for name, out in sorted(s["outputs"].items()):
            print(f"      -> {name}: {out['path']}")
        shown = sorted(s["metrics"].items(), key=lambda kv: ("_" in kv[0], kv[0]))
        for name, value in shown[:4]:
            print(f"      {name} = {value:.4f}")
        if len(shown) > 4:
            print(f"      (+{len(shown) - 4} more metrics: kubesage runs show {r['run_id']} --json)")
        if s["status"] == "failed":
            print("      " + s["error"].replace("\n", "\n      "))


def cmd_build(args: argparse.Namespace) -> int:
    from kubesage.docker_engine.images import build_images
    from kubesage.project.loader import project_root

    if args.push and not args.target:
        raise KubesageError("--push needs --target kfp|sagemaker: the registry is in that "
                            "target's config")
    root = project_root(os.getcwd())
    built = build_images(root, tag=args.tag, base=args.base, wheelhouse=args.wheelhouse,
                         only=args.only or None, on_line=lambda line: print(line, file=sys.stderr))
    for ref, image_id in built.items():
        print(f"{ref} {image_id}")
    if args.push:
        from kubesage.docker_engine.images import content_refs, push_images

        refs = content_refs(root, [ref.rsplit(":", 1)[0] for ref in built])
        remote = targets.get(args.target).registry_refs(refs, args.config)
        for name, pushed in push_images(refs, remote, lambda line: print(line, file=sys.stderr)).items():
            print(f"{name} {pushed}")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from kubesage.project.loader import load_pipeline

    definition, path = load_pipeline(args.pipeline)
    pipeline = definition.build()  # definition errors come first, whatever the target
    if pipeline.artifacts:
        raise targets.Unsupported(
            f"'{pipeline.name}' is a component on its own; it runs with 'kubesage run', and "
            "compiles as a step of a pipeline that calls it")
    targets.get(args.target).compile(pipeline, args.output, args.config, path)
    print(f"{args.output}: {pipeline.name} compiled for {args.target}", file=sys.stderr)
    if args.explain:  # which steps share a job, and why (kubesage.plan.fusion)
        from kubesage.targets.fusion import explain_fusion

        print(explain_fusion(args.target, pipeline, args.config), end="")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    if os.path.splitext(args.file.partition(":")[0])[1].lower() == ".py":
        from kubesage.project.loader import load_pipeline

        definition, _ = load_pipeline(args.file)
        pipeline = definition.build()
        print(f"{args.file}: pipeline '{pipeline.name}' is valid ({len(pipeline.tasks)} tasks)")
        return 0
    print(targets.for_file(args.file).validate(args.file, args.config))
    return 0


def cmd_submit(args: argparse.Namespace) -> int:
    clients = [c for c in args.clients.split(",") if c] if args.clients else None
    target = targets.get(args.target)
    wait = args.wait or bool(args.deploy)  # a deploy waits for the models
    result = target.submit(args.pipeline, targets.SubmitOptions(
        params=_params(args.param), config=args.config, wait=wait, clients=clients,
        tags=_pairs(args.tag, "--tag")))
    store = _store(args.config, args.target) if wait else None
    records = [store.get(started["kubesage_run_id"]) for started in
               result.get("executions", result.get("runs", []))] if store else []
    if args.deploy:
        result["deployment"] = _deploy_runs(target, records, args)
    print(json.dumps(result, indent=2, default=str))
    code = 0
    for record in records:
        _track(record, args.target, args.config)  # ended: to MLflow, as a local run
        with contextlib.redirect_stdout(sys.stderr):  # stdout stays the JSON
            _print_record(record.to_dict())
        code = max(code, 0 if record.status == "succeeded" else EXIT_FAILED)
    return code


def _deploy_runs(target: targets.Target, records: list[Any], args: argparse.Namespace
                 ) -> dict[str, Any]:
    """Serve the model of each run that succeeded whole (every step, its condition held)
    behind endpoint ``args.deploy``, one model per client; the others are named, not served."""
    models: dict[str, str] = {}
    skipped: dict[str, str] = {}
    for record in records:
        name = str(record.remote.get("client") or "model")
        unmet = [s.name for s in record.steps if s.status != "succeeded"]
        if record.status != "succeeded":
            skipped[name] = f"run {record.run_id} {record.status}"
        elif unmet:
            skipped[name] = (f"run {record.run_id}: {', '.join(unmet)} did not run (a condition "
                             "did not hold)")
        else:
            models[name] = record.run_id
    for name, why in skipped.items():
        print(f"not deployed: {name}: {why}", file=sys.stderr, flush=True)
    if not models:
        return {"deployed": [], "not_deployed": skipped}
    done = target.deploy(models, targets.DeployOptions(
        name=args.deploy, config=args.config, per_client=bool(args.clients)))
    done["not_deployed"] = skipped
    print(f"deployed {', '.join(sorted(models))} to {args.deploy}", file=sys.stderr, flush=True)
    return done


def cmd_serve(args: argparse.Namespace) -> int:
    from kubesage.config.local import load_local_config
    from kubesage.docker_engine.images import ensure_fresh
    from kubesage.project.loader import project_root
    from kubesage.serving.local import IMAGE, model_folder, serve

    config = load_local_config(args.config)
    store = _store(args.config)
    refs = dict(_pairs(args.model, "--model"))
    if args.model_ref:
        refs.setdefault("default" if refs else "model", args.model_ref)
    if not refs:
        raise KubesageError("name a model: kubesage serve MODEL_REF, or --model NAME=MODEL_REF "
                            "(a folder, RUN_ID:step/output or RUN_ID)")
    folders = {name: model_folder(ref, store) for name, ref in refs.items()}

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    ensure_fresh(project_root(os.getcwd()), {IMAGE}, config.image_tag, say)
    serve(folders, config.image(IMAGE), args.port, say, args.max_models)
    return 0


def cmd_deploy(args: argparse.Namespace) -> int:
    refs = dict(_pairs(args.model, "--model"))
    if args.model_ref:
        refs.setdefault(args.name, args.model_ref)
    if not refs:
        raise KubesageError("name a model: kubesage deploy MODEL_REF, or --model CLIENT=MODEL_REF "
                            "for each client")
    result = targets.get(args.target).deploy(refs, targets.DeployOptions(
        name=args.name, config=args.config, output=args.output, apply=args.apply,
        per_client=args.per_client, replace=args.replace))
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from kubesage.project.scaffold import init_project

    files = init_project(args.dir)
    print(f"{args.dir}: a new kubesage project ({len(files)} files); next: cd {args.dir} && "
          "kubesage run pipelines/example.py")
    return 0


def cmd_sample_data(args: argparse.Namespace) -> int:
    from kubesage.project.sample_data import write_digits

    print(write_digits(args.dest))
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kubesage",
        description="Run ML pipelines locally in Docker; compile them for Kubeflow Pipelines or "
                    "SageMaker Pipelines; share their components; trace and re-run their runs.")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a pipeline locally")
    run.add_argument("pipeline", help="pipeline file (pipelines/x.py or pipelines/x.py:name), or "
                     "one component on its own (components/x.py:component)")
    run.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument("--input", action="append", default=[], metavar="NAME=FOLDER|RUN:STEP/OUTPUT",
                     help="an input artifact of a component run on its own")
    run.add_argument("--runner", help="how steps execute; local: docker (default) or subprocess")
    run.add_argument("--target", default="local",
                     help=f"where: {', '.join(targets.names())} (default: local)")
    run.add_argument("--config", help="target config (default: config/<target>.yaml)")
    run.add_argument("--json", action="store_true", help="print the run record as JSON")
    run.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                     help="label the run (kubesage runs list --tag filters on it)")
    run.add_argument("--no-cache", action="store_true", help="execute every step")
    run.set_defaults(func=cmd_run)

    again = sub.add_parser("rerun", help="re-run a recorded run exactly (same parameters, images)")
    again.add_argument("run_id")
    again.add_argument("--config", help="local config whose run store holds the run "
                       "(default: config/local.yaml); the run's own target config is used again")
    again.add_argument("--json", action="store_true")
    again.add_argument("--from-failed", action="store_true",
                       help="continue a failed run: only what did not succeed runs again")
    again.add_argument("--wait", action="store_true",
                       help="a submitted run: stream its state until it ends")
    again.set_defaults(func=cmd_rerun)

    cmp_ = sub.add_parser("compare", help="compare runs: a table and a PNG of learning curves")
    cmp_.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    cmp_.add_argument("-o", "--output", default="compare.png", help="PNG path (compare.png)")
    cmp_.add_argument("--config", help="local target config (default: config/local.yaml)")
    cmp_.set_defaults(func=cmd_compare)

    exp = sub.add_parser("experiments", help="log runs to MLflow now (run does it in background)")
    exp.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    exp.add_argument("--config", help="local target config (default: config/local.yaml)")
    exp.set_defaults(func=cmd_experiments)

    comps = sub.add_parser("components", help="the shared component catalog")
    comps.add_argument("--catalog", help="folder or s3://bucket/prefix (default: $KUBESAGE_CATALOG)")
    comps_sub = comps.add_subparsers(dest="components_command", required=True)
    c_list = comps_sub.add_parser("list", help="the newest version of every component")
    c_list.add_argument("--json", action="store_true")
    c_show = comps_sub.add_parser("show", help="one component's interface")
    c_show.add_argument("ref", metavar="NAME[@VERSION]")
    c_show.add_argument("--json", action="store_true")
    c_pub = comps_sub.add_parser("publish", help="publish a component version")
    c_pub.add_argument("component", metavar="FILE.py:COMPONENT|FILE.yaml",
                       help="a kubesage component, or a Kubeflow component YAML to import")
    c_pub.add_argument("--version", help="the version of an imported Kubeflow component YAML")
    c_pub.add_argument("--image", help="pinned image (ID or digest); default: the local image's ID")
    c_pub.add_argument("--publisher", default="")
    c_exp = comps_sub.add_parser("export", help="write a component as Kubeflow component YAML")
    c_exp.add_argument("ref", metavar="NAME[@VERSION]|FILE.py:COMPONENT")
    c_exp.add_argument("-o", "--output", required=True)
    c_exp.add_argument("--config", help="Kubeflow target config (default: config/kfp.yaml)")
    comps.set_defaults(func=cmd_components)

    runs = sub.add_parser("runs", help="list and show recorded runs")
    runs.add_argument("--config", help="local target config (default: config/local.yaml)")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_sub.add_parser("list")
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--pipeline")
    runs_list.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE")
    runs_list.add_argument("--json", action="store_true")
    runs_show = runs_sub.add_parser("show")
    runs_show.add_argument("run_id")
    runs_show.add_argument("--json", action="store_true")
    runs_refresh = runs_sub.add_parser("refresh", help="read submitted runs' states, metrics "
                                       "and outputs from their services")
    runs_refresh.add_argument("run_id", nargs="?", help="one run (default: every submitted run "
                              "still running)")
    runs.set_defaults(func=cmd_runs)

    build = sub.add_parser("build", help="build the images under containers/")
    build.add_argument("--tag", default="latest")
    build.add_argument("--base", help="base image (default: the one given before, remembered; "
                       "else the Dockerfile's, python:3.11-slim)")
    build.add_argument("--wheelhouse", help="folder of wheels to install from instead of PyPI "
                       "(remembered, like --base)")
    build.add_argument("--only", action="append", default=[], metavar="IMAGE")
    build.add_argument("--push", action="store_true",
                       help="push the images to the registry of --target's config, by content tag")
    build.add_argument("--target", help="kfp or sagemaker: whose registry --push pushes to")
    build.add_argument("--config", help="that target's config (default: config/<target>.yaml)")
    build.set_defaults(func=cmd_build)

    comp = sub.add_parser("compile", help="compile a pipeline for a target")
    comp.add_argument("pipeline")
    comp.add_argument("--target", required=True, help=", ".join(targets.names()))
    comp.add_argument("-o", "--output", required=True)
    comp.add_argument("--config", help="target config (default: config/<target>.yaml)")
    comp.add_argument("--explain", action="store_true",
                      help="print which steps share a job and why, jobs and pods before and after, "
                           "and the projected wall time saved")
    comp.set_defaults(func=cmd_compile)

    val = sub.add_parser("validate", help="check a pipeline (.py) or a compiled file (.yaml, .json)")
    val.add_argument("file")
    val.add_argument("--config", help="target config of a compiled file (default: "
                     "config/<target>.yaml): the region SageMaker instance types must be offered in")
    val.set_defaults(func=cmd_validate)

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

    init = sub.add_parser("init", help="write a new project: components, a pipeline, an image, "
                          "target configs, a test")
    init.add_argument("dir", help="a new (or empty) folder")
    init.set_defaults(func=cmd_init)

    sample = sub.add_parser("sample-data", help="write the built-in sample image set")
    sample.add_argument("dest", nargs="?", default="data/fsx")
    sample.set_defaults(func=cmd_sample_data)
    return p


def _one_line(error: Exception) -> str:
    """An error on one line: a message listing several problems joins them with '; '."""
    return "; ".join(line.strip() for line in str(error).splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    from kubesage.runs.signals import Interrupted, stop_on_signals

    args = parser().parse_args(argv)
    try:
        with stop_on_signals():
            return int(args.func(args))
    except targets.Unsupported as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_REFUSED
    except KubesageError as e:
        print(f"error: {_one_line(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Interrupted as e:
        return e.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `kubesage runs list | head`: the reader left, nothing to say
        sys.stderr.close()
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

"""``kubesage runs``, ``compare`` and ``experiments``: the recorded runs, side by side and in
MLflow."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from kubesage.cli.common import get_run, pairs, print_record, say, track, workspace
from kubesage.runs.record import RunRecord
from kubesage.runs.submitted import refresh
from kubesage.targets import base as targets

LISTED = ("run_id", "pipeline", "target", "status", "started", "duration_s", "tags", "metrics",
          "remote", "user", "host")


def cmd_runs(args: argparse.Namespace) -> int:
    ws = workspace(args.config)
    if args.runs_command == "refresh":
        return _refresh(args, ws)
    if args.runs_command == "list":
        records = ws.store.list(limit=args.limit, pipeline=args.pipeline, status=args.status,
                                target=args.target, user=args.user, tags=pairs(args.tag, "--tag"),
                                prefix=args.prefix)
        _print_list([r.to_dict() for r in records], args.json)
        return 0
    record = get_run(ws, args.run_id).to_dict()
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        print_record(record)
    return 0


def _print_list(records: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        print(json.dumps([{k: r[k] for k in LISTED} for r in records], indent=2))
        return
    print(f"{'RUN ID':48} {'TARGET':9} {'STATUS':10} {'STEPS':>5} {'SECONDS':>8}  USER")
    for r in records:
        where = r["target"] + ("*" if r["remote"] else "")
        print(f"{r['run_id']:48} {where:9} {r['status']:10} {len(r['steps']):>5} "
              f"{r['duration_s'] or 0:>8.1f}  {r['user']}")
    if any(r["remote"] for r in records):
        print("(* run by the service; 'kubesage runs refresh' reads their state)")


def _refresh(args: argparse.Namespace, ws: Any) -> int:
    read = refresh(ws, args.run_id, targets.get, say)
    if not read:
        print("no submitted run is still running", file=sys.stderr)
    for record, ended in read:
        if ended:  # it ended since last read: to MLflow, as a local run
            track(ws, record)
        print(f"{record.run_id:48} {record.target:9} {record.status:10} "
              f"{sum(s.status == 'succeeded' for s in record.steps)}/{len(record.steps)} steps "
              "succeeded")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from kubesage.tracking.compare import plot, table

    ws = workspace(args.config)
    records: list[RunRecord] = [get_run(ws, run_id) for run_id in args.run_ids]
    print(table(records))
    try:
        drawn = plot(records, args.output)
    except ValueError as e:  # runs without curves (a service's runs) still compare by metrics
        print(f"\nno plot: {e}")
        return 0
    print(f"\nlearning curves ({', '.join(drawn)}): {args.output}")
    return 0


def cmd_experiments(args: argparse.Namespace) -> int:
    from kubesage.runs.step_user import shared_with_steps
    from kubesage.runtime.context import mlflow_store_lock
    from kubesage.tracking.experiments import log_run

    ws = workspace(args.config)
    uri = ws.local.tracking_uri
    for run_id in args.run_ids:
        with shared_with_steps(), mlflow_store_lock(uri):  # steps register models there too
            mlflow_id = log_run(get_run(ws, run_id), uri)
        print(f"{run_id} -> MLflow run {mlflow_id} ({uri})")
    return 0


def add_parsers(sub: Any) -> None:
    cmp_ = sub.add_parser("compare", help="compare runs: a table and a PNG of learning curves")
    cmp_.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    cmp_.add_argument("-o", "--output", default="compare.png", help="PNG path (compare.png)")
    cmp_.add_argument("--config", help="local target config (default: config/local.yaml)")
    cmp_.set_defaults(func=cmd_compare)

    exp = sub.add_parser("experiments", help="log runs to MLflow now (run does it in background)")
    exp.add_argument("run_ids", nargs="+", metavar="RUN_ID")
    exp.add_argument("--config", help="local target config (default: config/local.yaml)")
    exp.set_defaults(func=cmd_experiments)

    runs = sub.add_parser("runs", help="list and show recorded runs")
    runs.add_argument("--config", help="local target config (default: config/local.yaml)")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    runs_list = runs_sub.add_parser("list")
    runs_list.add_argument("--limit", type=int, default=20)
    runs_list.add_argument("--pipeline")
    runs_list.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                           help="runs with this tag (several: all of them)")
    runs_list.add_argument("--user", help="runs this user made")
    runs_list.add_argument("--status", help="running, succeeded, failed, cancelled, abandoned")
    runs_list.add_argument("--target", help="local, kfp, sagemaker, ...")
    runs_list.add_argument("--prefix", help="runs whose ID starts with this")
    runs_list.add_argument("--json", action="store_true")
    runs_show = runs_sub.add_parser("show")
    runs_show.add_argument("run_id")
    runs_show.add_argument("--json", action="store_true")
    runs_refresh = runs_sub.add_parser("refresh", help="read submitted runs' states, metrics "
                                       "and outputs from their services")
    runs_refresh.add_argument("run_id", nargs="?", help="one run (default: every submitted run "
                              "still running)")
    runs.set_defaults(func=cmd_runs)

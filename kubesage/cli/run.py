"""``kubesage run`` and ``kubesage rerun``: a run on this machine, and a recorded run again."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubesage.cli.common import emit, pairs, track, workspace
from kubesage.project.loader import load_pipeline
from kubesage.runs.rerun import newest_tagged, rerun
from kubesage.targets import base as targets


def cmd_run(args: argparse.Namespace) -> int:
    definition, path = load_pipeline(args.pipeline)
    pipeline = definition.build()
    target = targets.get(args.target)
    options = targets.RunOptions(
        params=pairs(args.param, "--param"), config=args.config, pipeline_file=path,
        runner=args.runner, tags=pairs(args.tag, "--tag"), use_cache=not args.no_cache,
        inputs=pairs(args.input, "--input"))
    ws = workspace(args.config, args.target)
    record = target.run(pipeline, options, ws)
    track(ws, record)
    return emit(record, args.json)


def cmd_rerun(args: argparse.Namespace) -> int:
    ws = workspace(args.config)
    run_id = args.run_id or newest_tagged(ws, pairs(args.tag, "--tag"))
    records = rerun(ws, run_id, targets.get, log=sys.stderr, from_failed=args.from_failed,
                    wait=args.wait)
    code = 0
    for record in records:
        if record.status == "running":  # submitted, not waited for
            print(f"run {record.run_id} submitted; 'kubesage runs refresh {record.run_id}' "
                  "reads its state", file=sys.stderr)
            continue
        track(ws, record)
        code = max(code, emit(record, args.json))
    return code


def add_parsers(sub: Any) -> None:
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
    again.add_argument("run_id", nargs="?", help="the run (or an ID prefix); or --tag")
    again.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE",
                       help="re-run the newest run with this tag (several: all of them)")
    again.add_argument("--config", help="local config whose run store holds the run "
                       "(default: config/local.yaml); the run's own target config is used again")
    again.add_argument("--json", action="store_true")
    again.add_argument("--from-failed", action="store_true",
                       help="continue a failed run: only what did not succeed runs again")
    again.add_argument("--wait", action="store_true",
                       help="a submitted run: stream its state until it ends")
    again.set_defaults(func=cmd_rerun)

"""``kubesage ui`` (the web console over the run store) and ``kubesage logs`` (a step's log,
from wherever it is: the local file, the team's artifact store, CloudWatch, a pod)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from kubesage.cli.common import get_run, say, workspace
from kubesage.dsl.errors import KubesageError
from kubesage.runs.logs import current, follow, reader
from kubesage.runs.record import RunRecord
from kubesage.targets import base as targets


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        from kubesage.console.server import DEFAULT_PORT, console_for, serve
    except ImportError as e:  # fastapi, uvicorn or jinja2 missing: the `console` extra
        raise KubesageError(f"the console needs {e.name}: pip install 'kubesage[console]'") from None
    ws = workspace(args.config)
    console = console_for(ws, args.host, args.config, ws.local.console_token_file)
    console.workspace.store.count()  # the store answers before the server says it is up
    serve(console, args.host, args.port or DEFAULT_PORT, say)
    return 0


def _steps(record: RunRecord, step: str | None) -> list[str]:
    if step is None:
        return [s.name for s in record.steps]
    if step in {s.name for s in record.steps}:
        return [step]
    raise KubesageError(f"run {record.run_id} has no step '{step}'; its steps: "
                        + ", ".join(s.name for s in record.steps))


def cmd_logs(args: argparse.Namespace) -> int:
    ws = workspace(args.config)
    record = get_run(ws, args.run_id)
    names = _steps(record, args.step)
    read = reader(ws, targets.get)
    again = current(ws, record.run_id, targets.get)
    poll_s = 5.0 if record.remote else 1.0
    for name in names:
        if len(names) > 1:
            print(f"==> {name} <==", flush=True)
        for text in follow(read, again, name, keep_following=args.follow, poll_s=poll_s):
            sys.stdout.write(text)
            sys.stdout.flush()
    return 0


def add_parsers(sub: Any) -> None:
    ui = sub.add_parser("ui", help="the web console: runs, graphs, logs, compare, lineage, "
                        "the catalog")
    ui.add_argument("--port", type=int, help="port (default 8484)")
    ui.add_argument("--host", default="127.0.0.1",
                    help="address to bind (default 127.0.0.1; another needs a token: "
                    "$KUBESAGE_CONSOLE_TOKEN or console_token_file: in the local config)")
    ui.add_argument("--config", help="local config whose run store it shows "
                    "(default: config/local.yaml)")
    ui.set_defaults(func=cmd_ui)

    logs = sub.add_parser("logs", help="a step's log (every step's without STEP)")
    logs.add_argument("run_id", metavar="RUN_ID", help="the run (or an ID prefix)")
    logs.add_argument("step", nargs="?", metavar="STEP", help="one step (e.g. train, train[1])")
    logs.add_argument("-f", "--follow", action="store_true",
                      help="keep printing while the step runs")
    logs.add_argument("--config", help="local config whose run store holds the run "
                      "(default: config/local.yaml)")
    logs.set_defaults(func=cmd_logs)

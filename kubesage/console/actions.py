"""What the console does, not only shows: rerun a run, rerun it from its failed step, cancel a
local run. Each is a POST that must carry the console's token (a header, the form's ``token``
field, or the same-site cookie ``/login`` sets) and, when the browser says where it comes from,
come from the console's own origin.

A rerun is the command line's (``python -m kubesage.cli rerun``), started in the background as
its own process with its output in a file: the console never runs a pipeline inside itself. A
local run is cancelled as a person would with ``kill``: SIGTERM to the process that owns it,
on this host, which stops its steps and records it ``cancelled``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from kubesage.console.app import token_of
from kubesage.console.pages import console_of, record_of
from kubesage.runs.sweep import alive

router = APIRouter()


async def authorised(request: Request) -> None:
    """Refuse (403) a POST without the token, or from another origin."""
    body = (await request.body()).decode("utf-8", "replace")
    given = token_of(request) or (parse_qs(body).get("token") or [""])[0]
    if not console_of(request).allowed(given):
        raise HTTPException(403, "Refused: this action needs the console's token (open the "
                                 "link the console printed when it started, or send the "
                                 "X-Kubesage-Token header).")
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise HTTPException(403, "Refused: the request comes from another site.")


def _form(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}


@router.post("/runs/{run_id}/rerun")
async def rerun(request: Request, run_id: str) -> Response:
    """``kubesage rerun RUN [--from-failed]`` in the background; back to the runs list."""
    await authorised(request)
    console = console_of(request)
    record = record_of(request, run_id)
    from_failed = _form(await request.body()).get("from_failed") == "1"
    if from_failed and record.status not in ("failed", "cancelled", "abandoned"):
        raise HTTPException(409, f"Run {record.run_id} is {record.status}; only a failed, "
                                 "cancelled or abandoned run continues from its failed steps.")
    command = [sys.executable, "-m", "kubesage.cli", "rerun", record.run_id]
    command += ["--from-failed"] if from_failed else []
    command += ["--config", console.config] if console.config else []
    logs = os.path.join(os.path.abspath(console.workspace.local.store), "console")
    os.makedirs(logs, exist_ok=True)
    out = os.path.join(logs, f"rerun-{record.run_id}-{time.strftime('%Y%m%d-%H%M%S')}.log")
    with open(out, "w") as f:
        subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                         start_new_session=True, cwd=os.getcwd())
    return RedirectResponse(f"/?started={quote(record.run_id, safe='')}", status_code=303)


@router.post("/runs/{run_id}/cancel")
async def cancel(request: Request, run_id: str) -> Response:
    """SIGTERM to the process running a local run on this host."""
    await authorised(request)
    record = record_of(request, run_id)
    if record.status != "running":
        raise HTTPException(409, f"Run {record.run_id} is {record.status}, not running.")
    if record.remote:
        raise HTTPException(409, f"Run {record.run_id} runs on {record.target}'s service; stop "
                                 "it there (the console cancels local runs).")
    owner = record.owner
    if not owner or not alive(owner):
        raise HTTPException(409, f"Run {record.run_id}'s process is gone; the next kubesage "
                                 "command marks it abandoned.")
    import socket

    if owner.get("host") != socket.gethostname():
        raise HTTPException(409, f"Run {record.run_id} runs on host {owner.get('host')}; cancel "
                                 "it there.")
    os.kill(int(owner["pid"]), signal.SIGTERM)
    return RedirectResponse(f"/runs/{quote(record.run_id, safe='')}", status_code=303)

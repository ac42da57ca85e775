"""Live parts of the pages, as server-sent events that htmx's SSE extension swaps in.

Each stream reads the store every ``Console.poll_s`` seconds (in a worker thread: the store is
synchronous) and sends a part only when what it shows changed: the runs list's rows; a run's
header, graph, steps and timeline; a step's log, page by page, each event's ID the cursor to
read on from, so a reconnecting browser (``Last-Event-ID``) continues where it was.
"""

from __future__ import annotations

import asyncio
import html
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from kubesage.console import views
from kubesage.console.pages import console_of, filters_of, graph_context, record_of
from kubesage.console.render import fragment
from kubesage.runs.logs import reader
from kubesage.runs.record import TERMINAL
from kubesage.targets import base as targets

router = APIRouter()


@router.get("/live/runs", response_class=EventSourceResponse)
async def runs(request: Request) -> AsyncIterator[ServerSentEvent]:
    """The runs list's rows, whenever a run on the page changes (or a new one starts)."""
    console = console_of(request)
    filters = filters_of(request)
    store = console.workspace.store
    shown = await run_in_threadpool(views.runs_signature, store, filters)
    while not await request.is_disconnected():
        await asyncio.sleep(console.poll_s)
        now = await run_in_threadpool(views.runs_signature, store, filters)
        if now != shown:
            shown = now
            context = await run_in_threadpool(views.runs_page, store, filters)
            yield ServerSentEvent(event="rows", raw_data=fragment(request, "_rows.html", context))


def _run_parts(request: Request, run_id: str) -> tuple[Any, dict[str, str]]:
    """The run's live parts, rendered: header, graph, steps, timeline, curves."""
    record = record_of(request, run_id)
    context = {**views.run_page(console_of(request).workspace.store, record,
                                expand=request.query_params.get("expand") == "1"),
               **graph_context(record)}
    return record, {part: fragment(request, f"_run_{part}.html", context)
                    for part in ("header", "graph", "steps", "timeline", "curves")}


@router.get("/live/runs/{run_id}", response_class=EventSourceResponse)
async def run(request: Request, run_id: str) -> AsyncIterator[ServerSentEvent]:
    """A run's header, graph, steps and timeline, each when it changed; ``ended`` once the
    run has ended and its last state was sent."""
    console = console_of(request)
    shown: dict[str, str] = {}
    while not await request.is_disconnected():
        record, parts = await run_in_threadpool(_run_parts, request, run_id)
        for part, text in parts.items():
            if shown.get(part) != text:
                shown[part] = text
                yield ServerSentEvent(event=part, raw_data=text)
        if record.status != "running":
            yield ServerSentEvent(event="ended", raw_data=record.status)
            return
        await asyncio.sleep(console.poll_s)


@router.get("/live/runs/{run_id}/steps/{step}/log", response_class=EventSourceResponse)
async def log(request: Request, run_id: str, step: str) -> AsyncIterator[ServerSentEvent]:
    """A step's log as it grows: ``log`` events of escaped text, then ``ended``."""
    console = console_of(request)
    read = reader(console.workspace, targets.get)
    cursor = request.headers.get("last-event-id", "")
    while not await request.is_disconnected():
        record = await run_in_threadpool(record_of, request, run_id)
        try:
            current = record.step(step)
        except KeyError:
            yield ServerSentEvent(event="log", raw_data=f"(run {html.escape(run_id)} has no step "
                                                        f"{html.escape(step)})")
            break
        ended = current.status in TERMINAL or record.status != "running"
        try:
            page = await run_in_threadpool(read, record, current, cursor)
        except Exception as e:  # a service that cannot be read: say why, in the log's place
            yield ServerSentEvent(event="log", raw_data=html.escape(console.scrub(
                f"(the log cannot be read: {e})\n")))
            break
        if page.text:
            yield ServerSentEvent(event="log", id=page.cursor,
                                  raw_data=html.escape(console.scrub(page.text)))
        cursor = page.cursor
        if page.more:
            continue
        if ended:
            break
        await asyncio.sleep(console.poll_s)
    yield ServerSentEvent(event="ended", raw_data="ended")

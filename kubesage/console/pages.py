"""The console's pages: runs, a run, compare, lineage, the catalog and the per-client view."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response

from kubesage.console import graph, views
from kubesage.console.clients import clients_page
from kubesage.runs.record import RunRecord

if TYPE_CHECKING:
    from kubesage.console.app import Console

router = APIRouter()


def console_of(request: Request) -> Console:
    return request.app.state.console  # type: ignore[no-any-return]


def page(request: Request, name: str, context: dict[str, Any], status: int = 200) -> Response:
    console = console_of(request)
    return request.app.state.templates.TemplateResponse(  # type: ignore[no-any-return]
        request, name, {"store": console.workspace.store.location, **context},
        status_code=status)


def record_of(request: Request, run_id: str) -> RunRecord:
    """The run ``run_id`` (or the one its prefix names); a 404 page otherwise."""
    try:
        return console_of(request).workspace.store.get(run_id)
    except KeyError:
        raise HTTPException(404, f"No run '{run_id}' in this store.") from None


def filters_of(request: Request) -> views.Filters:
    q = request.query_params
    try:
        page_number = int(q.get("page") or 1)
    except ValueError:
        page_number = 1
    return views.Filters(**{k: q.get(k, "").strip()[:255] for k in
                            ("pipeline", "status", "target", "user", "tag", "prefix")},
                         page=page_number)


@router.get("/")
def runs(request: Request) -> Response:
    filters = filters_of(request)
    context = views.runs_page(console_of(request).workspace.store, filters)
    return page(request, "runs.html", {**context, "started": request.query_params.get("started")})


@router.get("/runs/{run_id}")
def run(request: Request, run_id: str) -> Response:
    record = record_of(request, run_id)
    if record.run_id != run_id:  # a prefix: the page of the run it names
        return RedirectResponse(f"/runs/{quote(record.run_id, safe='')}", status_code=303)
    store = console_of(request).workspace.store
    context = views.run_page(store, record, expand=request.query_params.get("expand") == "1")
    return page(request, "run.html", {**context, **graph_context(record)})


def graph_context(record: RunRecord) -> dict[str, Any]:
    """The run's graph as SVG, or why there is none."""
    try:
        return {"graph": graph.render(record), "graph_error": ""}
    except graph.GraphUnavailable as e:
        return {"graph": "", "graph_error": str(e)}


@router.get("/compare")
def compare(request: Request) -> Response:
    wanted = [r for r in request.query_params.getlist("run") if r.strip()][:12]
    if len(wanted) < 2:
        return page(request, "compare.html", {"records": [], "rows": [], "charts": [],
                                              "wanted": wanted})
    records = [record_of(request, run_id.strip()) for run_id in wanted]
    return page(request, "compare.html", {**views.compare_page(records), "wanted": wanted})


@router.get("/lineage")
def lineage(request: Request) -> Response:
    store = console_of(request).workspace.store
    q = request.query_params
    context: dict[str, Any] = {"model": None, "data": None, "linked": None, "kind": "", "value": ""}
    if q.get("model"):
        context["model"] = views.lineage_of_model(store, q["model"].strip())
    elif q.get("data"):
        context["data"] = views.lineage_of_data(store, q["data"].strip())
    else:
        for kind in ("image", "code", "component"):
            if q.get(kind):
                context.update(kind=kind, value=q[kind].strip(),
                               linked=views.lineage_of(store, kind, q[kind].strip()))
    return page(request, "lineage.html", context)


@router.get("/catalog")
def catalog(request: Request) -> Response:
    from kubesage.console.catalog import catalog_page

    return page(request, "catalog.html", catalog_page(console_of(request).workspace,
                                                      request.query_params.get("component")))


@router.get("/clients")
def clients(request: Request) -> Response:
    store = console_of(request).workspace.store
    return page(request, "clients.html", clients_page(store, request.query_params.get(
        "pipeline", "").strip()))


@router.get("/login")
def login(request: Request) -> Response:
    """``?token=``: remembered in a cookie (same site only) so actions carry it."""
    from kubesage.console.app import COOKIE

    given = request.query_params.get("token", "")
    if not console_of(request).allowed(given):
        raise HTTPException(401, "That is not this console's token.")
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(COOKIE, given, httponly=True, samesite="strict")
    return response


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}

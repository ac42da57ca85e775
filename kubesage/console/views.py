"""What each page shows, shaped from run records for the templates. Every read goes through the
run store's interface (``kubesage.store.RunStore``) and the catalog's, as the CLI's do; nothing
here queries a database itself."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from kubesage.console.graph import collapsed_tasks, deps_of, item_label, summary
from kubesage.runs.record import TERMINAL, RunRecord, StepRecord
from kubesage.store import RunStore
from kubesage.tracking.compare import comparison, curves

PAGE_SIZE = 50
LINKED = 200  # runs shown on a lineage page, newest first
LIVE = ("running", "pending")


@dataclass
class Filters:
    """The runs list's filters, as the query string gives them."""

    pipeline: str = ""
    status: str = ""
    target: str = ""
    user: str = ""
    tag: str = ""  # KEY=VALUE
    prefix: str = ""
    page: int = 1

    def tags(self) -> dict[str, str]:
        key, sep, value = self.tag.partition("=")
        return {key.strip(): value.strip()} if sep and key.strip() else {}

    def store_args(self) -> dict[str, Any]:
        """The filters as ``RunStore.list`` and ``count`` take them."""
        return {"pipeline": self.pipeline or None, "status": self.status or None,
                "target": self.target or None, "user": self.user or None,
                "tags": self.tags() or None, "prefix": self.prefix or None}

    def query(self, **change: Any) -> str:
        """The query string of these filters, with ``change`` applied."""
        from urllib.parse import urlencode

        values = {k: getattr(self, k) for k in ("pipeline", "status", "target", "user", "tag",
                                                 "prefix", "page")}
        values.update(change)
        return urlencode({k: v for k, v in values.items() if v and not (k == "page" and v == 1)})


def when(t: float | None) -> str:
    return "" if not t else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def took(start: float | None, end: float | None) -> str:
    """A duration for people: ``4.2 s``, ``3 min 05 s``, ``1 h 02 min``."""
    if not start:
        return ""
    seconds = max(0.0, (end or time.time()) - start)
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def row(record: RunRecord) -> dict[str, Any]:
    """One line of the runs list."""
    done = sum(s.status in TERMINAL for s in record.steps)
    return {"run_id": record.run_id, "pipeline": record.pipeline, "status": record.status,
            "target": record.target, "remote": bool(record.remote), "runner": record.runner,
            "started": when(record.started), "took": took(record.started, record.ended),
            "steps": f"{done}/{len(record.steps)}", "user": record.user,
            "tags": sorted(record.tags.items()), "failed": [s.name for s in record.steps
                                                           if s.status == "failed"]}


def runs_page(store: RunStore, filters: Filters) -> dict[str, Any]:
    """The runs list: a page of runs, the filters' choices, and paging."""
    args = filters.store_args()
    total = store.count(**args)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(max(1, filters.page), pages)
    records = store.list(limit=PAGE_SIZE, offset=(page - 1) * PAGE_SIZE, **args)
    return {"rows": [row(r) for r in records], "total": total, "page": page, "pages": pages,
            "facets": store.facets(), "filters": filters}


def runs_signature(store: RunStore, filters: Filters) -> list[tuple[Any, ...]]:
    """What the runs list shows, to tell when it changed."""
    args = filters.store_args()
    records = store.list(limit=PAGE_SIZE, offset=(max(1, filters.page) - 1) * PAGE_SIZE, **args)
    return [(r.run_id, r.status, r.ended, tuple(s.status for s in r.steps)) for r in records]


def timeline(record: RunRecord, collapsed: list[str] | None = None) -> list[dict[str, Any]]:
    """Each step's bar (a collapsed task's: one for all its items): queued (when its upstream
    steps had ended) to started to ended, as percentages of the run's span."""
    start = record.started
    end = max([record.ended or 0.0, *(s.ended or s.started or 0.0 for s in record.steps)])
    if record.status == "running":
        end = max(end, time.time())
    span = max(end - start, 1e-6)
    ended = {s.name: s.ended for s in record.steps}
    deps = deps_of(record)

    def pct(t: float | None) -> float:
        return round(100 * ((t or start) - start) / span, 2)

    lanes: dict[str, list[StepRecord]] = {}
    for s in record.steps:
        lanes.setdefault(s.task if s.task in (collapsed or []) else s.name, []).append(s)
    bars = []
    for name, steps in lanes.items():
        queued = min(max([start, *(ended[d] or start for d in deps[s.name])]) for s in steps)
        began = min((s.started or (None if s.status in LIVE else s.ended) or queued
                     for s in steps), default=queued)
        running = any(s.status == "running" for s in steps)
        finish = time.time() if running else max((s.ended or 0.0 for s in steps), default=0.0)
        one = steps[0]
        bars.append({"name": name if len(steps) == 1 else f"{name} × {len(steps)}",
                     "status": summary(steps), "cached": all(s.cached for s in steps),
                     "queued": pct(queued), "wait": max(0.0, pct(began) - pct(queued)),
                     "start": pct(began),
                     "width": max(0.4, pct(finish) - pct(began)) if finish else 0.0,
                     "took": took(one.started, one.ended) if len(steps) == 1 and one.started
                     else took(began, finish or None) if finish else ""})
    return bars


def curve_charts(records: list[RunRecord], label: Any = None) -> list[dict[str, Any]]:
    """Every learning curve of ``records``, overlaid per ``step.metric`` (uPlot's data)."""
    charts = []
    for key, lines in sorted(curves(records).items()):
        xs = sorted({p[0] for _, points in lines for p in points})
        data: list[list[Any]] = [xs]
        names = []
        for record, points in lines:
            by_x = {p[0]: p[1] for p in points}
            data.append([by_x.get(x) for x in xs])
            names.append(label(record) if label else record.run_id)
        charts.append({"key": key, "data": data, "labels": names})
    return charts


def outputs(record: RunRecord, step: StepRecord) -> list[dict[str, Any]]:
    """A step's outputs: name, type, sha256, where, and whether it can be browsed here."""
    found = []
    for name, out in sorted(step.outputs.items()):
        found.append({"name": name, "type": out.get("type", ""), "sha256": out.get("sha256", ""),
                      "path": out.get("path", ""), "uri": out.get("uri", ""),
                      "metadata": out.get("metadata") or {}})
    return found


def cache_source(store: RunStore, step: StepRecord) -> str:
    """The run a cache hit reused: as recorded, else the cache entry's (its key)."""
    if step.cached_from or not step.cached or not step.cache_key:
        return step.cached_from
    entry = store.cache_get(step.cache_key)
    return str(entry.get("run_id", "")) if entry else ""


def run_page(store: RunStore, record: RunRecord, expand: bool = False) -> dict[str, Any]:
    """Everything the run page shows but the graph (``graph.render``). A task of a loop over
    many items is one summary (its items as chips) unless ``expand``."""
    collapsed = [] if expand else collapsed_tasks(record)
    steps = []
    groups: dict[str, dict[str, Any]] = {t: {"task": t, "items": []} for t in collapsed}
    for s in record.steps:
        if s.task in groups:
            groups[s.task]["items"].append({"name": s.name, "item": item_label(record, s),
                                            "status": s.status, "cached": s.cached})
            continue
        steps.append({"step": s, "item": item_label(record, s), "took": took(s.started, s.ended),
                      "cached_from": cache_source(store, s), "outputs": outputs(record, s),
                      "metrics": sorted(s.metrics.items())})
    for task, group in groups.items():
        members = [s for s in record.steps if s.task == task]
        group.update(count=len(members), state=summary(members), component=members[0].component,
                     counts=sorted(Counter(s.status for s in members).items()))
    return {"record": record, "row": row(record), "steps": steps,
            "collapsed": list(groups.values()), "expand": expand,
            "timeline": timeline(record, collapsed),
            "charts": curve_charts([record], label=lambda r: r.run_id),
            "models": models_of(record), "live": record.status == "running"}


def compare_page(records: list[RunRecord]) -> dict[str, Any]:
    """Runs side by side: the parameters that differ, metrics, and their curves overlaid."""
    return {"records": records, "rows": comparison(records),
            "charts": curve_charts(records)}


def lineage_of_model(store: RunStore, sha256: str) -> dict[str, Any]:
    """Back from a model (its sha256) to the runs that made it, with their data, code and images,
    and the endpoints that serve them."""
    made = [store.get(run_id) for run_id in store.linked("model", sha256, limit=LINKED)]
    ids = {r.run_id for r in made}
    serving = [d for d in store.deploys() if ids & set((d.get("runs") or {}).values())]
    return {"sha256": sha256, "runs": made, "deploys": serving,
            "outputs": [(r, s.name, n) for r in made for s in r.steps
                        for n, o in s.outputs.items() if o.get("sha256") == sha256]}


def models_of(record: RunRecord) -> list[tuple[str, str, str]]:
    """The models a run made: (step, output, sha256)."""
    return [(s.name, n, str(o["sha256"])) for s in record.steps for n, o in s.outputs.items()
            if (o.get("type") == "Model" or n in ("model", "model.tar.gz")) and o.get("sha256")]


def lineage_of_data(store: RunStore, fingerprint: str) -> dict[str, Any]:
    """Forward from a data fingerprint to every run that read it and every model they made."""
    runs = [store.get(run_id) for run_id in store.linked("data", fingerprint, limit=LINKED)]
    return {"fingerprint": fingerprint, "runs": runs,
            "models": [(r, step, out, sha) for r in runs for step, out, sha in models_of(r)]}


def lineage_of(store: RunStore, kind: str, value: str) -> list[RunRecord]:
    """The runs linked to an image or code hash (newest first)."""
    return [store.get(run_id) for run_id in store.linked(kind, value, limit=LINKED)]

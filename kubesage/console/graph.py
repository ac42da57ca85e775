"""A run's graph, laid out by Graphviz's ``dot`` and drawn as SVG on the server.

The graph comes from the record alone (each step's upstream steps and groups, the loops and
conditions as the user wrote them; see ``kubesage.plan.graph``), so any run in a team's store is
drawn on any machine. A record from before the graph was kept is drawn from its data flow (an
input path that is another step's output). Loops and conditions are nested clusters labelled as
written; a loop item is labelled with its item; a cache hit links to the run it reused.

Layout is the slow part (about 80 ms for 200 steps), and a step's state is not part of it: the
laid-out SVG is cached by the graph's shape, and each request only marks every node with its
step's state (``class="node st-running"``, ``data-step``, ``data-state``). A loop over more than
``LOOP_DRAWN`` items is drawn as one node per task, with the loop's cluster as written, and its
items are listed beside the graph as chips, one per step with its state (as Argo and Flyte show
a large map): a page of a 1,000-item fan-out stays readable and quick.
"""

from __future__ import annotations

import hashlib
import html
import re
import shutil
import subprocess
import threading
from collections import OrderedDict
from urllib.parse import quote

from kubesage.runs.record import RunRecord, StepRecord

DOT_TIMEOUT_S = 30
_CACHE_SIZE = 256
_cache: OrderedDict[str, str] = OrderedDict()
_lock = threading.Lock()
_INDEX = re.compile(r"\[(\d+)\]")


class GraphUnavailable(Exception):
    """Graphviz's ``dot`` is not installed (or failed): the page says so and lists the steps."""


def _q(text: str) -> str:
    """A DOT string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def deps_of(record: RunRecord) -> dict[str, list[str]]:
    """Each step's upstream steps: as recorded, else from the data flow (an input read from
    another step's output folder)."""
    names = {s.name for s in record.steps}
    if any(s.deps for s in record.steps):
        return {s.name: [d for d in s.deps if d in names] for s in record.steps}
    producers = {str(out.get("path")): s.name for s in record.steps
                 for out in s.outputs.values() if out.get("path")}
    return {s.name: sorted({producers[str(i.get("path"))] for i in s.inputs.values()
                            if str(i.get("path")) in producers} - {s.name})
            for s in record.steps}


def item_label(record: RunRecord, step: StepRecord) -> str:
    """The loop item(s) a step runs for, as values (``'client-a'``), else ``""``."""
    loops = [g for g in step.groups if record.groups.get(g, {}).get("kind") == "loop"]
    indexes = [int(i) for i in _INDEX.findall(step.name[len(step.task):])] if step.task else []
    values = []
    for loop, index in zip(loops, indexes, strict=False):
        items = record.groups[loop].get("items") or []
        values.append(repr(items[index]) if index < len(items) else f"#{index}")
    return ", ".join(values)


def _node(record: RunRecord, step: StepRecord, index: int) -> str:
    label = step.task or step.name
    item = item_label(record, step)
    if item:
        label += f"\n{item}"
    elif step.name != label:
        label = step.name
    attrs = {"id": f"n{index}", "label": label, "tooltip": f"{step.name}: {step.component}"}
    if step.cached and step.cached_from and step.cached_from != record.run_id:
        attrs["label"] = label + f"\ncached from {step.cached_from[-6:]}"
        attrs["URL"] = f"/runs/{quote(step.cached_from, safe='')}#step-{quote(step.name)}"
        attrs["tooltip"] = f"{step.name}: a cache hit, reused from run {step.cached_from}"
    else:
        attrs["URL"] = f"#step-{quote(step.name)}"
    return f"n{index} [" + " ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "];"


LOOP_DRAWN = 16  # a loop over more items is drawn as one node per task, its items as chips
_RANK = ("running", "failed", "abandoned", "cancelled", "pending", "not_run", "succeeded",
         "skipped")


def collapsed_tasks(record: RunRecord) -> list[str]:
    """Tasks inside a loop over more than ``LOOP_DRAWN`` items (in step order)."""
    big = {g for g, doc in record.groups.items()
           if doc.get("kind") == "loop" and len(doc.get("items") or []) > LOOP_DRAWN}
    found: dict[str, None] = {}
    for s in record.steps:
        if s.task and big & set(s.groups):
            found.setdefault(s.task)
    return list(found)


def nodes_of(record: RunRecord) -> dict[str, str]:
    """Each step's node: its own (``n<index>``), or its task's (``t<index>``) when collapsed."""
    tasks = {task: f"t{i}" for i, task in enumerate(collapsed_tasks(record))}
    return {s.name: tasks.get(s.task, f"n{i}") for i, s in enumerate(record.steps)}


def summary(steps: list[StepRecord]) -> str:
    """One state for many steps: running while any runs, failed if any failed, ..."""
    states = {s.status for s in steps}
    return next((state for state in _RANK if state in states), "pending")


def _task_node(node: str, task: str, steps: list[StepRecord]) -> str:
    attrs = {"id": node, "label": f"{task}\n× {len(steps)} items",
             "tooltip": f"{task}: one step per item, {len(steps)} items (below)",
             "URL": f"#items-{quote(task)}"}
    return f"{node} [" + " ".join(f"{k}={_q(v)}" for k, v in attrs.items()) + "];"


def to_dot(record: RunRecord) -> str:
    """The DOT source of the run's graph (no states in it: they are marked after layout)."""
    node = nodes_of(record)
    members: dict[str, list[StepRecord]] = {}
    tree: dict[tuple[str, ...], list[str]] = {}
    for s in record.steps:
        members.setdefault(node[s.name], []).append(s)
        if len(members[node[s.name]]) == 1:
            tree.setdefault(tuple(g for g in s.groups if g in record.groups), []).append(
                node[s.name])
    lines = ["digraph run {", 'rankdir=LR; bgcolor="transparent"; nodesep=0.15; ranksep=0.35;',
             'node [shape=box style="rounded,filled" fontname="Helvetica" fontsize=11 '
             'fillcolor="#ffffff" color="#888888" height=0.3 margin="0.12,0.04"];',
             'edge [color="#999999" arrowsize=0.6];']
    drawn = {n: (_node(record, steps[0], int(n[1:])) if n.startswith("n")
                 else _task_node(n, steps[0].task, steps)) for n, steps in members.items()}
    lines += _clusters(record, tree, (), drawn)
    edges: dict[tuple[str, str], None] = {}
    for name, deps in deps_of(record).items():
        for d in deps:
            if node[d] != node[name]:
                edges.setdefault((node[d], node[name]))
    lines += [f"{a} -> {b};" for a, b in edges]
    lines.append("}")
    return "\n".join(lines)


def _clusters(record: RunRecord, tree: dict[tuple[str, ...], list[str]],
              path: tuple[str, ...], drawn: dict[str, str]) -> list[str]:
    """Nodes directly in the group ``path``, then each group nested in it as a cluster."""
    out = [drawn[n] for n in tree.get(path, [])]
    children = sorted({key[len(path)] for key in tree if len(key) > len(path)
                       and key[:len(path)] == path}, key=lambda g: list(record.groups).index(g))
    for group in children:
        doc = record.groups[group]
        label = doc.get("written", group)
        if doc.get("kind") == "loop" and doc.get("items") is not None:
            label += f"  ({len(doc['items'])} items)"
        style = "dashed" if doc.get("kind") == "condition" else "rounded"
        out.append(f"subgraph cluster_{re.sub(r'[^A-Za-z0-9_]', '_', group)} {{ label={_q(label)}; "
                   f'style="{style}"; color="#b0b0b0"; fontname="Helvetica"; fontsize=10; '
                   'labeljust="l";')
        out += _clusters(record, tree, (*path, group), drawn)
        out.append("}")
    return out


def layout(dot: str) -> str:
    """The SVG ``dot`` lays out for ``dot`` (cached by the source)."""
    key = hashlib.sha256(dot.encode()).hexdigest()
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    program = shutil.which("dot")
    if program is None:
        raise GraphUnavailable("Graphviz is not installed (apt install graphviz, brew install "
                               "graphviz): the steps are listed below instead")
    try:
        done = subprocess.run([program, "-Tsvg"], input=dot.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise GraphUnavailable(f"Graphviz took over {DOT_TIMEOUT_S} s to lay the graph out") from None
    if done.returncode != 0:
        raise GraphUnavailable(f"Graphviz failed: {done.stderr.decode(errors='replace')[:200]}")
    svg = done.stdout.decode()
    svg = svg[svg.index("<svg"):]  # drop the XML prolog and doctype: the SVG goes inline
    with _lock:
        _cache[key] = svg
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return svg


def render(record: RunRecord) -> str:
    """The run's graph as inline SVG, each node marked with its step's state (a collapsed
    task's node with the state of its items together)."""
    svg = layout(to_dot(record))
    members: dict[str, list[StepRecord]] = {}
    for step, node in zip(record.steps, nodes_of(record).values(), strict=True):
        members.setdefault(node, []).append(step)
    for node, steps in members.items():
        one = steps[0]
        if node.startswith("n"):
            state, name = one.status + (" cached" if one.cached else ""), one.name
            extra = ""
        else:
            state, name = summary(steps) + " group", one.task
            extra = f' data-items="{len(steps)}"'
        svg = svg.replace(
            f'<g id="{node}" class="node">',
            f'<g id="{node}" class="node st-{state}" data-step="{html.escape(name)}" '
            f'data-state="{html.escape(state.split()[0])}"{extra}>', 1)
    return svg

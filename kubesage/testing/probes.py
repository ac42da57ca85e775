"""Probes: tiny components, one contract feature each, that check a target end to end.

Parameters, artifacts and their metadata, conditions, fan-out, retries, the cache, returned
values, distributed steps and failures. They are deterministic (the same bytes on every run and
every target: no timestamps, no absolute paths in what they write), use only the standard
library (torch only in ``diag_allreduce``, imported inside), and run in seconds. They ship with
kubesage (so every image built from it holds them): tests/conformance/ runs them on every
execution path and compares the results, and a team can run them on its own cluster.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from kubesage import Artifact, Dataset, Distribution, Input, Metrics, Model, Output, Secret, component


def _tree(path: str) -> dict[str, str]:
    """``{relative file path: sha256 of its bytes}`` of a folder (of a file: ``{name: sha}``)."""
    def digest(file: str) -> str:
        with open(file, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    if os.path.isfile(path):
        return {os.path.basename(path): digest(path)}
    found = {}
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in files:
            full = os.path.join(root, name)
            found[os.path.relpath(full, path).replace(os.sep, "/")] = digest(full)
    return dict(sorted(found.items()))


def _write_json(path: str, doc: object) -> None:
    with open(path, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")


@component(version="1.0.0")
def diag_params(
    received: Output[Artifact],
    text: str,
    count: int,
    ratio: float,
    flag: bool,
    items: list,
    options: dict,
) -> str:
    """Diagnostic a team can run to check a target end to end: parameters of every type.

    Writes what it received (each value with its Python type) to ``received/params.json`` and
    returns the same document as a JSON string, so a target that turns ``False`` into
    ``"False"``, ``3`` into ``3.0`` or a dict into its text shows up in both.
    """
    seen = {name: {"type": type(value).__name__, "value": value}
            for name, value in (("text", text), ("count", count), ("ratio", ratio),
                                ("flag", flag), ("items", items), ("options", options))}
    _write_json(received.file("params.json"), seen)
    received.metadata["parameters"] = len(seen)
    return json.dumps(seen, sort_keys=True)


@component(version="1.0.0")
def diag_make_artifacts(
    artifact: Output[Artifact],
    dataset: Output[Dataset],
    model: Output[Model],
    metrics: Output[Metrics],
    rows: int = 4,
) -> None:
    """Diagnostic a team can run to check a target end to end: artifacts of every type.

    Fills an Artifact, a Dataset (with a nested folder), a Model and Metrics, each with
    metadata; ``diag-read-artifacts`` checks them downstream.
    """
    with open(artifact.file("notes.txt"), "w") as f:
        f.write("diagnostic artifact\n")
    artifact.metadata.update({"kind": "notes", "lines": 1})
    with open(dataset.file("data.csv"), "w") as f:
        f.write("id,value\n" + "".join(f"{i},{i * i}\n" for i in range(rows)))
    os.makedirs(dataset.file("parts"), exist_ok=True)
    with open(dataset.file(os.path.join("parts", "part-0.txt")), "w") as f:
        f.write("part 0\n")
    dataset.metadata.update({"rows": rows, "columns": ["id", "value"]})
    _write_json(model.file("weights.json"), {"w": [0.5, -1.0], "b": 0.25})
    model.metadata.update({"framework": "none", "parameters": 3})
    metrics.log_metric("score", 0.75)
    metrics.log_metric("rows", rows)


@component(version="1.0.0")
def diag_read_artifacts(
    artifact: Input[Artifact],
    dataset: Input[Dataset],
    model: Input[Model],
    metrics: Input[Metrics],
    seen: Output[Dataset],
    rows: int = 4,
) -> str:
    """Diagnostic a team can run to check a target end to end: reading artifacts of every type.

    Writes the files (relative path and sha256) and the metadata of each input it was given
    to ``seen/seen.json`` and returns ``"ok"``, or what was missing or wrong.
    """
    inputs = {"artifact": artifact, "dataset": dataset, "model": model, "metrics": metrics}
    doc: dict[str, Any] = {name: {"files": _tree(a.path) if os.path.exists(a.path) else None,
                  "is_folder": os.path.isdir(a.path), "metadata": a.metadata}
           for name, a in inputs.items()}
    expected_files = {"artifact": ["notes.txt"], "dataset": ["data.csv", "parts/part-0.txt"],
                      "model": ["weights.json"], "metrics": ["metrics.json"]}
    expected_metadata = {
        "artifact": {"kind": "notes", "lines": 1},
        "dataset": {"rows": rows, "columns": ["id", "value"]},
        "model": {"framework": "none", "parameters": 3},
        "metrics": {"score": 0.75, "rows": float(rows)},
    }
    problems = []
    for name in inputs:
        files = doc[name]["files"]
        if files is None or not doc[name]["is_folder"]:
            problems.append(f"{name}: not a folder")
        elif sorted(files) != expected_files[name]:
            problems.append(f"{name}: files {sorted(files)}")
        if doc[name]["metadata"] != expected_metadata[name]:
            problems.append(f"{name}: metadata {json.dumps(doc[name]['metadata'], sort_keys=True)}")
    if not problems:
        with open(dataset.file("data.csv")) as f:
            if len(f.read().splitlines()) != rows + 1:
                problems.append("dataset: wrong row count")
    doc["problems"] = problems
    _write_json(seen.file("seen.json"), doc)
    seen.metadata["problems"] = len(problems)
    return "ok" if not problems else "; ".join(problems)


@component(version="1.0.0")
def diag_score(value: float) -> float:
    """Diagnostic a team can run to check a target end to end: a returned value that a
    ``Condition`` tests. Returns ``value`` unchanged."""
    return value


@component(version="1.0.0")
def diag_note(note: Output[Artifact], message: str = "ok") -> str:
    """Diagnostic a team can run to check a target end to end: a step that writes ``message``
    to ``note/message.txt`` and returns it (a gated step, a step before or after another)."""
    with open(note.file("message.txt"), "w") as f:
        f.write(message + "\n")
    note.metadata["length"] = len(message)
    return message


@component(version="1.0.0")
def diag_shout(word: str, shouted: Output[Artifact]) -> str:
    """Diagnostic a team can run to check a target end to end: one item of a fan-out.
    Writes ``word`` in capitals to ``shouted/word.txt`` and returns it."""
    loud = word.upper()
    with open(shouted.file("word.txt"), "w") as f:
        f.write(loud + "\n")
    shouted.metadata["word"] = word
    return loud


@component(version="1.0.0", retries=1)
def diag_flaky(attempt: Output[Artifact], marker: str = "flaky") -> int:
    """Diagnostic a team can run to check a target end to end: retries and the checkpoint folder.

    Counts its attempts in a file of ``KUBESAGE_CHECKPOINT_DIR`` (which survives a failed
    attempt of a step) and fails the first attempt on purpose; the retry succeeds and returns
    the attempt number, 2. A target without retries, or whose checkpoint folder does not
    survive an attempt, fails the step.
    """
    from kubesage.runtime.context import checkpoint_dir

    path = os.path.join(checkpoint_dir(), f"{marker}.attempts")
    count = 0
    if os.path.exists(path):
        with open(path) as f:
            count = int(f.read().strip() or 0)
    count += 1
    with open(path, "w") as f:
        f.write(str(count))
    if count == 1:
        print("diag-flaky: failing attempt 1 on purpose", flush=True)
        raise RuntimeError("diag-flaky: the first attempt fails on purpose")
    with open(attempt.file("attempt.txt"), "w") as f:
        f.write(f"succeeded on attempt {count}\n")
    attempt.metadata["attempt"] = count
    return count


@component(version="1.0.0")
def diag_write_lines(data: Output[Dataset], lines: int = 3, prefix: str = "line") -> int:
    """Diagnostic a team can run to check a target end to end: a cacheable producer.
    Writes ``lines`` numbered lines to ``data/lines.txt``; returns their count."""
    with open(data.file("lines.txt"), "w") as f:
        f.write("".join(f"{prefix} {i}\n" for i in range(lines)))
    data.metadata["lines"] = lines
    return lines


@component(version="1.0.0")
def diag_count_lines(data: Input[Dataset], summary: Output[Artifact]) -> int:
    """Diagnostic a team can run to check a target end to end: a cacheable consumer.
    Counts the lines of every file of ``data``; writes the counts to ``summary/counts.json``."""
    counts = {}
    for rel in _tree(data.path):
        with open(os.path.join(data.path, rel) if os.path.isdir(data.path) else data.path) as f:
            counts[rel] = len(f.read().splitlines())
    _write_json(summary.file("counts.json"), {"counts": counts, "metadata": data.metadata})
    total = sum(counts.values())
    summary.metadata["total"] = total
    return total


@component(version="1.0.0")
def diag_read_text(text: Input[Dataset], seen: Output[Artifact]) -> str:
    """Diagnostic a team can run to check a target end to end: a kubesage step reading the
    output of an imported Kubeflow container component. Writes every file it found (relative
    path and content) to ``seen/files.json``; returns their contents, joined in path order."""
    found = {}
    for rel in _tree(text.path):
        with open(os.path.join(text.path, rel) if os.path.isdir(text.path) else text.path) as f:
            found[rel] = f.read()
    _write_json(seen.file("files.json"), {"files": found, "is_folder": os.path.isdir(text.path)})
    return "".join(found[rel] for rel in sorted(found))


@component(version="1.0.0", distribution=Distribution(nodes=2, procs_per_node=1))
def diag_allreduce(report: Output[Metrics]) -> int:
    """Diagnostic a team can run to check a target end to end: a two-node distributed step.

    Every rank adds ``rank + 1`` with a gloo ``all_reduce``; returns the sum (3 on two nodes)
    and logs ``sum`` and ``world_size`` (2). A target that starts one process returns 1.
    """
    from kubesage.runtime.context import world

    place = world()
    total, size = place.rank + 1, place.world_size
    if place.distributed:
        import torch
        import torch.distributed as dist

        created = not dist.is_initialized()
        if created:
            dist.init_process_group(backend="gloo")
        value = torch.tensor([place.rank + 1], dtype=torch.int64)
        dist.all_reduce(value)
        total, size = int(value.item()), dist.get_world_size()
        if created:
            dist.destroy_process_group()
    print(f"diag-allreduce: rank {place.rank} of {size}: sum {total}", flush=True)
    report.log_metric("sum", total)
    report.log_metric("world_size", size)
    return total


@component(version="1.0.0")
def diag_add(total: Output[Artifact], value: int, amount: int = 1) -> int:
    """Diagnostic a team can run to check a target end to end: a returned value that a later
    step reads as a parameter. Returns ``value + amount``; writes it to ``total/value.txt``."""
    result = value + amount
    with open(total.file("value.txt"), "w") as f:
        f.write(f"{type(value).__name__} {value} + {amount} = {result}\n")
    return result


@component(version="1.0.0")
def diag_fail(reason: str = "on purpose") -> str:
    """Diagnostic a team can run to check a target end to end: a step that always fails, so
    the run fails and the steps after it do not run."""
    raise RuntimeError(f"diag-fail: failing {reason}")


@component(version="1.0.0")
def uses_secret(token: Secret, checked: Output[Artifact], label: str = "public") -> int:
    """Use a secret the way a step would (here: only its length), to check that kubesage never
    writes it down: not in records, logs, MLflow, webhooks or compiled files."""
    with open(checked.file("label.txt"), "w") as f:
        f.write(label)
    checked.metadata["label"] = label
    return len(token)


@component(version="1.0.0")
def fill(data: Output[Dataset], megabytes: int = 1) -> int:
    """Write ``megabytes`` MB into a dataset: checks how a target behaves when its disk fills."""
    block = b"\0" * (1 << 20)
    with open(data.file("fill.bin"), "wb") as f:
        for _ in range(megabytes):
            f.write(block)
    return megabytes


@component(version="1.0.0", mounts={"fsx": "/fsx"})
def diag_identity(seen: Output[Artifact]) -> str:
    """Who a step runs as and what it may write: ``uid=<n> gid=<n> data=read-only|writable
    outputs=writable``. It tries to create a file on the data mount (and removes it if it could)."""
    probe_file = "/fsx/.kubesage-write-probe"
    try:
        with open(probe_file, "w"):
            pass
        os.remove(probe_file)
        data = "writable"
    except OSError:
        data = "read-only"
    with open(seen.file("seen.txt"), "w") as f:
        f.write("written by the step")
    return f"uid={os.getuid()} gid={os.getgid()} data={data} outputs=writable"

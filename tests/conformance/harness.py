"""Run the conformance corpus on every execution path and normalize what each path recorded.

The four paths run one component contract:

- ``docker``: ``kubesage run PIPE --runner docker`` (the reference);
- ``subprocess``: ``kubesage run PIPE --runner subprocess``;
- ``kfp``: ``kubesage run PIPE --target kfp`` (the compiled IR YAML under kfp.local);
- ``sagemaker``: ``kubesage run PIPE --target sagemaker`` (the definition JSON, in Docker).

Every run goes through the command line (``--json``) with a fresh store per pipeline and path.
Exit code 3 is a named refusal (``error: ...`` on stderr); any other nonzero exit without a
run record is a harness failure. A record is normalized into what must be the same on every
path: the run status and exit code; per step its status, cached flag, returned values,
metrics (no throughput or timing metrics), and per output artifact its metadata and files
(relative path -> sha256), or the fact that the artifact is a single file instead of a folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "pipelines")
KUBESAGE = [sys.executable, "-m", "kubesage.cli"]

PATHS = ("docker", "subprocess", "kfp", "sagemaker")
REFERENCE = "docker"
RERUN_FEATURES = ("cached-rerun",)  # run twice on one store; the second run is compared too
REFUSED_EXIT = 3
RUN_TIMEOUT_S = float(os.environ.get("KUBESAGE_CONFORMANCE_TIMEOUT", "600"))
DROPPED_METRICS = ("per_s", "seconds")  # throughput and timings differ between any two runs


def features() -> list[str]:
    """Feature names of the corpus, one per module: ``condition_true.py`` -> ``condition-true``."""
    return sorted(f[:-3].replace("_", "-") for f in os.listdir(CORPUS)
                  if f.endswith(".py") and not f.startswith("_"))


def pipeline_file(feature: str) -> str:
    """The corpus file of ``feature``, relative to the repository root (as the CLI gets it)."""
    return os.path.relpath(os.path.join(CORPUS, feature.replace("-", "_") + ".py"), REPO)


# -- configs ---------------------------------------------------------------------------------
def write_local_config(folder: str, fsx: str, image_tag: str) -> str:
    path = os.path.join(folder, "local.yaml")
    doc = {"mounts": {"fsx": fsx}, "store": os.path.join(folder, "store"), "image_tag": image_tag}
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def write_kfp_config(folder: str, local_config: str) -> str:
    """config/kfp.yaml whose local runs use ``local_config``, with short retry back-offs and a
    checkpoint volume (a folder of the run locally), so KUBESAGE_CHECKPOINT_DIR exists."""
    with open(os.path.join(REPO, "config", "kfp.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["local"] = {"config": local_config}
    doc["retry"] = {"backoff": "1s", "factor": 1.0, "max": "10s"}
    doc["checkpoints"] = {"claim": "ckpt", "path": "/checkpoints"}
    path = os.path.join(folder, "kfp.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def write_sagemaker_config(folder: str, fsx: str, image_tag: str) -> str:
    from tests.sagemaker_fixtures import write_sagemaker_config as write

    return write(folder, fsx=fsx, store=os.path.join(folder, "store"), image_tag=image_tag)


def run_command(path: str, pipeline: str, folder: str, fsx: str, image_tag: str) -> list[str]:
    """The ``kubesage run`` arguments of ``pipeline`` on ``path``, its configs written to ``folder``."""
    os.makedirs(folder, exist_ok=True)
    if path in ("docker", "subprocess"):
        config = write_local_config(folder, fsx, image_tag)
        return ["run", pipeline, "--runner", path, "--config", config, "--json"]
    if path == "kfp":
        config = write_kfp_config(folder, write_local_config(folder, fsx, image_tag))
        return ["run", pipeline, "--target", "kfp", "--config", config, "--json"]
    if path == "sagemaker":
        config = write_sagemaker_config(folder, fsx, image_tag)
        return ["run", pipeline, "--target", "sagemaker", "--config", config, "--json"]
    raise ValueError(f"unknown path {path!r}; use one of {', '.join(PATHS)}")


# -- running ---------------------------------------------------------------------------------
@dataclass
class Attempt:
    """One ``kubesage run``: its exit code, its record (when it printed one) and its stderr."""

    returncode: int
    record: dict[str, Any] | None
    stderr: str
    wall_s: float

    @property
    def error_line(self) -> str:
        """The last ``error: ...`` line of stderr (the CLI's one-line reason), without the prefix."""
        for line in reversed(self.stderr.strip().splitlines()):
            if line.startswith("error:"):
                return line[len("error:"):].strip()
        return ""


@dataclass
class Outcome:
    """What one (feature, path) gave: normalized runs, a refusal, or a harness failure."""

    feature: str
    path: str
    attempts: list[Attempt] = field(default_factory=list)
    refused: str | None = None  # the reason of an exit-3 refusal ("" when it gave none)
    failure: str | None = None  # no usable record: why
    normalized: dict[str, Any] | None = None

    @property
    def records(self) -> list[dict[str, Any]]:
        return [a.record for a in self.attempts if a.record is not None]

    @property
    def wall_s(self) -> float:
        return round(sum(a.wall_s for a in self.attempts), 1)


def run_cli(args: list[str], timeout: float = RUN_TIMEOUT_S) -> Attempt:
    start = time.monotonic()
    try:
        proc = subprocess.run([*KUBESAGE, *args], cwd=REPO, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return Attempt(-1, None, err + f"\n(timed out after {timeout:.0f} s)",
                       time.monotonic() - start)
    record = None
    if proc.stdout.strip():
        try:
            record = json.loads(proc.stdout)
        except ValueError:
            record = None
    return Attempt(proc.returncode, record, proc.stderr, time.monotonic() - start)


def run_feature(feature: str, path: str, folder: str, fsx: str, image_tag: str) -> Outcome:
    """Run ``feature`` on ``path`` (twice for a re-run feature) in a fresh store under ``folder``."""
    outcome = Outcome(feature, path)
    args = run_command(path, pipeline_file(feature), folder, fsx, image_tag)
    for _ in range(2 if feature in RERUN_FEATURES else 1):
        attempt = run_cli(args)
        outcome.attempts.append(attempt)
        if attempt.record is not None:
            continue
        if attempt.returncode == REFUSED_EXIT:
            outcome.refused = attempt.error_line
        elif attempt.returncode == -1:
            outcome.failure = f"timed out after {RUN_TIMEOUT_S:.0f} s without a run record"
        else:
            reason = attempt.error_line or _tail(attempt.stderr)
            outcome.failure = f"exit {attempt.returncode} without a run record: {reason}"
        break
    if outcome.refused is None and outcome.failure is None:
        outcome.normalized = normalize_runs([(a.returncode, a.record) for a in outcome.attempts
                                             if a.record is not None])
    return outcome


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    return " / ".join(kept) if kept else "(no output)"


# -- normalizing -----------------------------------------------------------------------------
def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(path: str) -> dict[str, Any]:
    """``{"kind": "folder", "files": {relative path: sha256}}`` of an artifact's folder; a single
    file (a ``model.tar.gz``) is ``{"kind": "file", "name": ..., "sha256": ...}``."""
    if not path or not os.path.exists(path):
        return {"kind": "missing", "path": path}
    if os.path.isfile(path):
        return {"kind": "file", "name": os.path.basename(path), "sha256": file_sha256(path)}
    files = {}
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in names:
            full = os.path.join(root, name)
            files[os.path.relpath(full, path).replace(os.sep, "/")] = file_sha256(full)
    return {"kind": "folder", "files": dict(sorted(files.items()))}


def normalize(record: dict[str, Any], returncode: int | None = None) -> dict[str, Any]:
    """What must be the same on every path, from one run record."""
    steps = {}
    for step in record.get("steps", []):
        steps[step["name"]] = {
            "status": step.get("status"),
            "cached": step.get("cached"),
            "returns": step.get("returns", {}),
            "metrics": {k: v for k, v in sorted(step.get("metrics", {}).items())
                        if not any(word in k for word in DROPPED_METRICS)},
            "outputs": {name: {"metadata": out.get("metadata", {}),
                               **artifact_files(out.get("path", ""))}
                        for name, out in sorted(step.get("outputs", {}).items())},
        }
    return {"status": record.get("status"), "exit_code": returncode,
            "steps": dict(sorted(steps.items()))}


def normalize_runs(runs: list[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """The first run normalized; a re-run's runs under ``"rerun"`` (the second, ...)."""
    first = normalize(runs[0][1], runs[0][0])
    if len(runs) > 1:
        first["rerun"] = [normalize(record, code) for code, record in runs[1:]]
    return first


# -- comparing -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Difference:
    """One field where a path's normalized run differs from the reference's."""

    where: str  # "run", "step 'x'", "second run: step 'x'"
    field: str  # "status", "returns", "output 'model'"...
    expected: Any
    got: Any
    summary: str  # short, for the matrix

    def describe(self, path: str) -> str:
        return (f"{self.where} field '{self.field}': {REFERENCE} gives {_short(self.expected)}, "
                f"{path} gives {_short(self.got)}")


def _short(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def compare(reference: dict[str, Any], got: dict[str, Any], prefix: str = "") -> list[Difference]:
    """Field by field differences of ``got`` from ``reference`` (both from ``normalize``)."""
    diffs: list[Difference] = []
    run = f"{prefix}run"
    for key in ("status", "exit_code"):
        if reference.get(key) != got.get(key):
            diffs.append(Difference(run, key, reference.get(key), got.get(key),
                                    f"{prefix}run {key} {got.get(key)} instead of {reference.get(key)}"))
    ref_steps, got_steps = reference["steps"], got["steps"]
    missing = [s for s in ref_steps if s not in got_steps]
    extra = [s for s in got_steps if s not in ref_steps]
    if missing:
        diffs.append(Difference(run, "steps", sorted(ref_steps), sorted(got_steps),
                                f"{prefix}missing steps {', '.join(missing)}"))
    if extra:
        diffs.append(Difference(run, "steps", sorted(ref_steps), sorted(got_steps),
                                f"{prefix}extra steps {', '.join(extra)}"))
    for name in ref_steps:
        if name in got_steps:
            diffs.extend(_compare_step(f"{prefix}step '{name}'", ref_steps[name], got_steps[name]))
    ref_reruns, got_reruns = reference.get("rerun", []), got.get("rerun", [])
    for i, (r, g) in enumerate(zip(ref_reruns, got_reruns, strict=False)):
        diffs.extend(compare(r, g, prefix=f"{_ordinal(i + 2)} run: "))
    if len(ref_reruns) != len(got_reruns):
        diffs.append(Difference(run, "reruns", len(ref_reruns), len(got_reruns),
                                f"{len(got_reruns)} re-runs instead of {len(ref_reruns)}"))
    return diffs


def _ordinal(n: int) -> str:
    return {2: "second", 3: "third"}.get(n, f"run {n}")


def _compare_step(where: str, ref: dict[str, Any], got: dict[str, Any]) -> list[Difference]:
    diffs = []
    for key in ("status", "cached", "returns", "metrics"):
        if ref[key] != got[key]:
            diffs.append(Difference(where, key, ref[key], got[key],
                                    f"{where} {key} {_short(got[key], 80)} instead of "
                                    f"{_short(ref[key], 80)}"))
    for name in sorted(set(ref["outputs"]) | set(got["outputs"])):
        field_name = f"output '{name}'"
        r, g = ref["outputs"].get(name), got["outputs"].get(name)
        if r is None or g is None:
            diffs.append(Difference(where, field_name, r, g,
                                    f"{where} {'has an extra' if r is None else 'lacks'} output '{name}'"))
            continue
        if r["kind"] != g["kind"]:
            what = {"file": f"a file {g.get('name')}", "missing": "missing",
                    "folder": "a folder"}[g["kind"]]
            want = {"file": "a file", "missing": "missing", "folder": "a folder"}[r["kind"]]
            diffs.append(Difference(where, field_name, r, g,
                                    f"{where} output '{name}' is {what} instead of {want}"))
        elif r["kind"] == "folder" and r["files"] != g["files"]:
            if sorted(r["files"]) != sorted(g["files"]):
                summary = (f"{where} output '{name}' files {sorted(g['files'])} instead of "
                           f"{sorted(r['files'])}")
            else:
                changed = [f for f in r["files"] if r["files"][f] != g["files"][f]]
                summary = f"{where} output '{name}' content of {', '.join(changed)} differs"
            diffs.append(Difference(where, f"{field_name} files", r["files"], g["files"], summary))
        elif r["kind"] == "file" and r != {**g, "metadata": r["metadata"]}:
            diffs.append(Difference(where, field_name, r, g,
                                    f"{where} output '{name}' file differs"))
        if r["metadata"] != g["metadata"]:
            diffs.append(Difference(where, f"{field_name} metadata", r["metadata"], g["metadata"],
                                    f"{where} output '{name}' metadata {_short(g['metadata'], 80)} "
                                    f"instead of {_short(r['metadata'], 80)}"))
    return diffs


def verdict(reference: Outcome | None, outcome: Outcome) -> str:
    """``same``, ``refused: <reason>`` or ``differs: <short what>`` of a path against docker."""
    if outcome.refused is not None:
        return (f"refused: {outcome.refused}" if outcome.refused
                else "differs: exit 3 (refusal) without an 'error: ...' reason")
    if outcome.failure is not None:
        return f"differs: {outcome.failure}"
    if reference is None or reference.normalized is None:
        why = (reference.failure or f"refused: {reference.refused}") if reference else "not run"
        return f"differs: no {REFERENCE} reference ({why})"
    assert outcome.normalized is not None
    diffs = compare(reference.normalized, outcome.normalized)
    if not diffs:
        return "same"
    return "differs: " + "; ".join(d.summary for d in diffs)


# -- results ---------------------------------------------------------------------------------
def write_results(path: str, outcomes: dict[tuple[str, str], str],
                  details: dict[tuple[str, str], dict[str, Any]] | None = None,
                  wall_s: float | None = None) -> None:
    """The matrix as JSON: ``results[feature][path]`` is the outcome text."""
    results: dict[str, dict[str, str]] = {}
    for (feature, path), text in sorted(outcomes.items()):
        results.setdefault(feature, {})[path] = text
    doc: dict[str, Any] = {"schema": "kubesage.conformance/v1", "paths": list(PATHS),
                           "features": sorted(results), "results": results}
    if details:
        doc["details"] = {f"{feature}/{path}": d for (feature, path), d in sorted(details.items())}
    if wall_s is not None:
        doc["wall_s"] = round(wall_s, 1)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)

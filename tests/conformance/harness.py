"""Run the conformance corpus on every execution path and normalize what each path recorded.

The paths run one component contract:

- ``docker``: ``kubesage run PIPE --runner docker`` (the reference);
- ``subprocess``: ``kubesage run PIPE --runner subprocess``;
- ``kfp``: ``kubesage run PIPE --target kfp`` (the compiled IR YAML under kfp.local), with the
  target's default ``fusion: auto`` (steps that can share a pod run as one task);
- ``kfp-unfused``: the same with ``fusion: off`` (one task per step);
- ``sagemaker``: ``kubesage run PIPE --target sagemaker`` (the definition JSON, in Docker), with
  ``fusion: auto``; ``sagemaker-unfused``: with ``fusion: off``.

The corpus's steps take a second, and the fused paths' configs say so
(``fusion.assumed_duration_s``), so that the cost model lets them share a job across instance
classes too (a training job with its followers). A fused path's verdict names what ran fused.

Every run goes through the command line (``--json``) with a fresh store per pipeline and path.
Exit code 3 is a named refusal (``error: ...`` on stderr); any other nonzero exit without a
run record is a harness failure. A record is normalized into what must be the same on every
path: the run status and exit code; per step its status, cached flag, returned values,
metrics (no throughput or timing metrics), and per output artifact its metadata and files
(relative path -> sha256), or the fact that the artifact is a single file instead of a folder.
"""

from __future__ import annotations

import errno
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

PATHS = ("docker", "subprocess", "kfp", "kfp-unfused", "sagemaker", "sagemaker-unfused")
UNFUSED = "-unfused"  # a cloud path with fusion: off
CORPUS_STEP_S = 5.0  # about what a corpus step takes, for the fused paths' cost model
REFERENCE = "docker"
RERUN_FEATURES = ("cached-rerun",)  # run twice on one store; the second run is compared too
SLOW_FEATURES = ("distributed", "cached-rerun")  # started first, so that they end in time
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


def fusion_setting(fused: bool) -> dict[str, Any]:
    """``fusion:`` of a cloud path's config."""
    return {"mode": "auto", "assumed_duration_s": CORPUS_STEP_S} if fused else {"mode": "off"}


def write_kfp_config(folder: str, local_config: str, fused: bool = True) -> str:
    """config/kfp.yaml whose local runs use ``local_config``, with short retry back-offs and a
    checkpoint volume (a folder of the run locally), so KUBESAGE_CHECKPOINT_DIR exists."""
    with open(os.path.join(REPO, "config", "kfp.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["local"] = {"config": local_config}
    doc["fusion"] = fusion_setting(fused)
    doc["retry"] = {"backoff": "1s", "factor": 1.0, "max": "10s"}
    doc["checkpoints"] = {"claim": "ckpt", "path": "/checkpoints"}
    path = os.path.join(folder, "kfp.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def write_sagemaker_config(folder: str, fsx: str, image_tag: str, fused: bool = True) -> str:
    """config/sagemaker.yaml with the target's defaults for conditions: one that does not hold
    skips its steps, as on every path (the example config opts into a failing FailStep)."""
    from tests.sagemaker_fixtures import write_sagemaker_config as write

    return write(folder, fsx=fsx, store=os.path.join(folder, "store"), image_tag=image_tag,
                 conditions=None, fusion=fusion_setting(fused))


def run_command(path: str, pipeline: str, folder: str, fsx: str, image_tag: str) -> list[str]:
    """The ``kubesage run`` arguments of ``pipeline`` on ``path``, its configs written to ``folder``."""
    os.makedirs(folder, exist_ok=True)
    if path in ("docker", "subprocess"):
        config = write_local_config(folder, fsx, image_tag)
        return ["run", pipeline, "--runner", path, "--config", config, "--json"]
    fused = not path.endswith(UNFUSED)
    if path.removesuffix(UNFUSED) == "kfp":
        config = write_kfp_config(folder, write_local_config(folder, fsx, image_tag), fused)
        return ["run", pipeline, "--target", "kfp", "--config", config, "--json"]
    if path.removesuffix(UNFUSED) == "sagemaker":
        config = write_sagemaker_config(folder, fsx, image_tag, fused)
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


def _environ() -> dict[str, str]:
    """A copy of this process's environment, from any thread. The harness's threads outlive the
    test that started them, and pytest's main thread sets and removes PYTEST_CURRENT_TEST between
    tests: a copy made while a key goes raises KeyError (seen once in CI); copy again."""
    while True:
        try:
            return dict(os.environ)
        except KeyError:
            continue


def _spawn(args: list[str], timeout: float, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """The CLI in a process of its own. Starting it is tried again when the kernel refuses the
    exec itself (EFAULT, seen once in CI while the harness starts CLIs from several threads):
    that is this machine failing to start a process, not the path under test failing."""
    for tries_left in (2, 1, 0):
        try:
            return subprocess.run([*KUBESAGE, *args], cwd=REPO, capture_output=True, text=True,
                                  timeout=timeout, env={**_environ(), **(env or {})})
        except OSError as e:
            if e.errno != errno.EFAULT or not tries_left:
                raise
            time.sleep(1)
    raise AssertionError("unreachable")


def run_cli(args: list[str], timeout: float = RUN_TIMEOUT_S,
            env: dict[str, str] | None = None) -> Attempt:
    start = time.monotonic()
    try:
        proc = _spawn(args, timeout, env)
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


def run_feature(feature: str, path: str, folder: str, fsx: str, image_tag: str,
                env: dict[str, str] | None = None) -> Outcome:
    """Run ``feature`` on ``path`` (twice for a re-run feature) in a fresh store under ``folder``
    (``env``: another store and artifact store, say)."""
    outcome = Outcome(feature, path)
    args = run_command(path, pipeline_file(feature), folder, fsx, image_tag)
    for _ in range(2 if feature in RERUN_FEATURES else 1):
        attempt = run_cli(args, env=env)
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
TEXT_LIMIT = 4096  # files up to this size keep their text (under "_texts") to explain a difference


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _text(path: str) -> str | None:
    if os.path.getsize(path) > TEXT_LIMIT:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def artifact_files(path: str) -> dict[str, Any]:
    """``{"kind": "folder", "files": {relative path: sha256}}`` of an artifact's folder; a single
    file (a ``model.tar.gz``) is ``{"kind": "file", "name": ..., "sha256": ...}``. Keys that start
    with ``_`` explain differences and are never compared."""
    if not path or not os.path.exists(path):
        return {"kind": "missing", "_path": path}
    if os.path.isfile(path):
        return {"kind": "file", "name": os.path.basename(path), "sha256": file_sha256(path)}
    files, texts = {}, {}
    for root, dirs, names in os.walk(path):
        dirs.sort()
        for name in names:
            full = os.path.join(root, name)
            rel = os.path.relpath(full, path).replace(os.sep, "/")
            files[rel] = file_sha256(full)
            texts[rel] = _text(full)
    return {"kind": "folder", "files": dict(sorted(files.items())), "_texts": texts}


def normalize(record: dict[str, Any], returncode: int | None = None) -> dict[str, Any]:
    """What must be the same on every path, from one run record."""
    steps = {}
    for step in record.get("steps", []):
        error = [line for line in (step.get("error") or "").splitlines() if line.strip()]
        steps[step["name"]] = {
            "status": step.get("status"),
            "cached": step.get("cached"),
            "returns": step.get("returns", {}),
            "metrics": {k: v for k, v in sorted(step.get("metrics", {}).items())
                        if not any(word in k for word in DROPPED_METRICS)},
            "outputs": {name: {"metadata": out.get("metadata", {}),
                               **artifact_files(out.get("path", ""))}
                        for name, out in sorted(step.get("outputs", {}).items())},
            "_error": error[-1].strip() if error else "",
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
    secondary: bool = False  # follows from another difference of the same step (its status)

    def describe(self, path: str) -> str:
        return (f"{self.where} field '{self.field}': {self.summary}\n"
                f"      {REFERENCE}: {_short(self.expected)}\n      {path}: {_short(self.got)}")


_ABSENT = object()


def _short(value: Any, limit: int = 300) -> str:
    if value is _ABSENT:
        return "(absent)"
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


def _canonical(value: Any) -> str:
    """Type-strict equality: 3, 3.0, True and "3" are four different values."""
    return json.dumps(value, sort_keys=True, default=str)


def _public(value: Any) -> Any:
    """``value`` without the keys that only explain differences (``_texts``, ``_error``)."""
    if isinstance(value, dict):
        return {k: _public(v) for k, v in value.items() if not str(k).startswith("_")}
    if isinstance(value, list):
        return [_public(v) for v in value]
    return value


def same(a: Any, b: Any) -> bool:
    return _canonical(_public(a)) == _canonical(_public(b))


def first_difference(a: Any, b: Any, at: str = "") -> tuple[str, Any, Any] | None:
    """Where two JSON values first differ (looking into strings that hold JSON documents):
    ``(".items[1]", 1, 1.0)``; None when they are the same."""
    if isinstance(a, str) and isinstance(b, str) and a != b:
        try:
            ja, jb = json.loads(a), json.loads(b)
        except ValueError:
            return at, a, b
        if isinstance(ja, (dict, list)):
            return first_difference(ja, jb, at + "<json>")
        return at, a, b
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            found = first_difference(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{at}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = first_difference(x, y, f"{at}[{i}]")
            if found:
                return found
        return None if len(a) == len(b) else (f"{at} length", len(a), len(b))
    if a is _ABSENT or b is _ABSENT or _canonical(a) != _canonical(b):
        return at, a, b
    return None


def _value_summary(where: str, name: str, ref: Any, got: Any) -> str:
    found = first_difference(ref, got)
    if found is None:
        return f"{where} {name} differs"
    at, r, g = found
    return f"{where} {name}{at} {_short(g, 60)} instead of {_short(r, 60)}"


def compare(reference: dict[str, Any], got: dict[str, Any], prefix: str = "") -> list[Difference]:
    """Field by field differences of ``got`` from ``reference`` (both from ``normalize``)."""
    diffs: list[Difference] = []
    run = f"{prefix}run"
    ref_run = (reference.get("status"), reference.get("exit_code"))
    got_run = (got.get("status"), got.get("exit_code"))
    if ref_run != got_run:
        diffs.append(Difference(run, "status, exit code", ref_run, got_run,
                                f"{run} {got_run[0]} (exit {got_run[1]}) instead of "
                                f"{ref_run[0]} (exit {ref_run[1]})"))
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
    status_differs = ref["status"] != got["status"]
    if status_differs:
        why = f": {got['_error'][:160]}" if got.get("_error") else ""
        diffs.append(Difference(where, "status", ref["status"], got["status"],
                                f"{where} {got['status']} instead of {ref['status']}{why}"))
    if ref["cached"] != got["cached"]:
        diffs.append(Difference(where, "cached", ref["cached"], got["cached"],
                                f"{where} cached={str(got['cached']).lower()} instead of "
                                f"{str(ref['cached']).lower()}"))
    for key in ("returns", "metrics"):
        if not same(ref[key], got[key]):
            diffs.append(Difference(where, key, ref[key], got[key],
                                    _value_summary(where, key, ref[key], got[key]), status_differs))
    for name in sorted(set(ref["outputs"]) | set(got["outputs"])):
        diffs.extend(_compare_output(where, name, ref["outputs"].get(name),
                                     got["outputs"].get(name), status_differs))
    return diffs


def _compare_output(where: str, name: str, r: dict[str, Any] | None, g: dict[str, Any] | None,
                    secondary: bool) -> list[Difference]:
    field_name = f"output '{name}'"
    if r is None or g is None:
        return [Difference(where, field_name, _public(r), _public(g),
                           f"{where} {'has an extra' if r is None else 'lacks'} output '{name}'"
                           + (f" (a file {g.get('name')})" if g and g["kind"] == "file" else ""),
                           secondary)]
    diffs = []
    kinds = {"file": "a file", "missing": "missing", "folder": "a folder"}
    if r["kind"] != g["kind"]:
        what = f"a file {g.get('name')}" if g["kind"] == "file" else kinds[g["kind"]]
        diffs.append(Difference(where, field_name, _public(r), _public(g),
                                f"{where} output '{name}' is {what} instead of {kinds[r['kind']]}",
                                secondary))
    elif r["kind"] == "folder" and r["files"] != g["files"]:
        extra = sorted(set(g["files"]) - set(r["files"]))
        lacks = sorted(set(r["files"]) - set(g["files"]))
        parts = ([f"has extra files {', '.join(extra)}"] if extra else []) + (
            [f"lacks files {', '.join(lacks)}"] if lacks else [])
        for rel in sorted(set(r["files"]) & set(g["files"])):
            if r["files"][rel] != g["files"][rel]:
                parts.append(_content_summary(rel, r["_texts"].get(rel), g["_texts"].get(rel)))
        diffs.append(Difference(where, f"{field_name} files", r["files"], g["files"],
                                f"{where} output '{name}' " + "; ".join(parts), secondary))
    elif r["kind"] == "file" and (r["name"], r["sha256"]) != (g["name"], g["sha256"]):
        diffs.append(Difference(where, field_name, _public(r), _public(g),
                                f"{where} output '{name}' file {g['name']} differs", secondary))
    if not same(r["metadata"], g["metadata"]):
        diffs.append(Difference(where, f"{field_name} metadata", r["metadata"], g["metadata"],
                                _value_summary(where, f"output '{name}' metadata", r["metadata"],
                                               g["metadata"]), secondary))
    return diffs


def _content_summary(rel: str, ref: str | None, got: str | None) -> str:
    """``seen.json line 9: '"lines": 1.0,' instead of '"lines": 1,'``, or that the bytes differ."""
    if ref is None or got is None:
        return f"{rel} has other bytes"
    ref_lines, got_lines = ref.splitlines(), got.splitlines()
    for i, (a, b) in enumerate(zip(ref_lines, got_lines, strict=False)):
        if a != b:
            return f"{rel} line {i + 1}: {b.strip()!r} instead of {a.strip()!r}"
    return f"{rel}: {len(got_lines)} lines instead of {len(ref_lines)}"


def differences(reference: Outcome | None, outcome: Outcome) -> list[Difference]:
    if reference is None or reference.normalized is None or outcome.normalized is None:
        return []
    return compare(reference.normalized, outcome.normalized)


SUMMARY_LIMIT = 5  # differences named in a matrix cell; the results file has all of them


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
    diffs = differences(reference, outcome)
    if not diffs:
        jobs = fused_jobs(outcome)
        return "same" + (f"; fused: {'; '.join(jobs)}" if jobs else "")
    shown = [d.summary for d in diffs if not d.secondary]
    more = len(diffs) - min(len(shown), SUMMARY_LIMIT)
    text = "; ".join(shown[:SUMMARY_LIMIT])
    return f"differs: {text}" + (f" (+{more} more)" if more else "")


def fused_jobs(outcome: Outcome) -> list[str]:
    """What ran fused in the first run, ``a + b`` per job (a job of a fan-out once for all its
    items: its steps' names without the item)."""
    jobs: dict[str, list[str]] = {}
    for step in outcome.records[0].get("steps", []) if outcome.records else []:
        name = step["name"].split("[", 1)[0]
        if step.get("job") and name not in jobs.get(step["job"], []):
            jobs.setdefault(step["job"], []).append(name)
    return sorted({" + ".join(members) for members in jobs.values()})


# -- results ---------------------------------------------------------------------------------
def write_results(file: str, outcomes: dict[tuple[str, str], str],
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
    os.makedirs(os.path.dirname(os.path.abspath(file)), exist_ok=True)
    tmp = file + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
    os.replace(tmp, file)

"""The fault campaign: how kubesage's local Docker runner holds up when things break mid-run.

On the reference pipeline with tiny settings (3 epochs of the small CNN on the sample digits),
in a store, cache and MLflow of its own, trials of four classes:

- ``cli``: the ``kubesage run`` process is killed at a random moment, with SIGKILL, SIGTERM or
  SIGINT (mixed at random);
- ``container``: a training container is killed at a random moment of training; half the
  trials (drawn) train on two nodes (2 x 2 processes) and a random rank's container is killed;
- ``engine``: the Docker engine is restarted at a random moment of the run (needs root);
- ``concurrent``: 8 runs of different parameters at once, sharing the store, cache and MLflow,
  while ``runs list``, ``compare`` and a ``rerun`` run beside them;
- ``store``: the run store is a PostgreSQL server (Debian's package, started here on loopback)
  and the artifacts are in S3 (moto); at a random moment either the CLI is SIGKILLed or the
  PostgreSQL server is killed (``pg_ctl stop -m immediate``) and started again a few seconds
  later. A run whose server came back must end succeeded, its record whole.

After each trial, before the next, the campaign checks that no container or network of the
campaign's runs is left, that no run record says ``running``, that the store is consistent
(SQLite's ``integrity_check``; every run's indexed columns and tags agree with its record), and
that every cache entry points at complete artifacts (here, or in the artifact store) whose
sha256 matches the entry. Then the next run (the same pipeline and parameters, cache off) must succeed.
Where training was interrupted, the final weights must be byte-identical to those of an
uninterrupted run (the baseline, measured first in the same campaign). A SIGKILLed CLI cannot
clean up after itself: the next command that opens the store (here ``runs list``) finds its run
abandoned and removes its containers; the checks run after it.

Each trial draws its moments and signals from its own seed, printed beside it; ``--seed`` fixes
the campaign (and so every trial), ``--only CLASS --trial-seed N`` replays one trial.

    .venv/bin/python benchmarks/faults.py                   # 20 + 20 + 3 trials, 3 x 8 concurrent
    .venv/bin/python benchmarks/faults.py --trials 3        # the short form CI runs
    make faults
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from kubesage.docker_engine.containers import RUN_LABEL  # noqa: E402
from kubesage.runs.artifacts import PARTIAL, sha256_tree  # noqa: E402

REFERENCE = "pipelines/image_classification.py"
TWO_NODES = "tests/pipelines/training.py:ddp"
TINY = ["--param", "epochs=3"]
CLASSES = ("cli", "container", "engine", "concurrent", "store")
SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


# -- the campaign's world ---------------------------------------------------------------------
@dataclasses.dataclass
class World:
    """A store, cache and MLflow of the campaign's own (in ``folder``), and the Docker engine."""

    folder: str
    config: str
    store: str
    docker: Any
    store_url: str = ""  # "" : the embedded SQLite store in ``store``
    env: dict[str, str] = dataclasses.field(default_factory=dict)  # PGPASSWORD, S3's endpoint

    @classmethod
    def make(cls, folder: str, image_tag: str, team: dict[str, str] | None = None) -> World:
        """The campaign's world; ``team``: ``{"store": URL, "artifacts": s3://..., ...env}``."""
        import docker
        import yaml

        from kubesage.project.sample_data import write_digits

        fsx = os.path.join(folder, "fsx")
        os.makedirs(fsx)
        write_digits(fsx)
        store = os.path.join(folder, "store")
        config = os.path.join(folder, "local.yaml")
        doc = {"mounts": {"fsx": fsx}, "store": store, "image_tag": image_tag}
        team = dict(team or {})
        url = team.pop("store", "")
        if url:
            doc.update({"store": url, "home": store, "artifacts": team.pop("artifacts")})
        with open(config, "w") as f:
            yaml.safe_dump(doc, f)
        return cls(folder, config, store, docker.from_env(), url, team)

    def cli(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubesage.cli", *args], cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **self.env})

    def start(self, *args: str) -> Started:
        proc = subprocess.Popen([sys.executable, "-m", "kubesage.cli", *args], cwd=ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, **self.env})
        return Started(proc)

    def run(self, pipeline: str, *extra: str) -> dict[str, Any]:
        """Run ``pipeline`` to the end; its record (``_returncode``, ``_stderr`` added)."""
        proc = self.cli("run", pipeline, *TINY, *extra, "--config", self.config, "--json")
        record: dict[str, Any] = json.loads(proc.stdout) if proc.stdout.strip() else {}
        record["_returncode"], record["_stderr"] = proc.returncode, proc.stderr
        return record

    def containers_of(self, run_id: str, step: str | None = None) -> list[Any]:
        """The run's containers (of ``step``) that exist now."""
        import docker

        wanted = [f"{RUN_LABEL}={run_id}"] + ([f"kubesage.step={step}"] if step else [])
        for _ in range(10):
            try:
                return self.docker.containers.list(all=True, filters={"label": wanted})
            except docker.errors.NotFound:  # one was removed between listing and inspecting
                time.sleep(0.1)
        return []


class Started:
    """A ``kubesage`` process started in the background; its stderr read as it comes."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.run_id = ""
        self.t0 = time.monotonic()
        self._out = ""
        threading.Thread(target=self._read_err, daemon=True).start()
        threading.Thread(target=self._read_out, daemon=True).start()

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            if not self.run_id and line.startswith("run ") and ":" in line:
                self.run_id = line.split()[1].rstrip(":")
            self.lines.append(line)

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        self._out = self.proc.stdout.read()

    def wait_for(self, what: Callable[[], bool], limit_s: float = 600) -> bool:
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            if what():
                return True
            if self.proc.poll() is not None:
                return what()
            time.sleep(0.05)
        return False

    def finish(self, limit_s: float = 600) -> int:
        code = self.proc.wait(timeout=limit_s)
        time.sleep(0.2)  # the reader threads take the last lines
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


# -- checks after every trial -----------------------------------------------------------------
def check_world(world: World) -> list[str]:
    """What is wrong with the campaign's store and engine now (nothing: ``[]``)."""
    with _environment(world.env):  # the store's password, as the CLI gets it
        problems, rows, tags, cache = _read_store(world)
    problems += _consistent(rows, tags)
    for key, doc in cache:
        for name, out in json.loads(doc)["outputs"].items():
            problems += _cached_output(world, key, name, out)
    for run_id, _, _ in rows:
        left = world.containers_of(run_id)
        nets = world.docker.networks.list(filters={"label": f"{RUN_LABEL}={run_id}"})
        if left or nets:
            problems.append(f"run {run_id} left {len(left)} container(s), {len(nets)} network(s)")
    return problems


@contextlib.contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _read_store(world: World) -> tuple[list[str], list[Any], list[Any], list[Any]]:
    """SQLite's integrity check's problems, and every run row, tag row and cache row."""
    from sqlalchemy import text

    from kubesage.store import RunStore

    problems = []
    store = RunStore(world.store_url or world.store)
    try:
        with store.engine.connect() as conn:
            if conn.dialect.name == "sqlite":
                integrity = conn.execute(text("PRAGMA integrity_check")).scalar()
                if integrity != "ok":
                    problems.append(f"integrity_check: {integrity}")
            rows = list(conn.execute(text("SELECT run_id, status, record FROM runs")).all())
            tags = list(conn.execute(text("SELECT run_id, key, value FROM run_tags")).all())
            cache = list(conn.execute(text("SELECT key, entry FROM cache")).all())
    finally:
        store.close()
    return problems, rows, tags, cache


def _consistent(rows: list[Any], tags: list[Any]) -> list[str]:
    """Each run's row agrees with its record (no record half-saved), none says running."""
    problems = []
    by_run: dict[str, dict[str, str]] = {}
    for run_id, key, value in tags:
        by_run.setdefault(run_id, {})[key] = value
    for run_id, status, doc in rows:
        record = json.loads(doc)
        if status == "running":
            problems.append(f"run {run_id} still says 'running'")
        if record["run_id"] != run_id or record["status"] != status:
            problems.append(f"run {run_id}: its row says {status}, its record {record['status']}")
        if by_run.get(run_id, {}) != record.get("tags", {}):
            problems.append(f"run {run_id}: its tags table disagrees with its record")
    return problems


def _cached_output(world: World, key: str, name: str, out: dict[str, Any]) -> list[str]:
    path = out["path"]
    if out.get("uri", "").startswith("s3://"):
        return [] if _in_s3(world, out["uri"]) else [f"cache {key[:12]} {name}: {out['uri']} is "
                                                      "not whole in S3"]
    if path.endswith(PARTIAL) or not os.path.isdir(path):
        return [f"cache {key[:12]} {name}: {path} is missing or partial"]
    if sha256_tree(path) != out["sha256"]:
        return [f"cache {key[:12]} {name}: {path} does not match its sha256"]
    return []


def _in_s3(world: World, uri: str) -> bool:
    import boto3

    bucket, _, key = uri.removeprefix("s3://").partition("/")
    s3 = boto3.client("s3", endpoint_url=world.env["AWS_ENDPOINT_URL"],
                      aws_access_key_id="testing", aws_secret_access_key="testing",
                      region_name="us-east-1")
    try:
        s3.head_object(Bucket=bucket, Key=f"{key}/.complete")
    except Exception:  # 404: not (wholly) published
        return False
    return True


def weights_digest(record: dict[str, Any]) -> str:
    """sha256 of the trained tensors' bytes, in name order (the final weights, byte for byte)."""
    import torch

    train = next(s for s in record["steps"] if s["task"] == "train")
    saved = torch.load(os.path.join(train["outputs"]["model"]["path"], "model.pt"),
                       weights_only=False, map_location="cpu")
    h = hashlib.sha256()
    for name, tensor in sorted(saved["state_dict"].items()):
        h.update(name.encode())
        h.update(tensor.contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def outcome(world: World, run_id: str) -> tuple[str, bool]:
    """Run ``run_id``'s status, and whether its training started and did not finish."""
    shown = world.cli("runs", "--config", world.config, "show", run_id, "--json")
    if not shown.stdout.strip():
        return "no record", False
    record = json.loads(shown.stdout)
    train = next(s for s in record["steps"] if s["task"] == "train")
    return record["status"], bool(train.get("started")) and train["status"] != "succeeded"


# -- trials -----------------------------------------------------------------------------------
@dataclasses.dataclass
class Trial:
    kind: str
    seed: int
    what: str = ""
    survived: bool = False
    interrupted: bool = False  # training was cut off and had to resume (or restart)
    identical: bool | None = None  # final weights == the uninterrupted run's (when interrupted)
    recovery_s: float = 0.0
    ratio: float = 0.0  # the next run's time / an uninterrupted run's
    problems: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Baseline:
    pipeline: str
    weights: str
    wall_s: float
    train_s: float
    run_id: str


def baseline(world: World, pipeline: str) -> Baseline:
    """An uninterrupted run (cache off): its weights and how long it and its training take."""
    t0 = time.monotonic()
    record = world.run(pipeline, "--no-cache")
    wall = time.monotonic() - t0
    if record.get("status") != "succeeded":
        raise SystemExit(f"the baseline run of {pipeline} failed:\n{record['_stderr'][-3000:]}")
    train = next(s for s in record["steps"] if s["task"] == "train")
    return Baseline(pipeline, weights_digest(record), wall, train["ended"] - train["started"],
                    record["run_id"])


def recover(world: World, trial: Trial, base: Baseline, killed: Started) -> None:
    """After a fault: sweep (``runs list``), check, then the next run, then check again."""
    world.cli("runs", "--config", world.config, "list")  # finds a SIGKILLed run abandoned
    problems = check_world(world)
    status, trial.interrupted = (outcome(world, killed.run_id) if killed.run_id
                                 else ("never started", False))
    trial.what += f"; the run ended {status}"
    t0 = time.monotonic()
    record = world.run(base.pipeline, "--no-cache")
    trial.recovery_s = time.monotonic() - t0
    trial.ratio = trial.recovery_s / base.wall_s
    if record.get("status") != "succeeded":
        problems.append(f"the next run failed: {record['_stderr'][-1500:]}")
    else:
        resumed = "train: resumed from" in record["_stderr"]
        trial.interrupted = trial.interrupted or resumed
        if trial.interrupted:
            trial.identical = weights_digest(record) == base.weights
            if not trial.identical:
                problems.append("the resumed training's weights differ from the baseline's")
    problems += check_world(world)
    trial.problems, trial.survived = problems, not problems


def cli_kill(world: World, seed: int, base: Baseline) -> Trial:
    rng = random.Random(seed)
    sig = rng.choice(SIGNALS)
    moment = rng.uniform(0.3, base.wall_s)
    trial = Trial("cli", seed, f"{signal.Signals(sig).name} at {moment:.1f} s")
    started = world.start("run", base.pipeline, *TINY, "--no-cache", "--config", world.config)
    time.sleep(moment)
    if started.proc.poll() is None:
        started.proc.send_signal(sig)
    else:
        trial.what += " (the run had ended)"
    code = started.finish()
    if sig != signal.SIGKILL and code not in (0, 128 + sig):
        trial.problems.append(f"exit code {code} after {signal.Signals(sig).name}")
    recover(world, trial, base, started)
    return trial


def container_kill(world: World, seed: int, one: Baseline, two: Baseline) -> Trial:
    rng = random.Random(seed)
    base = two if rng.random() < 0.5 else one  # from the trial's seed: a replay is the same
    moment = rng.uniform(0.0, base.train_s)
    started = world.start("run", base.pipeline, *TINY, "--no-cache", "--config", world.config)
    found: list[Any] = []

    def training() -> bool:
        found[:] = world.containers_of(started.run_id, "train") if started.run_id else []
        return bool(found)

    trial = Trial("container", seed, f"{base.pipeline.split(':')[-1]}, {moment:.1f} s into "
                  "training")
    if started.wait_for(training):
        time.sleep(moment)
        alive = [c for c in world.containers_of(started.run_id, "train") if c.status != "exited"]
        if alive:
            victim = alive[rng.randrange(len(alive))]
            rank = victim.name.rsplit("-", 1)[-1]
            trial.what += f", killed {'node ' + rank if len(alive) > 1 else 'the container'}"
            try:
                victim.kill()
            except Exception:  # finished meanwhile
                trial.what += " (it had ended)"
    else:
        trial.what += " (training never started)"
    started.finish()
    recover(world, trial, base, started)
    return trial


def restart_engine() -> None:
    """Stop the Docker engine and start it again (systemd's, or a dockerd set-up started)."""
    import docker

    if shutil.which("systemctl") and subprocess.run(
            ["systemctl", "is-active", "--quiet", "docker"], stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL).returncode == 0:
        subprocess.run(["systemctl", "restart", "docker"], check=True)
    else:
        with open("/var/run/docker.pid") as f:
            pid = int(f.read())
        os.kill(pid, signal.SIGTERM)
        for _ in range(600):
            if not os.path.exists(f"/proc/{pid}"):
                break
            time.sleep(0.1)
        log = open(os.path.join(ROOT, ".cache", "dockerd.log"), "a")
        subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True)
    for _ in range(600):
        try:
            docker.from_env().ping()
            return
        except Exception:  # not up yet
            time.sleep(0.1)
    raise SystemExit("the Docker engine did not come back within 60 s")


def engine_restart(world: World, seed: int, base: Baseline) -> Trial:
    import docker

    rng = random.Random(seed)
    moment = rng.uniform(1.0, base.wall_s)
    trial = Trial("engine", seed, f"restart at {moment:.1f} s")
    started = world.start("run", base.pipeline, *TINY, "--no-cache", "--config", world.config)
    time.sleep(moment)
    if started.proc.poll() is not None:
        trial.what += " (the run had ended)"
    restart_engine()
    world.docker = docker.from_env()
    try:
        started.finish(limit_s=600)
    except subprocess.TimeoutExpired:
        started.proc.kill()
        trial.problems.append("the run hung after the engine restarted")
    recover(world, trial, base, started)
    return trial


def concurrent(world: World, seed: int, base: Baseline, runs: int = 8) -> Trial:
    """``runs`` runs of different seeds at once, beside ``runs list``, ``compare``, ``rerun``."""
    rng = random.Random(seed)
    seeds = rng.sample(range(1000), runs)
    trial = Trial("concurrent", seed, f"{runs} runs (seeds {seeds[0]}..), list, compare, rerun")
    before = world.cli("runs", "--config", world.config, "list", "--json")
    known = {r["run_id"] for r in json.loads(before.stdout or "[]")}
    started = [world.start("run", REFERENCE, *TINY, "--param", f"seed={s}",
                           "--config", world.config, "--json") for s in seeds]
    side = [world.start("rerun", base.run_id, "--config", world.config, "--json")]
    stop = threading.Event()
    side_failures: list[str] = []

    def poke() -> None:
        while not stop.is_set():
            for args in (("runs", "--config", world.config, "list"),
                         ("compare", base.run_id, base.run_id, "--config", world.config,
                          "-o", os.path.join(world.folder, "compare.png"))):
                proc = world.cli(*args)
                if proc.returncode != 0:
                    side_failures.append(f"{' '.join(args[:2])}: {proc.stderr.strip()[-300:]}")
            time.sleep(0.5)

    poker = threading.Thread(target=poke, daemon=True)
    poker.start()
    t0 = time.monotonic()
    codes = [s.finish(limit_s=1800) for s in started + side]
    trial.recovery_s = time.monotonic() - t0
    trial.ratio = trial.recovery_s / base.wall_s
    stop.set()
    poker.join()
    problems = [f"a concurrent command failed: {f}" for f in side_failures[:3]]
    for s, code in zip(started + side, codes, strict=True):
        if code != 0:
            problems.append(f"run {s.run_id or '?'} exited {code}: {s.stderr[-800:]}")
    after = world.cli("runs", "--config", world.config, "list", "--json", "--limit", "1000")
    new = {r["run_id"]: r for r in json.loads(after.stdout or "[]") if r["run_id"] not in known}
    ids = {s.run_id for s in started + side}
    missing = ids - set(new)
    if missing:
        problems.append(f"records lost: {sorted(missing)}")
    for run_id in ids & set(new):
        shown = json.loads(world.cli("runs", "--config", world.config, "show", run_id,
                                     "--json").stdout)
        if shown["status"] != "succeeded":
            problems.append(f"run {run_id} is {shown['status']}")
        for step in shown["steps"]:
            for name, out in step.get("outputs", {}).items():
                if not os.path.isdir(out["path"]) or sha256_tree(out["path"]) != out["sha256"]:
                    problems.append(f"run {run_id} {step['name']}.{name}: artifact lost")
    problems += check_world(world)
    trial.problems, trial.survived = problems, not problems
    return trial


def store_fault(world: World, seed: int, base: Baseline, pg: Any) -> Trial:
    """The CLI SIGKILLed, or the PostgreSQL server killed and started again, mid-run."""
    rng = random.Random(seed)
    moment = rng.uniform(0.3, base.wall_s)
    kill_server = rng.random() < 0.5
    trial = Trial("store", seed, f"{'PostgreSQL killed' if kill_server else 'CLI SIGKILLed'} at "
                  f"{moment:.1f} s")
    started = world.start("run", base.pipeline, *TINY, "--no-cache", "--config", world.config)
    time.sleep(moment)
    if started.proc.poll() is not None:
        trial.what += " (the run had ended)"
    elif kill_server:
        pg.kill_and_restart(down_s=rng.uniform(1.0, 5.0))
    else:
        started.proc.send_signal(signal.SIGKILL)
    code = started.finish()
    if kill_server and code != 0:
        trial.problems.append(f"the run did not go on after PostgreSQL came back (exit {code}): "
                              f"{started.stderr[-1500:]}")
    recover(world, trial, base, started)
    return trial


def team_world(folder: str, image_tag: str) -> tuple[World, Any, Any]:
    """A world whose store is a PostgreSQL server and whose artifacts are in S3 (moto)."""
    from tests.servers import PASSWORD, Moto, Postgres

    pg, s3 = Postgres(), Moto()
    s3.bucket("faults")
    team = {"store": pg.url(), "artifacts": "s3://faults/artifacts", "PGPASSWORD": PASSWORD,
            **s3.environment()}
    os.makedirs(os.path.join(folder, "team"))
    return World.make(os.path.join(folder, "team"), image_tag, team), pg, s3


# -- the campaign -----------------------------------------------------------------------------
def run_class(kind: str, count: int, args: argparse.Namespace, rng: random.Random, world: World,
              one: Baseline, two: Baseline | None, folder: str) -> list[Trial]:
    """The trials of one class, each printed as it ends."""
    trials = []
    servers: tuple[Any, ...] = ()
    if kind == "store":
        world, pg, s3 = team_world(folder, args.image_tag)
        servers = (pg, s3)
        one = baseline(world, REFERENCE)
    try:
        for _ in range(count):
            trial_seed = args.trial_seed if args.trial_seed is not None else rng.randrange(2**31)
            if kind == "cli":
                trial = cli_kill(world, trial_seed, one)
            elif kind == "container":
                assert two is not None
                trial = container_kill(world, trial_seed, one, two)
            elif kind == "engine":
                trial = engine_restart(world, trial_seed, one)
            elif kind == "store":
                trial = store_fault(world, trial_seed, one, servers[0])
            else:
                trial = concurrent(world, trial_seed, one, args.concurrent_runs)
            trials.append(trial)
            _report(kind, trial_seed, trial)
            if args.trial_seed is not None:
                break
    finally:
        for server in servers:
            server.close()
    return trials


def _report(kind: str, seed: int, trial: Trial) -> None:
    mark = "ok " if trial.survived else "LOST"
    weights = ("" if trial.identical is None else
               "; weights identical" if trial.identical else "; WEIGHTS DIFFER")
    print(f"  {mark} {kind:<10} seed {seed:<10} {trial.what}"
          f"{'; training interrupted' if trial.interrupted else ''}{weights}; "
          f"next run {trial.recovery_s:.1f} s", flush=True)
    for problem in trial.problems:
        print(f"       {problem}", flush=True)


def wait_for_processes_in(folder: str, timeout_s: float = 300) -> None:
    """Wait until no process names ``folder`` on its command line (the background MLflow loggers
    a run starts: they write into the campaign's store after the run has ended)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        busy = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    if folder.encode() in f.read():
                        busy.append(pid)
            except OSError:
                continue  # ended meanwhile
        if not busy:
            return
        time.sleep(0.5)
    print(f"processes still use {folder} after {timeout_s:.0f} s; removing it anyway", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=20, help="trials per kill class (20)")
    ap.add_argument("--engine-trials", type=int, default=3)
    ap.add_argument("--concurrent-trials", type=int, default=3)
    ap.add_argument("--concurrent-runs", type=int, default=8,
                    help="runs at once in a concurrent trial (8)")
    ap.add_argument("--store-trials", type=int, default=6,
                    help="trials of the store class (a PostgreSQL store and S3 artifacts)")
    ap.add_argument("--seed", type=int, default=None, help="the campaign's seed (default: random)")
    ap.add_argument("--only", choices=CLASSES, action="append", help="run only these classes")
    ap.add_argument("--trial-seed", type=int, default=None, help="replay one trial (with --only)")
    ap.add_argument("--json", default="", help="also write the results to this JSON file")
    ap.add_argument("--image-tag", default="latest",
                    help="the tag of the project's images the runs use (built when stale)")
    args = ap.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**31)
    rng = random.Random(seed)
    classes = args.only or list(CLASSES)
    counts = {"cli": args.trials, "container": args.trials, "engine": args.engine_trials,
              "concurrent": args.concurrent_trials, "store": args.store_trials}
    if "engine" in classes and os.getuid() != 0:
        raise SystemExit("the engine class restarts the Docker engine, which needs root; run as "
                         "root or leave it out (--only cli --only container --only concurrent)")
    print(f"fault campaign, seed {seed}: {', '.join(f'{counts[c]} {c}' for c in classes)}",
          flush=True)
    trials: list[Trial] = []
    with tempfile.TemporaryDirectory(prefix="kubesage-faults-", ignore_cleanup_errors=True) as folder:
        world = World.make(folder, args.image_tag)
        one = baseline(world, REFERENCE)
        two = baseline(world, TWO_NODES) if "container" in classes else None
        print(f"baselines: reference {one.wall_s:.1f} s (training {one.train_s:.1f} s)"
              + (f", two nodes {two.wall_s:.1f} s (training {two.train_s:.1f} s)" if two else ""),
              flush=True)
        for kind in classes:
            trials += run_class(kind, counts[kind], args, rng, world, one, two, folder)
        base_s = one.wall_s
        wait_for_processes_in(folder)  # the runs' MLflow loggers, before the folder goes
    print()
    print("| class | trials | survived | training interrupted | weights identical | next run / "
          "uninterrupted run (concurrent: all runs / one) |")
    print("|---|---|---|---|---|---|")
    for kind in classes:
        mine = [t for t in trials if t.kind == kind]
        if not mine:
            continue
        interrupted = [t for t in mine if t.interrupted]
        identical = sum(1 for t in interrupted if t.identical)
        ratio = sum(t.ratio for t in mine) / len(mine)
        print(f"| {kind} | {len(mine)} | {sum(t.survived for t in mine)}/{len(mine)} | "
              f"{len(interrupted)} | {identical}/{len(interrupted)} | {ratio:.2f}x |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seed": seed, "baseline_s": base_s,
                       "trials": [dataclasses.asdict(t) for t in trials]}, f, indent=1)
    return 0 if all(t.survived for t in trials) else 1


if __name__ == "__main__":
    sys.exit(main())

"""The team store's costs, each as a ratio against a baseline measured in the same run.

1. Per step: a chain of N ``probe`` steps (cache off) in Docker with a PostgreSQL store and S3
   artifacts (moto in server mode), against the embedded SQLite store and local folders; the
   two alternate, several rounds.             goal <= 1.15x
2. A second engineer's run of the reference pipeline, fully cached from a first engineer's
   (another folder, the same PostgreSQL store and bucket), against the first's run, both from a
   cold CLI.                                   goal <= 0.05 of its time
3. The newest 50 runs, through ``kubesage runs list`` and through the store call, on a store of
   100,000 generated runs against one of 100, on SQLite and on PostgreSQL.   goal <= 1.5x

    .venv/bin/python benchmarks/store.py [--steps 5] [--repeats 3] [--runs 100000]
        [--only chain,cached,list]

PostgreSQL (Debian's package) and moto are started here, on loopback, and stopped after.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from benchmarks.orchestration import chain  # noqa: E402
from kubesage.config.local import LocalConfig  # noqa: E402
from kubesage.project.sample_data import write_digits  # noqa: E402
from kubesage.targets.local.runner import runner_for  # noqa: E402
from tests.servers import PASSWORD, Moto, Postgres  # noqa: E402


def per_step(pg: Postgres, s3: Moto, tmp: str, args: argparse.Namespace) -> None:
    pipe = chain(args.steps)
    embedded = LocalConfig(store=os.path.join(tmp, "embedded"), parallelism=4)
    team = LocalConfig(store=os.path.join(tmp, "team"), parallelism=4,
                       database=pg.fresh_database("bench_chain"), artifacts="s3://bench/chain")
    runners = {name: runner_for("docker", config, ROOT, log=io.StringIO())
               for name, config in (("embedded", embedded), ("team", team))}
    for runner in runners.values():  # warm both (image checks, the page cache, the schema)
        assert runner.run(pipe).status == "succeeded"
    times: dict[str, list[float]] = {"embedded": [], "team": []}
    for _ in range(args.repeats):
        for name, runner in runners.items():
            start = time.perf_counter()
            record = runner.run(pipe)
            times[name].append((time.perf_counter() - start) / args.steps)
            assert record.status == "succeeded", record.to_dict()
    base, ours = statistics.median(times["embedded"]), statistics.median(times["team"])
    print(f"per step, chain of {args.steps} probe steps: SQLite + local folder {base:.3f} s, "
          f"PostgreSQL + S3 {ours:.3f} s ({ours / base:.2f}x; goal <= 1.15x; "
          f"{args.repeats} rounds each)")


def second_engineer(pg: Postgres, s3: Moto, tmp: str) -> None:
    fsx = os.path.join(tmp, "fsx")
    write_digits(fsx)
    store = pg.fresh_database("bench_team")
    times = {}
    for name in ("ana", "ben"):
        config = os.path.join(tmp, f"{name}.yaml")
        with open(config, "w") as f:
            json.dump({"mounts": {"fsx": fsx}, "store": store, "artifacts": "s3://bench/team",
                       "home": os.path.join(tmp, name)}, f)
        env = {**os.environ, **s3.environment(), "KUBESAGE_USER": name, "PGPASSWORD": PASSWORD}
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "kubesage.cli", "run",
                               "pipelines/image_classification.py", "--config", config, "--json"],
                              cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        times[name] = time.perf_counter() - start
        record = json.loads(proc.stdout)
        cached = sum(s["cached"] for s in record["steps"])
        print(f"{name}: {times[name]:.1f} s, {cached}/{len(record['steps'])} steps cached")
    print(f"a second engineer's fully cached run of the reference pipeline: {times['ben']:.2f} s "
          f"against the first's {times['ana']:.1f} s ({times['ben'] / times['ana']:.3f}; "
          "goal <= 0.05)")


def generate(url: str, count: int) -> None:
    """``count`` plausible runs written straight into the store's tables, in batches."""
    from sqlalchemy import insert, text

    from kubesage.runs.record import RunRecord, StepRecord
    from kubesage.store import RunStore
    from kubesage.store.schema import run_links, run_tags, runs
    from kubesage.store.sql import links_of

    store = RunStore(url)
    template = RunRecord("x", "image-classification", "/p.py", "h" * 64, "docker",
                         status="succeeded", data={"fsx": "f" * 64},
                         images={"kubesage/torch": "sha256:" + "i" * 64})
    template.steps = [StepRecord(n, n, n, "1.0.0", "kubesage/torch:latest", status="succeeded",
                                 metrics={"accuracy": 0.97}) for n in ("preprocess", "train", "evaluate")]
    for start in range(0, count, 2000):
        rows, tags, links = [], [], []
        for i in range(start, min(count, start + 2000)):
            template.run_id = f"image-classification-{i:07d}"
            template.started, template.ended = 1.7e9 + i, 1.7e9 + i + 60
            template.user, template.tags = f"user{i % 7}", {"client": f"c{i % 50}"}
            rows.append({"run_id": template.run_id, "pipeline": template.pipeline,
                         "status": template.status, "started": template.started,
                         "record": json.dumps(template.to_dict()), "target": "local",
                         "user": template.user, "host": "bench", "ended": template.ended})
            tags.append({"run_id": template.run_id, "key": "client", "value": f"c{i % 50}"})
            links += links_of(template)
        with store.engine.begin() as conn:
            conn.execute(insert(runs), rows)
            conn.execute(insert(run_tags), tags)
            conn.execute(insert(run_links), links)
    with store.engine.begin() as conn:  # as autovacuum (PostgreSQL) or a long-lived store has
        conn.execute(text("ANALYZE"))
    store.close()


def newest_50(pg: Postgres, tmp: str, args: argparse.Namespace) -> None:
    from kubesage.store import RunStore

    for kind in ("sqlite", "postgresql"):
        results = {}
        for count in (100, args.runs):
            url = (f"sqlite:///{tmp}/list-{count}.db" if kind == "sqlite"
                   else pg.fresh_database(f"bench_list_{count}"))
            generate(url, count)
            store = RunStore(url)
            calls = []
            for _ in range(20):
                start = time.perf_counter()
                assert len(store.list(limit=50)) == 50
                calls.append(time.perf_counter() - start)
            env = {**os.environ, "KUBESAGE_STORE": url, "PGPASSWORD": PASSWORD}
            cli = []
            for _ in range(args.repeats + 2):
                start = time.perf_counter()
                subprocess.run([sys.executable, "-m", "kubesage.cli", "runs", "list", "--limit",
                                "50", "--json"], cwd=tmp, env=env, check=True,
                               capture_output=True)
                cli.append(time.perf_counter() - start)
            results[count] = (statistics.median(calls), statistics.median(cli))
        (c_small, l_small), (c_big, l_big) = results[100], results[args.runs]
        print(f"newest 50 runs, {kind}: store call {c_small * 1000:.1f} ms (100 runs) vs "
              f"{c_big * 1000:.1f} ms ({args.runs} runs), {c_big / c_small:.2f}x; runs list "
              f"{l_small:.2f} s vs {l_big:.2f} s, {l_big / l_small:.2f}x (goal <= 1.5x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--only", default="chain,cached,list")
    args = ap.parse_args()
    wanted = set(args.only.split(","))
    os.environ["PGPASSWORD"] = PASSWORD
    pg, s3 = Postgres(), Moto()
    os.environ.update(s3.environment())
    s3.bucket("bench")
    try:
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
            os.chmod(tmp, 0o755)
            if "chain" in wanted:
                per_step(pg, s3, tmp, args)
            if "cached" in wanted:
                second_engineer(pg, s3, tmp)
            if "list" in wanted:
                newest_50(pg, tmp, args)
    finally:
        pg.close()
        s3.close()


if __name__ == "__main__":
    main()

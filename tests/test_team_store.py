"""A team's shared home, end to end through the command line: two engineers, each with a
checkout folder of their own, one PostgreSQL store and one S3 bucket (moto in server mode)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import REPO, write_config
from tests.servers import PASSWORD, Moto, Postgres, free_port

pytestmark = pytest.mark.server

PIPELINE = "tests/conformance/pipelines/cached_rerun.py"


class Engineer:
    """One team member: a user name, a local folder, the team's store and bucket."""

    def __init__(self, name: str, folder: str, fsx: str, store: str, moto: Moto) -> None:
        self.name = name
        self.config = write_config(os.path.join(folder, "local.yaml"), fsx,
                                   os.path.join(folder, "home"))
        self.env = {**os.environ, **moto.environment(), "KUBESAGE_USER": name,
                    "KUBESAGE_STORE": store, "KUBESAGE_ARTIFACTS": "s3://team/kubesage",
                    "PGPASSWORD": PASSWORD}
        self.home = os.path.join(folder, "home")

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "kubesage.cli", *args], cwd=REPO,
                              env={**self.env, **env}, capture_output=True, text=True,
                              timeout=600)

    def run(self, *args: str, **env: str) -> dict[str, Any]:
        proc = self.cli("run", PIPELINE, "--runner", "subprocess", "--config", self.config,
                        "--json", *args, **env)
        assert proc.stdout, proc.stderr
        return {**json.loads(proc.stdout), "_stderr": proc.stderr, "_code": proc.returncode}


@pytest.fixture
def team(tmp_path, fsx_root: str, postgres: Postgres, moto: Moto
         ) -> tuple[Engineer, Engineer]:
    store = postgres.fresh_database(f"team{os.getpid()}{free_port()}")
    moto.bucket("team")
    folders = [tmp_path / "ana", tmp_path / "ben"]
    for f in folders:
        f.mkdir()
    return (Engineer("ana", str(folders[0]), fsx_root, store, moto),
            Engineer("ben", str(folders[1]), fsx_root, store, moto))


def test_a_step_one_engineer_computed_is_reused_by_another(team: tuple[Engineer, Engineer]
                                                           ) -> None:
    ana, ben = team
    first = ana.run()
    assert first["_code"] == 0, first["_stderr"]
    assert first["user"] == "ana" and not any(s["cached"] for s in first["steps"])
    assert all(out["uri"].startswith("s3://team/kubesage/sha256/")
               for s in first["steps"] for out in s["outputs"].values())
    second = ben.run()
    assert second["_code"] == 0, second["_stderr"]
    assert second["user"] == "ben" and all(s["cached"] for s in second["steps"])
    assert f"(from {first['run_id']} by ana)" in second["_stderr"]
    for mine, theirs in zip(second["steps"], first["steps"], strict=True):
        for name, out in mine["outputs"].items():
            assert out["sha256"] == theirs["outputs"][name]["sha256"]
            assert out["path"].startswith(os.path.join(ben.home, "cache", "sha256")), out
            assert not os.path.exists(out["path"]), "a run cached to its end downloads nothing"
    listed = json.loads(ben.cli("runs", "--config", ben.config, "list", "--json",
                                "--user", "ana").stdout)
    assert [r["run_id"] for r in listed] == [first["run_id"]]  # the team sees each other's runs


def test_s3_unreachable_during_a_step_fails_it_and_the_run_continues_later(
        team: tuple[Engineer, Engineer]) -> None:
    ana, _ = team
    dead = f"http://127.0.0.1:{free_port()}"
    broken = ana.run("--no-cache", AWS_ENDPOINT_URL=dead, AWS_MAX_ATTEMPTS="1")
    assert broken["_code"] == 1 and broken["status"] == "failed"
    failed = next(s for s in broken["steps"] if s["status"] == "failed")
    assert "unreachable" in failed["error"] and "rerun --from-failed" in failed["error"]
    again = ana.cli("rerun", broken["run_id"], "--from-failed", "--config", ana.config, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "succeeded"


def test_store_problems_are_one_line_with_the_fix(team: tuple[Engineer, Engineer],
                                                  postgres: Postgres) -> None:
    ana, _ = team
    cases = {
        f"postgresql://kubesage@127.0.0.1:{free_port()}/kubesage": "does not answer",
        "postgres:/nope": "is not one kubesage opens",
        f"postgresql://kubesage:{PASSWORD}@127.0.0.1:{postgres.port}/kubesage": "holds a password",
    }
    for url, problem in cases.items():
        proc = ana.cli("runs", "--config", ana.config, "list", KUBESAGE_STORE=url)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and problem in lines[0], proc.stderr
        assert PASSWORD not in proc.stderr + proc.stdout
    proc = ana.cli("runs", "--config", ana.config, "list", PGPASSWORD="wrong")
    assert proc.returncode == 2 and "refused the login" in proc.stderr and "$PGPASSWORD" in proc.stderr
    proc = ana.run(KUBESAGE_ARTIFACTS="s3://no-such-bucket/x")
    assert proc["status"] == "failed" and any("bucket no-such-bucket does not exist" in s["error"]
                                              for s in proc["steps"])


def test_the_store_password_appears_in_no_record_or_log(team: tuple[Engineer, Engineer],
                                                        tmp_path) -> None:
    ana, _ = team
    secret_file = tmp_path / "pgpass"
    secret_file.write_text(PASSWORD + "\n")
    record = ana.run(PGPASSWORD="", KUBESAGE_STORE_PASSWORD_FILE=str(secret_file))
    assert record["_code"] == 0, record["_stderr"]
    seen = [json.dumps(record), record["_stderr"]]
    for folder, _, files in os.walk(ana.home):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                seen.append(f.read().decode(errors="replace"))
    assert not [text for text in seen if PASSWORD in text]


def test_a_read_only_role_lists_shows_and_compares_and_cannot_run(
        team: tuple[Engineer, Engineer], postgres: Postgres) -> None:
    ana, _ = team
    first = ana.run()
    assert first["_code"] == 0, first["_stderr"]
    database = ana.env["KUBESAGE_STORE"].rsplit("/", 1)[1]
    postgres.grant_read(database)
    reader = {"KUBESAGE_STORE": ana.env["KUBESAGE_STORE"].replace("kubesage@", "reader@")}
    listed = ana.cli("runs", "--config", ana.config, "list", "--json", **reader)
    assert listed.returncode == 0 and first["run_id"] in listed.stdout, listed.stderr
    shown = ana.cli("runs", "--config", ana.config, "show", first["run_id"], **reader)
    assert shown.returncode == 0 and first["run_id"] in shown.stdout, shown.stderr
    compared = ana.cli("compare", first["run_id"], first["run_id"], "--config", ana.config,
                       "-o", os.path.join(ana.home, "c.png"), **reader)
    assert compared.returncode == 0, compared.stderr
    refused = ana.cli("run", PIPELINE, "--runner", "subprocess", "--config", ana.config, **reader)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode == 2 and len(errors) == 1 and "read-only" in errors[0], refused.stderr
    assert "Traceback" not in refused.stderr


RESUMABLE = '''
from kubesage import pipeline
from kubesage.testing.probes import diag_flaky


@pipeline(name="resumable-anywhere")
def resumable(marker: str = "team") -> None:
    diag_flaky(marker=marker).set_retries(0)
'''


def test_a_step_left_unfinished_on_one_machine_resumes_from_its_checkpoints_on_another(
        team: tuple[Engineer, Engineer], tmp_path) -> None:
    """ana's step fails after writing a checkpoint (no retries here); ben runs the identical
    step: its checkpoints come from the artifact store, and it goes on from them."""
    ana, ben = team
    pipe = tmp_path / "resumable.py"
    pipe.write_text(RESUMABLE)

    def run(who: Engineer) -> dict[str, Any]:
        proc = who.cli("run", str(pipe), "--runner", "subprocess", "--config", who.config,
                       "--json")
        return {**json.loads(proc.stdout), "_stderr": proc.stderr}

    first = run(ana)
    assert first["status"] == "failed" and "fails on purpose" in first["steps"][0]["error"]
    second = run(ben)
    assert second["status"] == "succeeded", second["_stderr"]
    assert second["steps"][0]["returns"] == {"output": 2}  # the second attempt, on ben's machine
    assert "checkpoint file(s) from s3://team/kubesage" in second["_stderr"]


READS_A_CACHED_OUTPUT = '''
from kubesage import pipeline
from kubesage.testing.probes import diag_count_lines, diag_write_lines


@pipeline(name="reads-a-cached-output")
def reads(lines: int = 4) -> None:
    written = diag_write_lines(lines=lines)
    diag_count_lines(data=written.outputs["data"]).set_caching(False)
'''


def test_a_step_reading_a_colleagues_cached_output_fetches_it_once(
        team: tuple[Engineer, Engineer], tmp_path) -> None:
    ana, ben = team
    pipe = tmp_path / "reads.py"
    pipe.write_text(READS_A_CACHED_OUTPUT)

    def run(who: Engineer) -> dict[str, Any]:
        proc = who.cli("run", str(pipe), "--runner", "subprocess", "--config", who.config,
                       "--json")
        return {**json.loads(proc.stdout), "_stderr": proc.stderr, "_code": proc.returncode}

    first, second = run(ana), run(ben)
    assert first["_code"] == second["_code"] == 0, second["_stderr"]
    written = next(s for s in second["steps"] if s["name"] == "diag-write-lines")
    counted = [next(s for s in r["steps"] if s["name"] == "diag-count-lines") for r in (first, second)]
    assert written["cached"] and not counted[1]["cached"]
    data = written["outputs"]["data"]
    assert data["path"].startswith(ben.home) and os.path.isdir(data["path"])  # fetched, here
    from kubesage.runs.artifacts import sha256_tree

    assert sha256_tree(data["path"]) == data["sha256"]
    assert counted[1]["returns"] == counted[0]["returns"] == {"output": 4}

"""Real servers the store tests use, started here and stopped after: PostgreSQL from Debian's
``postgresql`` package (``initdb``/``pg_ctl`` on a loopback port, in a temporary data folder, as
the ``postgres`` user when the tests run as root) and moto in server mode for S3."""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import pytest

PASSWORD = "team-secret-4711"  # the kubesage role's; tests check it never shows anywhere


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or (
        [shutil.which(name)] if shutil.which(name) else [])
    if not found:
        pytest.fail(f"PostgreSQL's {name} is not installed; run 'make setup' (it installs "
                    "Debian's postgresql)")
    return str(found[-1])


class Postgres:
    """A throwaway PostgreSQL server with a database ``kubesage`` owned by the role
    ``kubesage`` (password ``PASSWORD``, over TCP) and a read-only role ``reader``."""

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="kubesage-pg-")
        self.data = os.path.join(self.folder, "data")
        self.port = free_port()
        self.as_postgres = os.getuid() == 0
        if self.as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._run(_bin("initdb"), "-D", self.data, "-U", "postgres", "--auth-local=trust",
                  "--auth-host=scram-sha-256", "-E", "UTF8")
        self.start()
        self.sql(f"CREATE ROLE kubesage LOGIN PASSWORD '{PASSWORD}'",
                 "CREATE DATABASE kubesage OWNER kubesage",
                 f"CREATE ROLE reader LOGIN PASSWORD '{PASSWORD}'")

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = list(args)
        if self.as_postgres:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(shlex.quote(a) for a in args)]
        proc = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {proc.stderr or proc.stdout}")
        return proc

    def start(self) -> None:
        self._run(_bin("pg_ctl"), "-D", self.data, "-l", os.path.join(self.folder, "log"), "-w",
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._run(_bin("pg_ctl"), "-D", self.data, "-m", "fast", "-w", "stop", check=False)

    def restart(self) -> None:
        self._run(_bin("pg_ctl"), "-D", self.data, "-l", os.path.join(self.folder, "log"), "-m",
                  "fast", "-w", "-o",
                  f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "restart")

    def kill_and_restart(self, down_s: float = 2.0) -> None:
        """A crash: the server stopped at once (no clean shut-down), started again later."""
        self._run(_bin("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        time.sleep(down_s)
        self.start()

    def sql(self, *statements: str, database: str = "postgres") -> str:
        out = []
        for statement in statements:
            proc = self._run(_bin("psql"), "-h", self.folder, "-p", str(self.port), "-U",
                             "postgres", "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", statement)
            out.append(proc.stdout)
        return "".join(out)

    def url(self, user: str = "kubesage", database: str = "kubesage") -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def fresh_database(self, name: str) -> str:
        """A new empty database owned by ``kubesage``; its URL."""
        self.sql(f"CREATE DATABASE {name} OWNER kubesage")
        return self.url(database=name)

    def grant_read(self, database: str = "kubesage") -> None:
        """``reader`` may read every table of ``database`` (and nothing else)."""
        self.sql(f"GRANT CONNECT ON DATABASE {database} TO reader")
        self.sql("GRANT USAGE ON SCHEMA public TO reader",
                 "GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader", database=database)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    server = Postgres()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_password(monkeypatch: pytest.MonkeyPatch) -> str:
    """The store password in the environment, as a team member sets it."""
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    return PASSWORD


class Moto:
    """moto in server mode on loopback: a real S3 over HTTP."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen([_moto_server(), "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or self.proc.poll() is not None:
                    self.proc.kill()
                    pytest.fail("moto_server did not start")
                time.sleep(0.2)

    def environment(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL": self.url, "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}

    def bucket(self, name: str) -> Any:
        import boto3

        s3 = boto3.client("s3", endpoint_url=self.url, aws_access_key_id="testing",
                          aws_secret_access_key="testing", region_name="us-east-1")
        s3.create_bucket(Bucket=name)
        return s3

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _moto_server() -> str:
    import sys

    path = os.path.join(os.path.dirname(sys.executable), "moto_server")
    return path if os.path.exists(path) else "moto_server"


@pytest.fixture(scope="session")
def moto() -> Iterator[Moto]:
    server = Moto()
    try:
        yield server
    finally:
        server.close()

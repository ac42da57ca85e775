"""Shared fixtures: sample data, per-test local configs, a Docker engine, the CLI."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from kubesage.config.local import LocalConfig

pytest_plugins = ("tests.servers",)  # PostgreSQL and moto, started on demand

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBESAGE = [sys.executable, "-m", "kubesage.cli"]


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test starts without a developer's cluster or cloud settings (a test must never
    reach a real Kubeflow or AWS endpoint) and leaves the environment as it found it."""
    saved = dict(os.environ)
    for key in list(os.environ):
        if key.startswith(("KFP_", "KUBESAGE_CATALOG", "KUBESAGE_STORE", "KUBESAGE_ARTIFACTS",
                           "MLFLOW_", "PG")) or key in (
                "AWS_ENDPOINT_URL", "AWS_PROFILE"):
            monkeypatch.delenv(key)
    yield
    os.environ.clear()
    os.environ.update(saved)


# The test tiers. `make test-fast` runs the tests with none of these markers, with no Docker
# engine reachable; `make test` runs them all.
SLOW_MARKERS = ("docker", "server", "browser", "last")
# The fixtures that need a tier: the engine and its images, or a real server process.
TIER_OF_FIXTURE = {"docker_client": "docker", "pushed_images": "docker", "registry": "server",
                   "moto_endpoint": "server", "moto_s3": "server", "postgres": "server",
                   "moto": "server"}


def pytest_configure(config: pytest.Config) -> None:
    # here rather than in pyproject.toml, whose every change reinstalls set-up's .venv
    config.addinivalue_line("markers", "server: starts a real server process (moto in server "
                            "mode, the loopback docker-registry)")


def _tiers(item: pytest.Item) -> set[str]:
    return {m for m in SLOW_MARKERS if item.get_closest_marker(m) is not None}


class _DeadEngine:
    """A Unix socket where ``DOCKER_HOST`` points, standing in for an absent Docker engine: every
    connection (from this process or a CLI it starts) is recorded and answered with an error
    that names the test and the marker it lacks."""

    def __init__(self, nodeid: str) -> None:
        self.folder = tempfile.mkdtemp(prefix="ks-engine-")  # short: a socket path has <108 bytes
        self.path = os.path.join(self.folder, "docker.sock")
        self.touches: list[str] = []
        self.message = (f"{nodeid} touched the Docker engine but is not marked docker: add "
                        "@pytest.mark.docker (or pytestmark = pytest.mark.docker to its module)")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True, name="dead-engine")
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if self.stopped.is_set():  # close()'s own wake-up call
                    return
                conn.settimeout(5)
                request = b""
                try:
                    while b"\r\n\r\n" not in request and len(request) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        request += chunk
                except OSError:
                    pass
                self.touches.append(request.split(b"\r\n", 1)[0].decode(errors="replace")
                                    or "a connection")
                body = json.dumps({"message": self.message}).encode()
                try:
                    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\n"
                                 b"Content-Type: application/json\r\n"
                                 b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
                                 + body)
                except OSError:
                    pass

    def close(self) -> None:
        self.stopped.set()
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as wake:
            wake.connect(self.path)  # accept() returns, sees stopped
        self.thread.join(timeout=5)
        self.sock.close()
        shutil.rmtree(self.folder, ignore_errors=True)


_ENGINE_ENV = ("DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
_dead_engine = pytest.StashKey[tuple[_DeadEngine, dict[str, str | None]]]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """The guard of the tiers, before any fixture of the test starts. A test that asks for a
    fixture of a slow tier must carry that tier's marker. A test not marked docker (the fast
    tier, and server tests that need no engine) sees no Docker engine: ``DOCKER_HOST`` points at
    a ``_DeadEngine`` for it, its fixtures (of any scope) and every CLI it starts, and any touch
    fails it, by name."""
    tiers = _tiers(item)
    missing = sorted({f"{name} (mark it {tier})" for name in getattr(item, "fixturenames", ())
                      if (tier := TIER_OF_FIXTURE.get(name)) and tier not in tiers})
    if missing:
        pytest.fail(f"{item.nodeid} uses {', '.join(missing)}: add @pytest.mark.<tier> to the "
                    "test, or pytestmark = pytest.mark.<tier> to its module", pytrace=False)
    if "docker" in tiers:
        return
    engine = _DeadEngine(item.nodeid)
    item.stash[_dead_engine] = engine, {key: os.environ.get(key) for key in _ENGINE_ENV}
    for key in _ENGINE_ENV:
        os.environ.pop(key, None)
    os.environ["DOCKER_HOST"] = f"unix://{engine.path}"


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After the test's own teardown: the environment as it was; a touch of the engine is an
    error of the test, reported beside (never instead of) its own outcome."""
    try:
        result = yield
    except BaseException as e:
        touches, message = _restore(item)  # the teardown's own error is the one to see
        if touches:
            e.add_note(message)
        raise
    touches, message = _restore(item)
    if touches:
        pytest.fail(f"{message} ({len(touches)} request(s), the first: {touches[0]})",
                    pytrace=False)
    return result


def _restore(item: pytest.Item) -> tuple[list[str], str]:
    """Close the test's ``_DeadEngine``, put the engine's environment back; what touched it."""
    found = item.stash.get(_dead_engine, None)
    if found is None:
        return [], ""
    engine, saved = found
    del item.stash[_dead_engine]
    engine.close()
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return engine.touches, engine.message


@pytest.fixture(scope="session")
def fsx_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A folder that plays the FSx file system, holding the digits sample set."""
    from kubesage.project.sample_data import write_digits

    root = str(tmp_path_factory.mktemp("fsx"))
    os.chmod(root, 0o755)  # steps run as a non-root user; pytest's folders are private
    write_digits(root)
    return root


def unfused_kfp_config(folder: str) -> str:
    """config/kfp.yaml with ``fusion: off`` (one task per step), in ``folder``."""
    import yaml

    with open(os.path.join(REPO, "config", "kfp.yaml")) as f:
        doc = yaml.safe_load(f)
    doc["fusion"] = {"mode": "off"}
    doc["local"] = {"config": os.path.join(REPO, "config", "local.yaml")}
    path = os.path.join(folder, "kfp-unfused.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


def content_tag_of(image: str = "kubesage/torch") -> str:
    """``code-<hash>``: the tag naming this repository's image by the working tree's code."""
    from kubesage.docker_engine.images import code_hash, content_tag, image_dirs

    return content_tag(code_hash(REPO, image_dirs(REPO)[image]))


def write_config(path: str, fsx: str, store: str, **extra: Any) -> str:
    import yaml

    doc = {"mounts": {"fsx": fsx}, "store": store, **extra}
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return path


@pytest.fixture
def config_file(tmp_path, fsx_root: str) -> str:
    return write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"))


@pytest.fixture
def local_config(tmp_path, fsx_root: str) -> LocalConfig:
    return LocalConfig(mounts={"fsx": fsx_root}, store=str(tmp_path / "store"), parallelism=4)


@pytest.fixture(scope="session")
def docker_client() -> Any:
    """The real Docker engine; the images must be built (make setup does both)."""
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except Exception as e:
        pytest.fail(f"no Docker engine ({e}); run 'make setup' (scripts/setup.sh) first")
    try:
        client.images.get("kubesage/torch:latest")
    except Exception:
        pytest.fail("image kubesage/torch:latest is missing; run 'make setup'")
    return client


def containers_created(client: Any, since: float, until: float, run_id: str | None = None) -> list[str]:
    """Names of the kubesage steps whose containers the engine created in [since, until]."""
    events = client.events(since=int(since) - 1, until=int(until) + 1, decode=True,
                           filters={"type": "container", "event": "create",
                                    "label": "kubesage.run"})
    found = []
    for ev in events:
        attrs = ev.get("Actor", {}).get("Attributes", {})
        if run_id is None or attrs.get("kubesage.run") == run_id:
            found.append(attrs.get("kubesage.step", "?"))
    return found


def run_cli(*args: str, check: bool = False, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``kubesage ARGS`` in a fresh process, from the repository root."""
    proc = subprocess.run([*KUBESAGE, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"kubesage {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return proc


def run_json(*args: str) -> dict[str, Any]:
    proc = run_cli(*args, "--json")
    assert proc.stdout, proc.stderr
    record: dict[str, Any] = json.loads(proc.stdout)
    record["_stderr"] = proc.stderr
    record["_returncode"] = proc.returncode
    return record


def mlflow_client(tracking_uri: str) -> Any:
    """An MlflowClient on ``tracking_uri``, opened as kubesage's own writers open the store: under
    its lock. Opening a new SQLite store creates its tables, and a run's background logger may be
    creating them at the same moment; unserialized, one fails on the other's half-made tables
    ("table ... already exists")."""
    from mlflow import MlflowClient

    from kubesage.runtime.context import mlflow_store_lock

    with mlflow_store_lock(tracking_uri):
        client = MlflowClient(tracking_uri)
        client.search_experiments(max_results=1)  # the store is open, its tables made
    return client


def predictions_sha256(record: dict[str, Any], step: str = "predict") -> str:
    """sha256 of ``predictions.jsonl`` of a run's predict step (its ``summary.json`` holds
    timings, so the artifact's own sha256 differs between runs; the predictions do not)."""
    found = next(s for s in record["steps"] if s["name"] == step)
    with open(os.path.join(found["outputs"]["predictions"]["path"], "predictions.jsonl"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def quality(metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Metrics without throughput (images/s), which differs between any two runs."""
    return {step: {k: v for k, v in values.items() if "per_s" not in k}
            for step, values in metrics.items()}


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real container registry on loopback (Debian's docker-registry, distribution 2.8),
    started for the session and stopped after: ``127.0.0.1:PORT``. The Docker engine trusts
    loopback registries without TLS."""
    import socket
    import time
    import urllib.request

    folder = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = folder / "config.yml"
    config.write_text(f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {folder}/data\n"
                      f"http:\n  addr: 127.0.0.1:{port}\nlog:\n  level: error\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=2).read()
            break
        except OSError:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("docker-registry did not start; run 'make setup' (it installs it)")
            time.sleep(0.2)
    yield f"127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=30)


def push_stand_in(client: Any, refs: list[str]) -> None:
    """Push a tiny image under each of ``refs``: a stand-in for the real images in tests whose
    subject is submission, not the image (the real push is tested on its own)."""
    import io
    import tarfile

    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        for name, data in (("Dockerfile", b"FROM scratch\nCOPY stand-in /stand-in\n"),
                           ("stand-in", b"a stand-in image\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    image = client.images.build(fileobj=context, custom_context=True, rm=True)[0]
    for ref in refs:
        repo, tag = ref.rsplit(":", 1)
        image.tag(repo, tag)
        for chunk in client.images.push(repo, tag, stream=True, decode=True):
            assert "error" not in chunk, chunk


@pytest.fixture(scope="session")
def pushed_images(registry: str, docker_client: Any) -> str:
    """The loopback registry holding this repository's images under the content tags of the
    working tree's code (stand-ins: what submission checks is that they are there); its host."""
    from kubesage.docker_engine.images import code_hash, content_tag, image_dirs

    refs = [f"{registry}/{name}:{content_tag(code_hash(REPO, dockerfile))}"
            for name, dockerfile in image_dirs(REPO).items()]
    push_stand_in(docker_client, refs)
    return registry


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``last`` (the fault campaign restarts the Docker engine) run at the end."""
    items.sort(key=lambda item: item.get_closest_marker("last") is not None)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``pytest -n N --dist loadfile`` (``make test``): each module runs whole on one worker, so
    its module fixtures run once, and the conformance modules share one worker, so the session's
    conformance runs (started for every selected pair) run once. (xdist's own ``loadgroup``
    does not group under pytest 9: it renames ``item._nodeid``, which pytest 9 no longer reads.)"""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return "tests/conformance/" if module.startswith("tests/conformance/") else module

    return ByModule(config, log)

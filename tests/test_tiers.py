"""The test tiers' guard (tests/conftest.py): a test outside the slow tiers that touches the
Docker engine, or asks for a slow tier's fixture, fails by name and says which marker to add;
a genuine failure is still reported as itself. Checked on a pytest session of its own."""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

from tests.conftest import REPO

INNER = '''
import os
import subprocess
import sys

import pytest


def test_touch_swallowed():
    import docker

    try:
        docker.from_env()
    except Exception:
        pass  # the guard sees the touch all the same


def test_touch_from_a_cli():
    subprocess.run([sys.executable, "-c", "import docker; docker.from_env()"],
                   capture_output=True)


def test_touch_and_a_failure_of_its_own():
    import docker

    try:
        docker.from_env()
    except Exception:
        pass
    assert 1 + 1 == 3, "the test's own failure"


def test_asks_for_the_engine(docker_client):
    pass


def test_asks_for_a_registry(registry):
    pass


def test_a_failure_of_its_own():
    assert "engine" == "no engine", "a genuine failure"


def test_clean():
    assert os.environ["DOCKER_HOST"].startswith("unix:///")


@pytest.mark.server
def test_marked_server_only_touches():
    import docker

    docker.from_env()


@pytest.mark.docker
def test_marked_docker_sees_the_real_setting():
    assert os.environ["DOCKER_HOST"] == "unix:///nonexistent/docker.sock"
'''


def test_the_guard_fails_each_untiered_touch_of_the_engine_by_name(tmp_path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    docker: the engine\n")
    report = tmp_path / "report.xml"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider",
         "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path), f"--junitxml={report}",
         str(tmp_path / "test_inner.py")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env={**{k: v for k, v in os.environ.items() if k != "PYTEST_ADDOPTS"},  # not the outer's
             "DOCKER_HOST": "unix:///nonexistent/docker.sock",
             "PYTHONPATH": os.pathsep.join(filter(None, [REPO, os.environ.get("PYTHONPATH")]))})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    outcomes: dict[str, list[tuple[str, str]]] = {}
    for case in ET.parse(report).iter("testcase"):  # a call's failure and a teardown's error
        outcomes.setdefault(case.get("name", ""), []).extend(  # are two entries of one name
            (c.tag, (c.get("message") or "") + (c.text or "")) for c in case
            if c.tag in ("failure", "error"))

    def says(name: str, *texts: str) -> bool:
        return any(all(t in message for t in texts) for _, message in outcomes[name])

    for name in ("test_touch_swallowed", "test_touch_from_a_cli",
                 "test_marked_server_only_touches"):  # a server is no licence for the engine
        assert says(name, f"test_inner.py::{name} touched the Docker engine but is not marked "
                    "docker: add @pytest.mark.docker", "GET /"), outcomes[name]
    both = outcomes["test_touch_and_a_failure_of_its_own"]
    assert ("failure" in [kind for kind, _ in both]
            and says("test_touch_and_a_failure_of_its_own", "the test's own failure")), both
    assert says("test_touch_and_a_failure_of_its_own", "touched the Docker engine"), both
    # a slow tier's fixture is refused before it starts (no engine client, no server)
    assert says("test_asks_for_the_engine", "uses docker_client (mark it docker)",
                "add @pytest.mark.<tier>"), outcomes["test_asks_for_the_engine"]
    assert says("test_asks_for_a_registry", "uses registry (mark it server)"), \
        outcomes["test_asks_for_a_registry"]
    assert not says("test_asks_for_the_engine", "no Docker engine")
    # a genuine failure is itself, and no touch is invented
    own = outcomes["test_a_failure_of_its_own"]
    assert [kind for kind, _ in own] == ["failure"] and "a genuine failure" in own[0][1], own
    assert outcomes["test_clean"] == []
    assert outcomes["test_marked_docker_sees_the_real_setting"] == []

"""A new team, from an empty folder: init, a component of its own run alone in Docker, a
pipeline, edits that reach every local path at once, a push to a real registry, publishing to
a catalog, and a second team's project that uses the component and compiles for both targets.

On the real Docker engine, with a real registry on loopback (the ``registry`` fixture).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from kubesage.docker_engine.images import CODE_LABEL, code_hash, image_dirs, runtime_image
from kubesage.project.scaffold import init_project

pytestmark = [pytest.mark.docker, pytest.mark.server]


def kubesage(project: str, *args: str, env: dict[str, str] | None = None
             ) -> subprocess.CompletedProcess[str]:
    """``kubesage ARGS`` from the project's folder, as its team would run it."""
    return subprocess.run([sys.executable, "-m", "kubesage.cli", *args], cwd=project,
                          capture_output=True, text=True, timeout=900,
                          env={**os.environ, **(env or {})})


def run_json(project: str, *args: str) -> dict[str, Any]:
    proc = kubesage(project, "run", *args, "--json")
    assert proc.returncode == 0, proc.stderr[-3000:]
    record: dict[str, Any] = json.loads(proc.stdout)
    record["_stderr"] = proc.stderr
    return record


def edit(path: str, old: str, new: str) -> None:
    with open(path) as f:
        text = f.read()
    assert old in text
    with open(path, "w") as f:
        f.write(text.replace(old, new))


def point_configs_at(project: str, registry: str) -> None:
    """The project's target configs with the loopback registry (as a team fills in its own)."""
    kfp = os.path.join(project, "config", "kfp.yaml")
    doc = yaml.safe_load(open(kfp))
    doc["image"] = {"registry": registry}
    yaml.safe_dump(doc, open(kfp, "w"))
    sm = os.path.join(project, "config", "sagemaker.yaml")
    doc = yaml.safe_load(open(sm))
    doc["images"] = {name: f"{registry}/{name}" for name in doc["images"]}
    yaml.safe_dump(doc, open(sm, "w"))


@pytest.fixture
def names(docker_client: Any) -> Iterator[tuple[str, str]]:
    """Two new teams' names (new each time: their images are built from nothing), whose images
    are removed after the test."""
    token = secrets.token_hex(3)
    pair = (f"team-{token}", f"other-{token}")
    yield pair
    for image in docker_client.images.list():
        for tag in image.tags:
            if any(name in tag for name in pair):
                docker_client.images.remove(tag, noprune=True)


def test_a_new_team_from_an_empty_folder(tmp_path, registry: str, docker_client: Any,
                                         names: tuple[str, str]) -> None:
    name, other_name = names
    team = str(tmp_path / name)
    files = init_project(team)
    assert {"README.md", "pyproject.toml", "components/text.py", "pipelines/example.py",
            "containers/main/Dockerfile", "config/local.yaml", "config/kfp.yaml",
            "config/sagemaker.yaml", "tests/test_components.py"} <= set(files)
    assert "kubesage" not in os.listdir(team)  # nothing of kubesage copied in
    # the README's second command: the component's unit test, a plain function call
    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "tests"], cwd=team,
                            capture_output=True, text=True, timeout=300)
    assert tested.returncode == 0, tested.stdout[-2000:]

    # one component alone, in its container, on a folder of this machine
    alone = run_json(team, "components/text.py:count-words", "--input", "text=data",
                     "--param", "min_length=4")
    assert alone["status"] == "succeeded" and alone["steps"][0]["returns"] == {"output": 8}
    assert f"image {name}/main:latest is not built; building it" in alone["_stderr"]
    docker_client.images.get(runtime_image())  # its base, made from the installed kubesage
    image = docker_client.images.get(f"{name}/main:latest")
    assert image.labels[CODE_LABEL] == code_hash(team, image_dirs(team)[f"{name}/main"])
    assert alone["code"][f"{name}/main"] == image.labels[CODE_LABEL]
    assert alone["inputs"]["text"]["path"] == os.path.join(team, "data")

    # the README's first command: the example pipeline
    first = run_json(team, "pipelines/example.py")
    assert first["status"] == "succeeded"
    returns = {s["name"]: s["returns"]["output"] for s in first["steps"]}
    assert returns == {"load-text": 2, "count-words": 11}
    # the same component on an output of that run, then re-run from its record
    again = run_json(team, "components/text.py:count-words",
                     "--input", f"text={first['run_id']}:load-text/text")
    assert again["steps"][0]["returns"] == {"output": 14}  # min_length 1: every word
    assert again["inputs"]["text"]["metadata"] == {"lines": 2}
    rerun = kubesage(team, "rerun", again["run_id"], "--json")
    assert rerun.returncode == 0 and json.loads(rerun.stdout)["rerun_of"] == again["run_id"]

    # edit the code: every local path runs the new code at once, no manual step
    components = os.path.join(team, "components", "text.py")
    for n, extra in enumerate((["--runner", "docker"], ["--target", "kfp"],
                               ["--target", "sagemaker"]), start=1):
        edit(components, "    report.log_metric(\"words\", words)",
             f"    words += {n * 1000}  # edit {n}\n    report.log_metric(\"words\", words)")
        record = run_json(team, "pipelines/example.py", *extra)
        assert "rebuilding its code layer" in record["_stderr"], extra
        counted = next(s for s in record["steps"] if s["name"] == "count-words")
        assert counted["returns"] == {"output": 11 + n * 1000}, (extra, counted["returns"])
        edit(components, f"    words += {n * 1000}  # edit {n}\n", "")

    # where the image cannot be rebuilt, the run stops before any step, saying why
    requirements = os.path.join(team, "containers", "main", "requirements.txt")
    with open(requirements, "a") as f:
        f.write("no-such-package-kubesage-test==1.0\n")
    stopped = kubesage(team, "run", "pipelines/example.py")
    assert stopped.returncode == 2 and "Traceback" not in stopped.stderr
    assert "must be built from the working tree's code, and that failed" in stopped.stderr
    assert "> load-text started" not in stopped.stderr
    edit(requirements, "no-such-package-kubesage-test==1.0\n", "")

    # images you can trust on the cloud: compile names the content tag, submit wants it pushed
    point_configs_at(team, registry)
    hash_ = code_hash(team, image_dirs(team)[f"{name}/main"])
    out = str(tmp_path / "team-a.yaml")
    assert kubesage(team, "compile", "pipelines/example.py", "--target", "kfp", "-o", out).returncode == 0
    assert f"image: {registry}/{name}/main:code-{hash_[:16]}" in open(out).read()
    refused = kubesage(team, "submit", out, "--target", "kfp", env={"KFP_HOST": "http://127.0.0.1:9"})
    assert refused.returncode == 2 and "is not in its registry" in refused.stderr
    assert "kubesage build --push" in refused.stderr and "Traceback" not in refused.stderr
    pushed = kubesage(team, "build", "--push", "--target", "kfp")
    assert pushed.returncode == 0, pushed.stderr[-2000:]
    digest_ref = dict(line.split() for line in pushed.stdout.splitlines())[f"{name}/main"]
    assert digest_ref.startswith(f"{registry}/{name}/main@sha256:")
    docker_client.images.get_registry_data(f"{registry}/{name}/main:code-{hash_[:16]}")

    # reuse across teams: publish, then a second project uses it and compiles both targets
    catalog = str(tmp_path / "catalog")
    published = kubesage(team, "components", "--catalog", catalog, "publish",
                         "components/text.py:count-words", "--image", digest_ref)
    assert published.returncode == 0, published.stderr
    other = str(tmp_path / other_name)
    init_project(other)
    with open(os.path.join(other, "pipelines", "shared.py"), "w") as f:
        f.write('from components.text import load_text\nfrom kubesage import pipeline\n'
                'from kubesage.catalog import use\n\n'
                'count_words = use("count-words@0.1.0")\n\n\n'
                f'@pipeline(name="{other_name}-shared")\ndef shared(min_length: int = 2) -> None:\n'
                '    text = load_text().outputs["text"]\n'
                '    count_words(text=text, min_length=min_length)\n')
    point_configs_at(other, registry)
    env = {"KUBESAGE_CATALOG": catalog}
    not_built = kubesage(other, "compile", "pipelines/shared.py", "--target", "kfp", "-o",
                         str(tmp_path / "b.yaml"), env=env)
    assert not_built.returncode == 2 and "is not built" in not_built.stderr  # its own image
    assert kubesage(other, "build").returncode == 0
    for target, suffix in (("kfp", "yaml"), ("sagemaker", "json")):
        compiled = str(tmp_path / f"team-b.{suffix}")
        proc = kubesage(other, "compile", "pipelines/shared.py", "--target", target, "-o",
                        compiled, env=env)
        assert proc.returncode == 0, proc.stderr
        assert "is valid" in kubesage(other, "validate", compiled).stdout
        text = open(compiled).read()
        assert digest_ref in text  # the used component runs the image the catalog pinned
        assert f"{other_name}/main:code-" in text  # its own components, by content tag
    assert os.path.exists(os.path.join(other, "kubesage.lock"))

"""The command line: exit codes and messages of the paths that need no Docker."""

from __future__ import annotations

import os
import re

import pytest

from tests.conftest import run_cli


@pytest.mark.docker
def test_compile_for_kfp_writes_a_file_that_validates(tmp_path) -> None:
    out = tmp_path / "p.yaml"
    run_cli("compile", "pipelines/image_classification.py", "--target", "kfp", "-o", str(out),
            check=True)
    assert out.is_file() and not list(tmp_path.glob("*.tmp*"))
    proc = run_cli("validate", str(out), check=True)
    assert "Kubeflow pipeline 'image-classification' is valid" in proc.stdout


def test_validate_rejects_unknown_file_kinds(tmp_path) -> None:
    path = tmp_path / "pipeline.txt"
    path.write_text("x")
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2
    assert "expected a pipeline (.py) or a compiled file: .yaml, .yml (kfp" in proc.stderr


def test_compile_reports_definition_errors_first(tmp_path) -> None:
    out = tmp_path / "p.yaml"
    proc = run_cli("compile", "tests/pipelines/invalid.py", "--target", "kfp", "-o", str(out))
    assert proc.returncode == 2 and "input 'data' expects a Dataset artifact" in proc.stderr
    assert not out.exists()


def test_validate_pipeline_file() -> None:
    proc = run_cli("validate", "pipelines/image_classification.py", check=True)
    assert "pipeline 'image-classification' is valid (6 tasks)" in proc.stdout


def test_bad_parameter_is_named_before_anything_runs(tmp_path) -> None:
    proc = run_cli("run", "pipelines/image_classification.py", "--runner", "subprocess",
                   "--param", "epochs=many", "--config", os.devnull)
    assert proc.returncode == 2
    assert "pipeline parameter 'epochs' expects a int" in proc.stderr


def test_missing_pipeline_file() -> None:
    proc = run_cli("run", "pipelines/nope.py")
    assert proc.returncode == 2 and "pipeline file pipelines/nope.py does not exist" in proc.stderr


@pytest.mark.parametrize("source, message", [
    ("from kubesage import pipeline\ndef f(:\n", r"p\.py:2: syntax error: invalid syntax; fix that line"),
    ("import no_such_module_here\n", r"p\.py: cannot import no_such_module_here .*install it"),
    ("x = 1 / 0\n", r"p\.py: importing it raised ZeroDivisionError: division by zero at .*p\.py:1"),
])
def test_a_broken_pipeline_file_is_named_without_a_traceback(tmp_path, source: str, message: str) -> None:
    path = tmp_path / "p.py"
    path.write_text(source)
    proc = run_cli("validate", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert re.search(message, proc.stderr), proc.stderr


def test_version() -> None:
    from kubesage import __version__

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"kubesage {__version__}"


def test_the_command_line_starts_without_any_heavy_library() -> None:
    """Every command pays the command line's own imports: the run store's database library
    (SQLAlchemy: 0.3 s here), the SDKs and the engine's client load when a command uses them."""
    import subprocess
    import sys

    heavy = ("sqlalchemy", "alembic", "kfp", "sagemaker", "boto3", "docker", "mlflow", "torch",
             "fastapi", "numpy", "yaml")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys, kubesage.cli; "
         f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"],
        capture_output=True, text=True, check=True)
    assert proc.stdout.split() == []


def test_a_pipeline_file_rewritten_within_the_same_second_loads_as_it_is_now(tmp_path) -> None:
    """Python trusts a cached .pyc whose source has the same size and modification second: a
    generated pipeline file rewritten at once must not load as it was (bytecode on, as Python's
    default is, whatever this machine's PYTHONDONTWRITEBYTECODE says)."""
    import subprocess

    from tests.conftest import KUBESAGE, REPO

    path = tmp_path / "generated.py"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for name in ("aaa", "bbb"):
        path.write_text("from components.probe import probe\nfrom kubesage import pipeline\n\n\n"
                        f"@pipeline(name='{name}')\ndef p() -> None:\n    probe(message='x')\n")
        os.utime(path, (1_700_000_000, 1_700_000_000))  # the same second both times
        proc = subprocess.run([*KUBESAGE, "validate", str(path)], cwd=REPO, env=env,
                              capture_output=True, text=True, check=True)
        assert f"pipeline '{name}' is valid" in proc.stdout


def test_a_component_rewritten_within_the_same_second_runs_as_it_is_now(tmp_path) -> None:
    """The same for a component a subprocess step imports: the steps write no bytecode either."""
    import json
    import subprocess

    from tests.conftest import KUBESAGE, write_config

    (tmp_path / "pyproject.toml").write_text("")
    (tmp_path / "steps").mkdir()
    (tmp_path / "steps" / "__init__.py").write_text("")
    (tmp_path / "pipe.py").write_text(
        "from kubesage import pipeline\nfrom steps.say import say\n\n\n"
        "@pipeline(name='said')\ndef said() -> None:\n    say()\n")
    config = write_config(str(tmp_path / "c.yaml"), str(tmp_path), str(tmp_path / "s"),
                          mlflow_autolog=False)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    for word in ("aaa", "bbb"):
        source = tmp_path / "steps" / "say.py"
        source.write_text("from kubesage import component\n\n\n@component(version='1.0.0')\n"
                          f"def say() -> str:\n    return '{word}'\n")
        os.utime(source, (1_700_000_000, 1_700_000_000))  # the same second both times
        proc = subprocess.run([*KUBESAGE, "run", "pipe.py", "--runner", "subprocess", "--config",
                               config, "--no-cache", "--json"], cwd=tmp_path, env=env,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["steps"][0]["returns"]["output"] == word

"""The command line: exit codes and messages of the paths that need no Docker."""

from __future__ import annotations

import os

from tests.conftest import run_cli


def test_compile_for_a_target_that_has_not_landed_writes_nothing(tmp_path) -> None:
    out = tmp_path / "p.yaml"
    proc = run_cli("compile", "pipelines/image_classification.py", "--target", "kfp", "-o", str(out))
    if proc.returncode == 0:  # the compiler has landed: it must have written the file
        assert out.is_file()
    else:
        assert "has not landed yet; nothing was written" in proc.stderr
        assert not out.exists()


def test_compile_reports_definition_errors_first(tmp_path) -> None:
    out = tmp_path / "p.yaml"
    proc = run_cli("compile", "tests/pipelines/invalid.py", "--target", "kfp", "-o", str(out))
    assert proc.returncode == 2 and "input 'data' expects a Dataset artifact" in proc.stderr
    assert not out.exists()


def test_validate_pipeline_file() -> None:
    proc = run_cli("validate", "pipelines/image_classification.py", check=True)
    assert "pipeline 'image-classification' is valid (4 tasks)" in proc.stdout


def test_bad_parameter_is_named_before_anything_runs(tmp_path) -> None:
    proc = run_cli("run", "pipelines/image_classification.py", "--runner", "subprocess",
                   "--param", "epochs=many", "--config", os.devnull)
    assert proc.returncode == 2
    assert "pipeline parameter 'epochs' expects a int" in proc.stderr


def test_missing_pipeline_file() -> None:
    proc = run_cli("run", "pipelines/nope.py")
    assert proc.returncode == 2 and "pipeline file pipelines/nope.py does not exist" in proc.stderr

"""The results renderer: a Markdown table, and the README block it rewrites. No Docker needed."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conformance import harness, matrix

RESULTS = {
    "paths": ["docker", "subprocess", "kfp", "sagemaker"],
    "features": ["artifacts", "fan-out"],
    "results": {
        "artifacts": {"docker": "same", "subprocess": "same",
                      "kfp": "refused: kfp.local drops outputs | of containers",
                      "sagemaker": "differs: step 'make' output 'model' is a file\nmodel.tar.gz"},
        "fan-out": {"docker": "same", "kfp": "same"},
    },
}

TABLE = (
    "| feature | docker | subprocess | kfp | sagemaker |\n"
    "|---|---|---|---|---|\n"
    "| artifacts | same | same | refused: kfp.local drops outputs \\| of containers | "
    "differs: step 'make' output 'model' is a file model.tar.gz |\n"
    "| fan-out | same | not run | same | not run |\n"
)


def test_render_gives_one_row_per_feature_and_one_column_per_path() -> None:
    assert matrix.render(RESULTS) == TABLE


def test_render_reads_what_the_harness_writes(tmp_path) -> None:
    path = str(tmp_path / "results.json")
    harness.write_results(path, {("fan-out", "docker"): "same", ("fan-out", "kfp"): "differs: x",
                                 ("artifacts", "sagemaker"): "refused: no"}, wall_s=2.04)
    doc = json.load(open(path))
    assert doc["wall_s"] == 2.0
    assert matrix.render(doc).splitlines()[2:] == [
        "| artifacts | not run | not run | not run | not run | refused: no | not run |",
        "| fan-out | same | not run | differs: x | not run | not run | not run |"]


def test_replace_block_keeps_the_markers_and_everything_around_them() -> None:
    text = f"# x\nbefore\n{matrix.START}\nold table\n{matrix.END}\nafter\n"
    assert matrix.replace_block(text, TABLE) == (
        f"# x\nbefore\n{matrix.START}\n{TABLE}{matrix.END}\nafter\n")
    assert matrix.replace_block(matrix.replace_block(text, TABLE), TABLE) == \
        matrix.replace_block(text, TABLE)
    with pytest.raises(ValueError, match="conformance:start"):
        matrix.replace_block("no markers here\n", TABLE)


def test_command_line_rewrites_a_readme(tmp_path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{matrix.START}\n{matrix.END}\nend\n")
    cmd = [sys.executable, "-m", "tests.conformance.matrix", "--results", str(results)]
    printed = subprocess.run(cmd, capture_output=True, text=True, cwd=harness.REPO, check=True)
    assert printed.stdout == TABLE
    subprocess.run([*cmd, "--readme", str(readme)], capture_output=True, text=True,
                   cwd=harness.REPO, check=True)
    assert readme.read_text() == f"intro\n{matrix.START}\n{TABLE}{matrix.END}\nend\n"
    readme.write_text("no block\n")
    failed = subprocess.run([*cmd, "--readme", str(readme)], capture_output=True, text=True,
                            cwd=harness.REPO)
    assert failed.returncode == 2 and "conformance:start" in failed.stderr

"""The malformed-input corpus (``tests/malformed/cases.yaml``): every bad pipeline, config,
compiled file, catalog entry, lock file and data folder gets one line of error that names the
file, the problem and the fix, a documented exit code, no traceback, and nothing written that
looks complete."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
import yaml

from tests.conftest import REPO, write_config

CORPUS = os.path.join(REPO, "tests", "malformed")
with open(os.path.join(CORPUS, "cases.yaml")) as f:
    CASES: list[dict[str, Any]] = yaml.safe_load(f)


def expand(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{" + key + "}", value)
    return text


def check_one_line_error(proc: subprocess.CompletedProcess[str], names: str, error: str) -> str:
    """The error line of a command that refused: exactly one, naming ``names``, matching
    ``error``; no traceback anywhere."""
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    line = errors[0]
    assert names in line, f"the error does not name {names!r}: {line}"
    assert re.search(error, line), f"{line!r} does not match {error!r}"
    return line


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) + len(DATA_CASES) >= 40
    for case in CASES:
        assert {"name", "file", "run", "error"} <= set(case), case


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_malformed_input_is_named_with_its_fix(case: dict[str, Any], tmp_path) -> None:
    path = os.path.join(CORPUS, case["file"])
    values = {"file": path, "tmp": str(tmp_path)}
    for target, source in (case.get("place") or {}).items():
        target = expand(target, values)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        source = expand(source, values)
        corpus_file = os.path.join(CORPUS, source)
        if os.path.isfile(source) or os.path.isfile(corpus_file):
            shutil.copyfile(source if os.path.isfile(source) else corpus_file, target)
        else:
            with open(target, "w") as f:
                f.write(source)
    cwd = expand(case.get("cwd", REPO), values)
    env = {**os.environ, **{k: expand(v, values) for k, v in (case.get("env") or {}).items()}}
    proc = subprocess.run([sys.executable, "-m", "kubesage.cli",
                           *[expand(a, values) for a in case["run"]]],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == case.get("exit", 2), proc.stderr
    check_one_line_error(proc, case.get("names", os.path.basename(case["file"])), case["error"])
    for leftover in case.get("absent", []):
        assert not os.path.exists(expand(leftover, values)), f"{leftover} was written"


# -- data: real images in a folder that plays FSx, preprocessed in Docker ---------------------
def _digits(fsx_root: str, tmp_path: Any, broken: str) -> str:
    """Two classes of the sample digits, with one thing broken; the data folder."""
    data = tmp_path / "fsx"
    for digit in ("0", "1"):
        shutil.copytree(os.path.join(fsx_root, "digits", digit), data / "digits" / digit)
    folder = data / "digits" / "1"
    first = sorted(os.listdir(folder))[0]
    if broken == "corrupt":
        (folder / "corrupt.png").write_bytes(b"this is not a PNG")
    elif broken == "truncated":
        raw = (folder / first).read_bytes()
        (folder / "truncated.png").write_bytes(raw[: len(raw) // 2])
    elif broken == "empty class":
        (data / "digits" / "7").mkdir()
    elif broken == "non-UTF-8 name":
        os.rename(os.fsencode(folder / first), os.fsencode(folder) + b"/caf\xe9.png")
    return str(data)


DATA_CASES = {
    "corrupt": (0, "corrupt.png", r"quarantined 1/corrupt.png: .*; replace or remove it"),
    "truncated": (0, "truncated.png", r"quarantined 1/truncated.png: .*; replace or remove it"),
    "empty class": (1, "7", r"class folder /fsx/digits/7 has no images; add images or remove it"),
    "non-UTF-8 name": (0, "caf", r"quarantined 1/caf.*: its name is not UTF-8; rename it"),
}


@pytest.mark.docker
@pytest.mark.parametrize("broken", sorted(DATA_CASES))
def test_bad_data_is_named_with_its_fix(broken: str, tmp_path, fsx_root: str,
                                        docker_client: Any) -> None:
    code, names, message = DATA_CASES[broken]
    data = _digits(fsx_root, tmp_path, broken)
    config = write_config(str(tmp_path / "local.yaml"), data, str(tmp_path / "store"))
    proc = subprocess.run([sys.executable, "-m", "kubesage.cli", "run",
                           "tests/malformed/pipelines/preprocess_only.py", "--config", config],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if re.search(message, line)]
    assert lines and names in lines[0], proc.stderr[-3000:]
    if code:  # a failed step leaves no artifact that looks complete
        store = tmp_path / "store" / "artifacts"
        assert not [p for p in store.rglob("data") if p.is_dir()]

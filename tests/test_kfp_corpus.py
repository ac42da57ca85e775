"""No false alarms: ``kubesage validate`` accepts every valid pipeline kfp's compiler emits, and
still names what is broken in the invalid ones.

Two corpora, one test per file:

* ``tests/data/kfp_valid`` and ``tests/data/kfp_invalid``: pipelines written with the kfp DSL and
  compiled by kfp (format strings of parameters and task outputs, dsl.If/Elif/Else, loops,
  machine fields and images from parameters and task outputs, exit handlers, nested pipelines,
  Kubernetes config), and hand-broken copies of them. ``tests/data/kfp_valid/generate.py``
  rewrites both.
* kfp's own test corpus, ``test_data/sdk_compiled_pipelines`` of kubeflow/pipelines (150 valid
  YAML files at commit 7b70c7b), when ``KUBESAGE_KFP_TEST_DATA`` names that folder or a checkout
  of the repository; it is not copied here.
"""

from __future__ import annotations

import glob
import os
import re
import subprocess

import pytest
import yaml

from kubesage.targets.kfp.validate import KfpValidationError, validate_file
from tests.conftest import REPO, run_cli

VALID_DIR = os.path.join(REPO, "tests", "data", "kfp_valid")
INVALID_DIR = os.path.join(REPO, "tests", "data", "kfp_invalid")
VALID = sorted(glob.glob(os.path.join(VALID_DIR, "*.yaml")))
INVALID = sorted(glob.glob(os.path.join(INVALID_DIR, "*.yaml")))
with open(os.path.join(INVALID_DIR, "expected.yaml")) as f:
    EXPECTED: dict[str, str] = yaml.safe_load(f)
INVALID = [p for p in INVALID if os.path.basename(p) != "expected.yaml"]


def _upstream() -> str | None:
    """kfp's ``test_data/sdk_compiled_pipelines``, from ``KUBESAGE_KFP_TEST_DATA``."""
    given = os.environ.get("KUBESAGE_KFP_TEST_DATA")
    if not given:
        return None
    for folder in (given, os.path.join(given, "test_data", "sdk_compiled_pipelines")):
        if os.path.isdir(os.path.join(folder, "valid")):
            return folder
    raise RuntimeError(f"KUBESAGE_KFP_TEST_DATA={given} holds no valid/ folder; give kfp's "
                       "test_data/sdk_compiled_pipelines or a kubeflow/pipelines checkout")


UPSTREAM = _upstream()
UPSTREAM_VALID = sorted(glob.glob(os.path.join(UPSTREAM, "valid", "**", "*.yaml"),
                                  recursive=True)) if UPSTREAM else []
UPSTREAM_INVALID = sorted(p for p in glob.glob(os.path.join(UPSTREAM, "invalid", "*"))
                          if os.path.isfile(p)) if UPSTREAM else []
NO_UPSTREAM = pytest.mark.skipif(
    UPSTREAM is None, reason="kfp's test corpus is not here: set KUBESAGE_KFP_TEST_DATA to a "
    "kubeflow/pipelines checkout (or its test_data/sdk_compiled_pipelines)")


def _id(path: str, root: str) -> str:
    return os.path.relpath(path, root)


def check_refused(proc: subprocess.CompletedProcess[str], path: str) -> str:
    """``kubesage validate`` refused ``path``: exit 2, one error line naming it, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr
    assert path in errors[0], errors[0]
    return errors[0]


def test_the_corpus_covers_the_cases() -> None:
    assert len(VALID) >= 8 and len(INVALID) >= 12
    assert sorted(EXPECTED) == sorted(os.path.basename(p) for p in INVALID)
    text = "".join(open(p).read() for p in VALID)
    for compiled_by_kfp in ("pipelinechannel--", "resourceCpuLimit: '{{$.inputs.parameters",
                            "accelerator_type:", "base_image:", "parameterIterator", "triggerPolicy",
                            "ALL_UPSTREAM_TASKS_COMPLETED", "valueFromOneof", "platforms:"):
        assert compiled_by_kfp in text, compiled_by_kfp


@pytest.mark.parametrize("path", VALID, ids=[_id(p, VALID_DIR) for p in VALID])
def test_valid_pipeline_is_accepted(path: str) -> None:
    assert re.match(re.escape(path) + r": Kubeflow pipeline '[a-z0-9-]+' is valid \(",
                    validate_file(path))


@pytest.mark.parametrize("path", INVALID, ids=[_id(p, INVALID_DIR) for p in INVALID])
def test_invalid_pipeline_is_named(path: str) -> None:
    line = check_refused(run_cli("validate", path, timeout=300), path)
    assert re.search(EXPECTED[os.path.basename(path)], line), line


def test_cli_accepts_a_pipeline_with_injected_inputs() -> None:
    path = os.path.join(VALID_DIR, "machine_fields_from_task_outputs.yaml")
    proc = run_cli("validate", path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Kubeflow pipeline 'machine-fields-from-task-outputs' is valid" in proc.stdout


def test_an_undeclared_input_is_still_refused(tmp_path) -> None:
    """What the compiler injects is accepted by its shape; the same key written by hand is not."""
    with open(os.path.join(VALID_DIR, "params_containing_format.yaml")) as f:
        docs = list(yaml.safe_load_all(f))
    params = docs[0]["root"]["dag"]["tasks"]["say"]["inputs"]["parameters"]
    params["memory_limit"] = {"runtimeValue": {"constant": "{{$.inputs.parameters['nope']}}"}}
    path = str(tmp_path / "hand_written.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f)
    with pytest.raises(KfpValidationError, match="passes parameter 'memory_limit', which "
                       "component 'comp-say' does not declare"):
        validate_file(path)


@NO_UPSTREAM
def test_kfp_corpus_is_all_there() -> None:
    assert len(UPSTREAM_VALID) >= 150, len(UPSTREAM_VALID)
    assert len(UPSTREAM_INVALID) >= 3, UPSTREAM_INVALID


@NO_UPSTREAM
@pytest.mark.parametrize("path", UPSTREAM_VALID or [None],
                         ids=[_id(p, UPSTREAM) for p in UPSTREAM_VALID] if UPSTREAM else ["-"])
def test_kfp_valid_pipeline_is_accepted(path: str) -> None:
    assert " is valid (" in validate_file(path)


@NO_UPSTREAM
@pytest.mark.parametrize("path", UPSTREAM_INVALID or [None],
                         ids=[_id(p, UPSTREAM) for p in UPSTREAM_INVALID] if UPSTREAM else ["-"])
def test_kfp_invalid_file_is_named(path: str) -> None:
    check_refused(run_cli("validate", path, timeout=300), path)

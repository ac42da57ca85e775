"""The Target interface and registry: a new target is one package plus one registry line, and
every target honours each run option or refuses it by name."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout

import pytest

from kubesage import cli
from kubesage.project.loader import load_pipeline
from kubesage.targets import base as targets
from tests.conftest import REPO, write_config

PROBES = os.path.join(REPO, "tests", "pipelines", "probes.py")


@pytest.fixture
def toy() -> Iterator[None]:
    targets.register("toy", "tests.toy_target:TARGET")  # the one registry line
    yield
    targets.unregister("toy")


def kubesage(*args: str) -> tuple[int, str, str]:
    """The CLI in this process (where the toy target is registered): code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = cli.main(list(args))
    return code, out.getvalue(), err.getvalue()


def test_a_registered_target_drives_compile_validate_and_run(toy, tmp_path, fsx_root) -> None:
    config = write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"))
    out = str(tmp_path / "fan-out.toy")
    code, _, err = kubesage("compile", f"{PROBES}:fan_out", "--target", "toy", "-o", out)
    assert code == 0, err
    with open(out) as f:  # the shared plan: one step per loop item, after its producers
        steps = {s["name"]: s["after"] for s in json.load(f)["steps"]}
    assert steps["per-client[2]"] == ["probe"] and "gated" in steps
    code, text, err = kubesage("validate", out)  # found by its suffix
    assert code == 0 and "toy pipeline 'fan-out' is valid (6 steps)" in text, err

    code, text, err = kubesage("run", f"{PROBES}:fan_out", "--target", "toy", "--config", config,
                               "--tag", "team=toys", "--param", 'clients=["x","y"]', "--json")
    assert code == 0, err
    record = json.loads(text)
    assert (record["target"], record["status"], record["tags"]) == ("toy", "succeeded", {"team": "toys"})
    states = {s["name"]: (s["status"], s["returns"].get("output")) for s in record["steps"]}
    assert states == {"probe": ("succeeded", "start"), "per-client[0]": ("succeeded", "x"),
                      "per-client[1]": ("succeeded", "y"), "score": ("succeeded", "0.3"),
                      "gated": ("skipped", None)}
    # the same lineage as on every target, in the same store
    pipeline = load_pipeline(f"{PROBES}:fan_out")[0].build()
    assert record["pipeline_hash"] == pipeline.digest() and len(record["source_sha256"]) == 64
    assert record["git"]["commit"] and record["owner"]["pid"] == os.getpid()
    code, text, _ = kubesage("runs", "--config", config, "list", "--json")
    assert record["run_id"] in [r["run_id"] for r in json.loads(text)]


def test_a_target_refuses_options_it_cannot_honour(toy, tmp_path, fsx_root) -> None:
    config = write_config(str(tmp_path / "local.yaml"), fsx_root, str(tmp_path / "store"))
    for flags, named in ((["--no-cache"], "--no-cache"), (["--runner", "subprocess"], "subprocess")):
        code, _, err = kubesage("run", f"{PROBES}:fan_out", "--target", "toy", "--config", config,
                                *flags)
        assert code == cli.EXIT_REFUSED and "target 'toy'" in err and named in err, err
    assert not os.path.exists(tmp_path / "store" / "runs.db")  # refused before anything ran


@pytest.mark.parametrize("target, flags, named", [
    ("kfp", ["--runner", "subprocess"], "target 'kfp' runs steps with docker, not 'subprocess'"),
    ("sagemaker", ["--runner", "subprocess"], "target 'sagemaker' runs steps with docker"),
    ("local", ["--runner", "podman"], "target 'local' runs steps with docker or subprocess"),
])
def test_built_in_targets_refuse_by_name(target: str, flags: list[str], named: str) -> None:
    code, _, err = kubesage("run", f"{PROBES}:fan_out", "--target", target, *flags)
    assert code == cli.EXIT_REFUSED and named in err, err


def test_each_target_declares_what_it_honours() -> None:
    options = targets.RunOptions(tags={"a": "b"}, use_cache=False, images={"x": "sha256:1"},
                                 rerun_of="r")
    assert set(options.given()) == {"tags", "use_cache", "images", "rerun_of"}
    pipeline = load_pipeline(f"{PROBES}:chain")[0].build()
    for name in ("local", "kfp", "sagemaker"):
        targets.get(name).check(pipeline, options)  # every built-in target honours all four
    with pytest.raises(targets.UnknownTarget, match="unknown target 'nope'; use one of: local, kfp"):
        targets.get("nope")


def test_every_target_names_runtime_contracts_that_exist(toy) -> None:
    from kubesage.runtime.__main__ import module_of

    for name in targets.names():
        contracts = targets.get(name).contracts
        assert contracts and all(module_of(c) for c in contracts), (name, contracts)
    assert module_of("no_such_contract") is None


def test_local_target_compiles_nothing_and_says_where_to_go(tmp_path) -> None:
    code, _, err = kubesage("compile", f"{PROBES}:chain", "--target", "local", "-o",
                            str(tmp_path / "x"))
    assert code == cli.EXIT_REFUSED
    assert "target 'local' has nothing to compile; use --target kfp or --target sagemaker" in err

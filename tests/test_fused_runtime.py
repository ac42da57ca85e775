"""A fused job's members run in order, in one process, under each target's contract: SageMaker
processing (``--member`` sections), SageMaker training (members in the hyperparameters, finished
ones kept with the checkpoints), Kubeflow (``kfp --group``). Run in place, no Docker."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from kubesage.runtime import kfp as kfp_contract
from kubesage.runtime import sagemaker_processing, sagemaker_training
from kubesage.runtime.members import DONE_DIR, MEMBERS_KEY, MEMBERS_OUTPUT


@pytest.fixture
def opt_ml(tmp_path, monkeypatch) -> str:
    root = str(tmp_path / "opt-ml")
    monkeypatch.setenv("KUBESAGE_SAGEMAKER_ROOT", root)
    monkeypatch.delenv("KUBESAGE_CHECKPOINT_DIR", raising=False)
    monkeypatch.delenv("KUBESAGE_STEP", raising=False)
    return root


def read(path: str) -> Any:
    with open(path) as f:
        return json.load(f) if path.endswith(".json") else f.read()


def test_processing_members_pass_values_and_artifacts_on_local_disk(opt_ml, capsys) -> None:
    sagemaker_processing.main(
        "--member", "first", "--entry", "kubesage.testing.probes:diag_add",
        "--param", "value", "40",
        "--member", "second", "--entry", "kubesage.testing.probes:diag_add",
        "--param-from", "value", "first:output", "--param", "amount", "2",
        "--member", "count", "--entry", "kubesage.testing.probes:diag_count_lines",
        "--local", "data=second:total")
    members = os.path.join(opt_ml, "processing", "output", MEMBERS_OUTPUT)
    first = read(os.path.join(members, "first", "kubesage-result", "result.json"))
    second = read(os.path.join(members, "second", "kubesage-result", "result.json"))
    assert (first["returns"], second["returns"]) == ({"output": 41}, {"output": 43})
    assert first["started"] <= first["ended"] <= second["started"]
    assert read(os.path.join(members, "second", "total", "value.txt")) == "int 41 + 2 = 43\n"
    counts = read(os.path.join(members, "count", "summary", "counts.json"))
    assert counts["counts"] == {"value.txt": 1}  # it read second's output where second wrote it
    out = capsys.readouterr().out
    assert "kubesage-return first.output=41" in out and "kubesage-return second.output=43" in out
    assert "KUBESAGE_STEP" not in os.environ  # each member's environment is put back


def test_a_failing_member_ends_the_job_and_the_finished_ones_keep_their_results(opt_ml) -> None:
    with pytest.raises(RuntimeError, match="diag-fail: failing here"):
        sagemaker_processing.main(
            "--member", "first", "--entry", "kubesage.testing.probes:diag_note",
            "--member", "bad", "--entry", "kubesage.testing.probes:diag_fail",
            "--param", "reason", "here",
            "--member", "after", "--entry", "kubesage.testing.probes:diag_note")
    members = os.path.join(opt_ml, "processing", "output", MEMBERS_OUTPUT)
    assert sorted(os.listdir(members)) == ["first"]
    assert read(os.path.join(members, "first", "note", "message.txt")) == "ok\n"


def write_training(opt_ml: str, members: dict[str, dict[str, Any]],
                   params: dict[str, str]) -> None:
    config = os.path.join(opt_ml, "input", "config")
    os.makedirs(config, exist_ok=True)
    hyper = {MEMBERS_KEY: json.dumps(list(members)), **params}
    hyper.update({f"kubesage.member.{m}": json.dumps({"entry": "kubesage.testing.probes:diag_add",
                                                       **layout})
                  for m, layout in members.items()})
    with open(os.path.join(config, "hyperparameters.json"), "w") as f:
        json.dump(hyper, f)
    with open(os.path.join(config, "resourceconfig.json"), "w") as f:
        json.dump({"current_host": "algo-1", "hosts": ["algo-1"]}, f)


def test_training_members_resume_at_the_first_unfinished_one(opt_ml, monkeypatch,
                                                            capsys) -> None:
    os.makedirs(os.path.join(opt_ml, "checkpoints"))
    members = {"lead": {}, "anchor": {"anchor": True, "param_from": {"value": ["lead", "output"]}},
               "follow": {"param_from": {"value": ["anchor", "output"]}}}
    write_training(opt_ml, members, {"lead.value": "1", "follow.amount": "10"})
    sagemaker_training.main()
    data = os.path.join(opt_ml, "output", "data")
    assert read(os.path.join(data, "kubesage-result.json"))["returns"] == {"output": 3}  # anchor
    assert read(os.path.join(data, ".kubesage-results", "follow.json"))["returns"] == {
        "output": 13}
    assert read(os.path.join(opt_ml, "model", "total", "value.txt")) == "int 2 + 1 = 3\n"
    assert read(os.path.join(data, "lead", "total", "value.txt")) == "int 1 + 1 = 2\n"
    assert os.path.exists(os.path.join(opt_ml, "model", ".kubesage", "total.json"))
    assert os.path.exists(os.path.join(data, ".kubesage", "follow", "total.json"))
    kept = os.path.join(opt_ml, "checkpoints", DONE_DIR)
    assert sorted(os.listdir(kept)) == ["anchor", "follow", "lead"]
    # a restarted job (a new instance: empty model and output folders) skips the finished ones
    os.remove(os.path.join(kept, "follow", "complete"))
    for folder in ("model", "output"):
        os.rename(os.path.join(opt_ml, folder), os.path.join(opt_ml, folder + ".old"))
    calls: list[str] = []
    real = sagemaker_training.run_members

    def counted(runs: Any, *args: Any) -> Any:
        calls.extend(r.name for r in runs)
        return real(runs, *args)

    monkeypatch.setattr(sagemaker_training, "run_members", counted)
    capsys.readouterr()
    sagemaker_training.main()
    assert calls == ["follow"]
    # a kept member's returned values are this job's metrics too (a condition may read them)
    assert "kubesage-return anchor.output=3" in capsys.readouterr().out
    assert read(os.path.join(data, ".kubesage-results", "follow.json"))["returns"] == {
        "output": 13}
    assert read(os.path.join(opt_ml, "model", "total", "value.txt")) == "int 2 + 1 = 3\n"


def test_kubeflow_group_writes_one_executor_output_for_every_member(tmp_path) -> None:
    def artifact(name: str) -> dict[str, Any]:
        return {"artifacts": [{"name": name, "uri": str(tmp_path / name), "metadata": {}}]}

    executor_input = {
        "inputs": {"parameterValues": {"first__value": 40}},
        "outputs": {"artifacts": {"first__total": artifact("first__total"),
                                  "second__total": artifact("second__total")},
                    "parameters": {"Output": {"outputFile": str(tmp_path / "out" / "Output")}},
                    "outputFile": str(tmp_path / "out" / "executor_output.json")}}
    layout = [
        {"name": "first", "entry": "kubesage.testing.probes:diag_add",
         "params": {"value": "first__value"}, "param_from": {}, "inputs": {}, "local": {},
         "outputs": {"total": "first__total"}, "returns": {"output": "first__output"}},
        {"name": "second", "entry": "kubesage.testing.probes:diag_add", "params": {},
         "param_from": {"value": ["first", "output"]}, "inputs": {}, "local": {},
         "outputs": {"total": "second__total"}, "returns": {"output": "Output"}}]
    doc = kfp_contract.run_group(layout, executor_input)
    assert doc["parameterValues"] == {"first__output": 41, "Output": 42}
    assert sorted(doc["artifacts"]) == ["first__total", "second__total"]
    assert read(str(tmp_path / "out" / "Output")) == "42"
    members = read(str(tmp_path / "out" / kfp_contract.MEMBERS_FILE))
    assert list(members) == ["first", "second"]
    assert members["second"]["outputs"] == {"total": str(tmp_path / "second__total")}
    assert read(str(tmp_path / "second__total" / "value.txt")) == "int 41 + 1 = 42\n"


def test_a_members_record_shows_the_parameters_an_unfused_step_would_have_received() -> None:
    from kubesage.targets.sagemaker.local_members import member_parameters, members_of

    args = {"AppSpecification": {"ContainerArguments": [
        "--member", "first", "--entry", "e", "--param", "value", "40",
        "--member", "second", "--entry", "e", "--param-from", "value", "first:output",
        "--param", "amount", "2"]}}
    assert members_of({"Type": "Processing", "Arguments": args}) == ["first", "second"]
    returned = {("first", "output"): 41}
    assert member_parameters("Processing", args, "second",
                             lambda m, r: returned.get((m, r))) == {"amount": "2", "value": "41"}
    hyper = {MEMBERS_KEY: '["lead", "anchor"]', "lead.value": "1",
             "kubesage.member.anchor": json.dumps({"param_from": {"value": ["lead", "output"]}})}
    assert member_parameters("Training", {"HyperParameters": hyper}, "anchor",
                             lambda m, r: 2 if (m, r) == ("lead", "output") else None) == {
        "value": "2"}

"""The SageMaker container contracts, run in place (``KUBESAGE_SAGEMAKER_ROOT`` for /opt/ml)."""

from __future__ import annotations

import json
import os
import tarfile

import pytest

from kubesage.runtime import sagemaker_processing, sagemaker_training
from kubesage.targets.sagemaker.local_jobs import pack


@pytest.fixture
def opt_ml(tmp_path, monkeypatch) -> str:
    root = str(tmp_path / "opt-ml")
    monkeypatch.setenv("KUBESAGE_SAGEMAKER_ROOT", root)
    monkeypatch.delenv("KUBESAGE_CHECKPOINT_DIR", raising=False)
    return root


def test_processing_contract(opt_ml) -> None:
    fsx = os.path.join(opt_ml, "processing", "mounts", "fsx", "greetings")
    os.makedirs(fsx)
    sagemaker_processing.main("--entry", "components.probe:probe",
                              "--mount", f"/fsx={os.path.dirname(fsx)}",
                              "--param", "message", "/fsx/greetings", "--param", "seconds", "0")
    out = os.path.join(opt_ml, "processing", "output")
    with open(os.path.join(out, "result", "message.txt")) as f:
        assert f.read() == fsx  # the /fsx path was rewritten to where SageMaker put the data
    with open(os.path.join(out, "kubesage-result", "result.json")) as f:
        result = json.load(f)
    assert result["returns"] == {"output": fsx}
    assert os.listdir(os.path.join(out, "result")) == ["message.txt"]  # what the component wrote


def test_processing_input_metadata_comes_from_the_producers_result(opt_ml) -> None:
    """An artifact holds exactly what its component wrote; its metadata travels in the
    producing step's result file, delivered as the input ``<name>-metadata``."""
    base = os.path.join(opt_ml, "processing", "input")
    os.makedirs(os.path.join(base, "data"))
    with open(os.path.join(base, "data", "message.txt"), "w") as f:
        f.write("shards")
    os.makedirs(os.path.join(base, "data-metadata"))
    with open(os.path.join(base, "data-metadata", "result.json"), "w") as f:
        json.dump({"artifacts": {"prepared": {"classes": 10}}}, f)
    path, metadata = sagemaker_processing.open_input(
        os.path.join(base, "data"), "", os.path.join(opt_ml, "scratch"),
        (os.path.join(base, "data-metadata", "result.json"), "prepared"))
    assert path == os.path.join(base, "data") and metadata == {"classes": 10}


def test_processing_rejects_unknown_parameter(opt_ml) -> None:
    with pytest.raises(SystemExit, match="has no parameter 'mesage'"):
        sagemaker_processing.main("--entry", "components.probe:probe",
                                  "--param", "mesage", "x")


def test_training_contract_reads_config_and_channels(opt_ml, tmp_path) -> None:
    config = os.path.join(opt_ml, "input", "config")
    os.makedirs(config)
    with open(os.path.join(config, "hyperparameters.json"), "w") as f:
        json.dump({"message": "trained", "seconds": "0"}, f)
    with open(os.path.join(config, "resourceconfig.json"), "w") as f:
        json.dump({"current_host": "algo-1", "hosts": ["algo-1"]}, f)
    os.makedirs(os.path.join(opt_ml, "checkpoints"))
    os.environ.update(KUBESAGE_ENTRY="components.probe:probe", KUBESAGE_INPUTS="{}",
                      KUBESAGE_MOUNTS="{}")
    try:
        sagemaker_training.main()
    finally:
        for key in ("KUBESAGE_ENTRY", "KUBESAGE_INPUTS", "KUBESAGE_MOUNTS"):
            os.environ.pop(key)
    with open(os.path.join(opt_ml, "model", "result", "message.txt")) as f:
        assert f.read() == "trained"
    assert os.listdir(os.path.join(opt_ml, "model", "result")) == ["message.txt"]
    with open(os.path.join(opt_ml, "model", ".kubesage", "result.json")) as f:
        assert json.load(f) == {}  # the artifact's metadata, beside it in model.tar.gz
    with open(os.path.join(opt_ml, "output", "data", "kubesage-result.json")) as f:
        assert json.load(f)["returns"] == {"output": "trained"}
    assert os.environ.pop("KUBESAGE_CHECKPOINT_DIR") == os.path.join(opt_ml, "checkpoints")
    layout = sagemaker_training.layout()
    assert (layout.nnodes, layout.node_rank, layout.master_addr) == (1, 0, "algo-1")


def test_training_layout_from_resourceconfig(opt_ml) -> None:
    config = os.path.join(opt_ml, "input", "config")
    os.makedirs(config)
    with open(os.path.join(config, "resourceconfig.json"), "w") as f:
        json.dump({"current_host": "algo-2", "hosts": ["algo-2", "algo-1", "algo-3"]}, f)
    layout = sagemaker_training.layout()
    assert (layout.nnodes, layout.node_rank, layout.master_addr, layout.world_size) == (
        3, 1, "algo-1", 3)


def test_training_failure_is_written_for_sagemaker(opt_ml) -> None:
    os.makedirs(os.path.join(opt_ml, "input", "config"))
    with open(os.path.join(opt_ml, "input", "config", "hyperparameters.json"), "w") as f:
        json.dump({"exit_code": "3"}, f)
    os.environ.update(KUBESAGE_ENTRY="components.probe:probe")
    try:
        with pytest.raises(SystemExit):
            sagemaker_training.main()
    finally:
        os.environ.pop("KUBESAGE_ENTRY")
    with open(os.path.join(opt_ml, "output", "failure")) as f:
        assert "exit code 3" in f.read()


def test_model_archive_input_is_unpacked(opt_ml, tmp_path) -> None:
    model = tmp_path / "model"
    (model / "result").mkdir(parents=True)
    (model / "result" / "message.txt").write_text("from training")
    (model / ".kubesage").mkdir()
    (model / ".kubesage" / "result.json").write_text('{"arch": "smallcnn"}')
    inputs = os.path.join(opt_ml, "processing", "input", "model")
    os.makedirs(inputs)
    pack(str(model), os.path.join(inputs, "model.tar.gz"))
    first = open(os.path.join(inputs, "model.tar.gz"), "rb").read()
    pack(str(model), os.path.join(inputs, "again.tar"))
    assert open(os.path.join(inputs, "again.tar"), "rb").read() == first  # reproducible archive
    os.remove(os.path.join(inputs, "again.tar"))
    path, metadata = sagemaker_processing.open_input(inputs, "result", str(tmp_path / "scratch"))
    assert open(os.path.join(path, "message.txt")).read() == "from training"
    assert metadata == {"arch": "smallcnn"} and os.listdir(path) == ["message.txt"]
    with tarfile.open(os.path.join(inputs, "model.tar.gz")) as tar:
        assert all(m.mtime == 0 for m in tar.getmembers())

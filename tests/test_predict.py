"""predict and postprocess: the prediction file's form, top-k, layouts, thresholds and rules."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any

import numpy as np
import pytest

from components.postprocess import postprocess
from components.predict import PREDICTIONS_FILE, SUMMARY_FILE, predict, predict_images
from components.preprocess import preprocess
from components.train import train
from kubesage import Dataset, Metrics, Model
from tests.conftest import run_json, write_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, fsx_root: str) -> dict[str, str]:
    """Shards of the digits and a model trained on them for one epoch (in this process)."""
    root = tmp_path_factory.mktemp("trained")
    paths = {name: str(root / name) for name in ("shards", "model", "metrics", "ckpt")}
    for path in paths.values():
        os.makedirs(path)
    preprocess(os.path.join(fsx_root, "digits"), Dataset(paths["shards"]), image_size=8, seed=0)
    saved = os.environ.get("KUBESAGE_CHECKPOINT_DIR")
    os.environ["KUBESAGE_CHECKPOINT_DIR"] = paths["ckpt"]  # never resume another test's model
    try:
        train(Dataset(paths["shards"]), Model(paths["model"]), Metrics(paths["metrics"]), epochs=1)
    finally:
        os.environ.pop("KUBESAGE_CHECKPOINT_DIR")
        if saved is not None:
            os.environ["KUBESAGE_CHECKPOINT_DIR"] = saved
    return paths


def _lines(folder: str) -> list[dict[str, Any]]:
    with open(os.path.join(folder, PREDICTIONS_FILE)) as f:
        return [json.loads(line) for line in f]


def _outputs(tmp_path: Any, name: str) -> tuple[Dataset, Metrics]:
    (tmp_path / name).mkdir()
    (tmp_path / f"{name}-metrics").mkdir()
    return Dataset(str(tmp_path / name)), Metrics(str(tmp_path / f"{name}-metrics"))


def test_predict_writes_sorted_lines_with_the_models_top_k(trained: dict[str, str],
                                                          tmp_path) -> None:
    import torch

    from components.models import load_classifier
    from components.shards import load_split

    out, metrics = _outputs(tmp_path, "p")
    count = predict(Model(trained["model"]), Dataset(trained["shards"]), out, metrics, top_k=3,
                    batch_size=50)
    images, labels, manifest = load_split(trained["shards"], "val")
    assert count == len(labels) == manifest["splits"]["val"]["count"]
    lines = _lines(out.path)
    assert [r["file"] for r in lines] == sorted(r["file"] for r in lines)
    assert lines[0]["file"] == "val/000000" and len(lines) == count
    assert all(list(r) == ["file", "class", "score", "top_k", "label"] for r in lines)
    classes = manifest["classes"]
    assert [r["label"] for r in lines] == [classes[int(y)] for y in labels]
    # the model's own probabilities, computed here in one batch
    classifier = load_classifier(os.path.join(trained["model"], "model.pt"))
    torch.set_num_threads(1)
    with torch.no_grad():
        probs = torch.softmax(classifier.net(classifier.normalize(
            torch.from_numpy(np.array(images)))), 1).double().numpy()
    for r, p in zip(lines, probs, strict=True):
        assert len(r["top_k"]) == 3 and r["top_k"][0] == [r["class"], r["score"]]
        scores = [s for _, s in r["top_k"]]
        assert scores == sorted(scores, reverse=True)
        assert [classes.index(c) for c, _ in r["top_k"]] == list(np.argsort(-p, kind="stable")[:3])
        assert all(abs(s - p[classes.index(c)]) <= 1.5e-6 and s == round(s, 6)
                   for c, s in r["top_k"])
    with open(out.file(SUMMARY_FILE)) as f:
        summary = json.load(f)
    assert summary["count"] == count == summary["labelled"]
    assert summary["per_class"] == {c: sum(r["class"] == c for r in lines) for c in classes}
    assert summary["mean_score"] == round(sum(r["score"] for r in lines) / count, 6)
    assert summary["images_per_s"] > 0 and summary["skipped"] == []
    assert metrics.metadata["count"] == count


def test_predict_images_labels_subfolders_skips_bad_images_and_names_bad_input(
    trained: dict[str, str], tmp_path, fsx_root: str
) -> None:
    folder = tmp_path / "incoming"
    shutil.copytree(os.path.join(fsx_root, "digits", "3"), folder / "3")
    first = sorted(os.listdir(folder / "3"))[0]
    shutil.copy(folder / "3" / first, folder / "loose.png")  # flat: no label
    (folder / "3" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(32))
    out, metrics = _outputs(tmp_path, "p")
    count = predict_images(Model(trained["model"]), str(folder), out, metrics, top_k=20)
    lines = _lines(out.path)
    assert count == len(lines) == len(os.listdir(folder / "3"))  # all but broken.png, plus loose
    assert lines[0]["file"] == f"3/{first}" and lines[-1]["file"] == "loose.png"
    assert "label" not in lines[-1] and all(r["label"] == "3" for r in lines[:-1])
    assert lines[-1]["top_k"] == lines[0]["top_k"]  # the same image, the same prediction
    assert all(len(r["top_k"]) == 10 for r in lines)  # top_k is capped at the model's classes
    with open(out.file(SUMMARY_FILE)) as f:
        summary = json.load(f)
    assert [s["file"] for s in summary["skipped"]] == ["3/broken.png"]
    assert summary["labelled"] == count - 1
    assert summary["source"] == {"kind": "folder", "path": str(folder)}

    (tmp_path / "empty" / "cats").mkdir(parents=True)
    (tmp_path / "empty" / "cats" / "notes.txt").write_text("no images")
    again, metrics = _outputs(tmp_path, "q")
    with pytest.raises(ValueError, match=r"empty has no images \(files ending in .png.*\); put "):
        predict_images(Model(trained["model"]), str(tmp_path / "empty"), again, metrics)
    with pytest.raises(ValueError, match="is not a folder; pass images_dir="):
        predict_images(Model(trained["model"]), str(tmp_path / "nowhere"), again, metrics)
    with pytest.raises(ValueError, match="the dataset has no split 'test'; use one of: train, val"):
        predict(Model(trained["model"]), Dataset(trained["shards"]), again, metrics, split="test")
    assert os.listdir(again.path) == []  # a failed prediction leaves no partial artifact


def test_one_and_two_processes_write_identical_predictions(tmp_path, fsx_root: str) -> None:
    """Through the subprocess runner: predict and predict_images on 1 and on 2 processes."""
    config = write_config(str(tmp_path / "c.yaml"), fsx_root, str(tmp_path / "store"),
                          mlflow_autolog=False)
    record = run_json("run", "tests/pipelines/predict.py", "--runner", "subprocess",
                      "--config", config)
    assert record["status"] == "succeeded", record["_stderr"]
    assert "predict: 359 images" in record["_stderr"]
    assert "img/s, 2 process(es))" in record["_stderr"]
    found: dict[tuple[str, int], str] = {}
    for step in record["steps"]:
        if step["task"].startswith("predict"):
            folder = step["outputs"]["predictions"]["path"]
            with open(os.path.join(folder, SUMMARY_FILE)) as f:
                world_size = json.load(f)["world_size"]
            with open(os.path.join(folder, PREDICTIONS_FILE), "rb") as f:
                found[(step["task"].rstrip("-0123456789"), world_size)] = \
                    hashlib.sha256(f.read()).hexdigest()
    assert sorted(found) == [("predict", 1), ("predict", 2), ("predict-images", 1),
                             ("predict-images", 2)]
    assert found[("predict", 1)] == found[("predict", 2)]
    assert found[("predict-images", 1)] == found[("predict-images", 2)]


def _crafted(tmp_path: Any) -> Dataset:
    """Five predictions over classes cat, dog, fox; four labelled."""
    rows = [
        {"file": "a.png", "class": "cat", "score": 0.9, "label": "cat"},
        {"file": "b.png", "class": "cat", "score": 0.4, "label": "cat"},
        {"file": "c.png", "class": "dog", "score": 0.7, "label": "fox"},
        {"file": "d.png", "class": "fox", "score": 0.65, "label": "fox"},
        {"file": "e.png", "class": "dog", "score": 0.99},
    ]
    folder = tmp_path / "predictions"
    folder.mkdir()
    (folder / PREDICTIONS_FILE).write_text("".join(
        json.dumps({**r, "top_k": [[r["class"], r["score"]]]}) + "\n" for r in rows))
    (folder / SUMMARY_FILE).write_text(json.dumps({"classes": ["cat", "dog", "fox"]}))
    return Dataset(str(folder))


def test_postprocess_applies_threshold_and_rules_and_reports_a_confusion_matrix(
    tmp_path,
) -> None:
    report, metrics = _outputs(tmp_path, "report")
    known = postprocess(_crafted(tmp_path), report, metrics, threshold=0.5,
                        rules={"fox": {"min_score": 0.66}, "dog": {"rename": "canine"}})
    with open(report.file("final.jsonl")) as f:
        final = {r["file"]: r["class"] for r in map(json.loads, f)}
    assert final == {"a.png": "cat", "b.png": "unknown", "c.png": "canine", "d.png": "unknown",
                     "e.png": "canine"}
    assert known == 3
    with open(report.file("report.json")) as f:
        doc = json.load(f)
    assert doc["per_class"] == {"cat": 1, "canine": 2, "fox": 0, "unknown": 2}
    assert doc["labelled"] == 4 and doc["accuracy"] == 0.25 and doc["accuracy_raw"] == 0.75
    assert doc["accuracy_known"] == 0.5 and doc["coverage"] == 0.6
    assert doc["confusion"] == {"rows": ["cat", "canine", "fox"],
                                "columns": ["cat", "canine", "fox", "unknown"],
                                "matrix": [[1, 0, 0, 1], [0, 0, 0, 0], [0, 1, 0, 1]]}
    assert metrics.metadata == {"count": 5.0, "coverage": 0.6, "accuracy": 0.25,
                                "accuracy_raw": 0.75, "accuracy_known": 0.5}
    markdown = open(report.file("report.md")).read()
    assert "| unknown | 2 |" in markdown and "| fox | 0 | 1 | 0 | 1 |" in markdown
    assert "Accuracy 0.2500 on 4 labelled images (0.7500 before the rules" in markdown


@pytest.mark.parametrize(("threshold", "rules", "error"), [
    (1.5, {}, "threshold 1.5 is not a probability; pass 0 <= threshold <= 1"),
    (0.5, {"wolf": {"min_score": 0.5}},
     "rules name class 'wolf', which the model does not know; use one of: cat, dog, fox"),
    (0.5, {"cat": {"min": 0.5}}, "rule for class 'cat' is {'min': 0.5}; a rule is a dict with"),
    (0.5, {"cat": {"min_score": "high"}}, r"rules\['cat'\]\['min_score'\] is 'high'; pass a"),
    (0.5, {"cat": {"rename": "unknown"}}, "pass a non-empty class name other than 'unknown'"),
])
def test_postprocess_names_a_bad_rule(tmp_path, threshold: float, rules: dict[str, Any],
                                      error: str) -> None:
    report, metrics = _outputs(tmp_path, "report")
    with pytest.raises(ValueError, match=error):
        postprocess(_crafted(tmp_path), report, metrics, threshold=threshold, rules=rules)
    assert os.listdir(report.path) == []

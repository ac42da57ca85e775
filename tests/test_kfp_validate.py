"""``kubesage validate FILE.yaml``: strict proto parsing and reference checks, one broken file each."""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from kubesage.project.loader import load_pipeline
from kubesage.targets import kfp as kfp_target
from kubesage.targets.kfp.validate import KfpValidationError, validate_file
from tests.conftest import REPO, run_cli, unfused_kfp_config

Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Docs:
    """The two documents of the compiled reference pipeline."""
    folder = tmp_path_factory.mktemp("kfp")
    out = str(folder / "ic.yaml")
    pipeline = load_pipeline(os.path.join(REPO, "pipelines/image_classification.py"))[0].build()
    kfp_target.TARGET.compile(pipeline, out, unfused_kfp_config(str(folder)))
    with open(out) as f:
        return list(yaml.safe_load_all(f))


def broken(tmp_path: Any, reference: Docs, change: Callable[[Docs], None]) -> str:
    docs = copy.deepcopy(reference)
    change(docs)
    path = str(tmp_path / "broken.yaml")
    with open(path, "w") as f:
        yaml.safe_dump_all(docs, f)
    return path


def _root(docs: Docs) -> dict[str, Any]:
    tasks: dict[str, Any] = docs[0]["root"]["dag"]["tasks"]
    return tasks


def _k8s(docs: Docs) -> dict[str, Any]:
    executors: dict[str, Any] = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    return executors


CASES: list[tuple[str, Callable[[Docs], None], str]] = [
    ("misspelt task field",
     lambda d: _root(d)["train"].__setitem__("componentRf", _root(d)["train"].pop("componentRef")),
     r'document 1 \(the pipeline\) is not a valid PipelineSpec: .*has no field named "componentRf"'),
    ("wrong value type",
     lambda d: _root(d)["train"].__setitem__("dependentTasks", "preprocess"),
     "document 1 \\(the pipeline\\) is not a valid PipelineSpec: .*dependentTasks"),
    ("misspelt container field",
     lambda d: d[0]["deploymentSpec"]["executors"]["exec-train"]["container"].__setitem__(
         "imgae", "x"),
     'deploymentSpec is not a valid PipelineDeploymentConfig: .*has no field named "imgae"'),
    ("dangling component",
     lambda d: _root(d)["train"]["componentRef"].__setitem__("name", "comp-trian"),
     "task 'train' of root runs component 'comp-trian', which is not defined under components"),
    ("dangling executor",
     lambda d: d[0]["components"]["comp-train"].__setitem__("executorLabel", "exec-nope"),
     "component 'comp-train' runs executor 'exec-nope', which deploymentSpec.executors does not "
     "define"),
    ("dangling dependency",
     lambda d: _root(d)["evaluate"].__setitem__("dependentTasks", ["preprocess", "trian"]),
     "task 'evaluate' of root depends on task 'trian', which root does not have"),
    ("dangling producer",
     lambda d: _root(d)["evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
     .__setitem__("producerTask", "trian"),
     "task 'evaluate' of root takes 'model' from task 'trian', which root does not have"),
    ("undeclared output",
     lambda d: _root(d)["evaluate"]["inputs"]["artifacts"]["model"]["taskOutputArtifact"]
     .__setitem__("outputArtifactKey", "weights"),
     "task 'evaluate' of root takes output 'weights' of task 'train', whose component does not "
     "declare it"),
    ("undeclared pipeline input",
     lambda d: _root(d)["train"]["inputs"]["parameters"]["epochs"].__setitem__(
         "componentInputParameter", "epoch"),
     "task 'train' of root reads input parameter 'epoch', which root does not declare"),
    ("undeclared component input",
     lambda d: _root(d)["train"]["inputs"]["parameters"].__setitem__(
         "epoch", {"componentInputParameter": "epochs"}),
     "task 'train' of root passes parameter 'epoch', which component 'comp-train' does not declare"),
    ("misspelt Kubernetes field",
     lambda d: _k8s(d)["exec-train"]["emptyDirMounts"][0].__setitem__(
         "sizeLimt", _k8s(d)["exec-train"]["emptyDirMounts"][0].pop("sizeLimit")),
     "the Kubernetes config of executor 'exec-train' is not a valid KubernetesExecutorConfig: "
     '.*has no field named "sizeLimt"'),
    ("Kubernetes config of an unknown executor",
     lambda d: _k8s(d).__setitem__("exec-trian", _k8s(d).pop("exec-train")),
     "the Kubernetes config names executor 'exec-trian', which deploymentSpec.executors does not "
     "define"),
    ("unknown platform",
     lambda d: d[1]["platforms"].__setitem__("kubernetis", d[1]["platforms"].pop("kubernetes")),
     "platform 'kubernetis' is unknown; only 'kubernetes' is defined"),
    ("pod label key over 63 characters",
     lambda d: _k8s(d)["exec-train"].__setitem__("podMetadata", {"labels": {"a" * 64: "x"}}),
     f"executor 'exec-train': podMetadata label key '{'a' * 64}': its name '{'a' * 64}' has 64 "
     "characters; at most 63, which the Kubernetes API refuses"),
    ("pod label prefix over 253 characters",
     lambda d: _k8s(d)["exec-train"].__setitem__("podMetadata", {"labels": {
         "a." * 127 + "io/team": "ml"}}),
     "podMetadata label key '.*/team': its prefix '.*' must be a DNS subdomain of at most 253"),
    ("pod label value starting with '-'",
     lambda d: _k8s(d)["exec-train"].__setitem__("podMetadata", {"labels": {"team": "-ml"}}),
     "podMetadata label 'team': value '-ml' must be empty or letters, digits"),
    ("pod annotations over 256 KiB",
     lambda d: _k8s(d)["exec-train"].__setitem__("podMetadata", {"annotations": {
         "example.com/notes": "x" * (256 * 1024)}}),
     "podMetadata annotations total 262161 bytes; an object's annotations .* take at most "
     "262144 \\(256 KiB\\)"),
    ("node selector value too long",
     lambda d: _k8s(d)["exec-train"]["nodeSelector"]["labels"].__setitem__("pool", "p" * 64),
     "nodeSelector label 'pool': value 'p{64}' has 64 characters; a label value has at most 63"),
    ("toleration key with a space",
     lambda d: _k8s(d)["exec-train"]["tolerations"][0].__setitem__("key", "spot instance"),
     "tolerations\\[0\\] \\(key 'spot instance'\\): its name 'spot instance' must be"),
    ("claim name with capitals",
     lambda d: _k8s(d)["exec-train"]["pvcMount"][0].__setitem__("constant", "Checkpoints"),
     "pvcMount\\[0\\]: claim 'Checkpoints' must be at most 253 lowercase letters"),
    ("three documents", lambda d: d.append({"extra": 1}),
     "3 YAML documents; a compiled pipeline has a PipelineSpec and at most one PlatformSpec"),
]


@pytest.mark.docker
@pytest.mark.parametrize("change,message", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_broken_file_is_named(tmp_path, reference: Docs, change: Callable[[Docs], None],
                              message: str) -> None:
    path = broken(tmp_path, reference, change)
    with pytest.raises(KfpValidationError, match=message) as info:
        validate_file(path)
    assert str(info.value).startswith(path + ": ")
    assert "recompile it with 'kubesage compile PIPELINE --target kfp -o FILE'" in str(info.value)


def test_not_yaml_empty_and_missing_files(tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("pipelineInfo: {name: x\n")
    with pytest.raises(KfpValidationError, match="bad.yaml: not valid YAML"):
        validate_file(str(bad))
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(KfpValidationError, match="empty.yaml: the file is empty"):
        validate_file(str(empty))
    with pytest.raises(KfpValidationError, match="nope.yaml does not exist; compile one with"):
        validate_file(str(tmp_path / "nope.yaml"))


@pytest.mark.docker
def test_cli_exit_codes(tmp_path, reference: Docs) -> None:
    good = broken(tmp_path, reference, lambda d: None)
    proc = run_cli("validate", good)
    assert proc.returncode == 0 and "is valid (7 tasks, 7 components, 6 executors, Kubernetes " \
        "config for 6 executors)" in proc.stdout
    bad = broken(tmp_path, reference, CASES[3][1])
    proc = run_cli("validate", bad)
    assert proc.returncode == 2
    assert "error: " in proc.stderr and "runs component 'comp-trian'" in proc.stderr


@pytest.mark.docker
def test_the_reference_pipeline_passes_the_kubernetes_checks(tmp_path, reference: Docs) -> None:
    """Labels, taints and claims kubesage emits from config/kfp.yaml are all valid."""
    path = broken(tmp_path, reference, lambda d: None)
    assert "is valid" in validate_file(path)

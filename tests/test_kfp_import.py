"""Kubeflow component YAML imported into kubesage pipelines, on every target.

``tests/kfp_components`` holds the two forms teams share: ``make_text.yaml`` as the kfp compiler
writes a container component (v2), ``upper.yaml`` in the v1 ``implementation: container`` form
with an output parameter, ``IfPresent`` and ``Concat``.
"""

from __future__ import annotations

import io
import json
import os
from typing import Any

import pytest

from kubesage import DefinitionError, KubesageError, load_kfp_component, pipeline
from kubesage.config.local import LocalConfig
from kubesage.dsl.container import Placeholder, expand
from kubesage.dsl.errors import TypeMismatchError
from kubesage.dsl.interface import ComponentSpec
from kubesage.project.loader import load_pipeline
from kubesage.targets.local.runner import runner_for
from tests.conftest import REPO, run_json

COMPONENTS = os.path.join(REPO, "tests", "kfp_components")
IMPORTED = os.path.join(REPO, "tests", "pipelines", "imported.py")


def _pipeline(name: str) -> Any:
    return load_pipeline(f"{IMPORTED}:{name}")[0].build()


def test_both_yaml_forms_import_with_typed_interfaces() -> None:
    made = load_kfp_component(os.path.join(COMPONENTS, "make_text.yaml"), version="1.0.0").spec
    assert (made.name, made.version, made.image) == ("make-text", "1.0.0", "kubesage/torch:latest")
    assert [(p.name, p.type, p.required) for p in made.parameters] == [
        ("repeat", "int", True), ("text", "str", True)]
    assert [(a.name, a.type) for a in made.outputs] == [("out", "Dataset")]
    upper = load_kfp_component(os.path.join(COMPONENTS, "upper.yaml")).spec
    assert upper.description.startswith("Upper-case a text file")
    assert {p.name: p.default for p in upper.parameters} == {"shout": None, "suffix": "!"}
    assert [(a.name, a.type) for a in upper.inputs] == [("text", "Dataset")]
    assert [(r.name, r.type) for r in upper.returns] == [("head", "str"), ("size", "int")]
    assert upper.container is not None and upper.container.command[:2] == ("sh", "-ec")
    assert ComponentSpec.from_dict(upper.to_dict()) == upper  # catalogs keep it whole


def test_placeholders_expand_as_kubeflow_resolves_them() -> None:
    values = {"a": "x", "n": 3}

    def resolve(ph: Placeholder) -> str:
        return str(values[ph.name]) if ph.kind == "parameters" else f"/path/{ph.name}"

    items = ['{"IfPresent": {"InputName": "a", "Then": ["--a", "{{$.inputs.parameters[\'a\']}}"]}}',
             '{"IfPresent": {"InputName": "b", "Then": ["--b"], "Else": ["--no-b"]}}',
             '{"Concat": ["n=", "{{$.inputs.parameters[\'n\']}}", "!"]}',
             "out={{$.outputs.artifacts['m'].path}}/x"]
    assert expand(items, resolve, lambda name: name in values) == [
        "--a", "x", "--no-b", "n=3!", "out=/path/m/x"]


NESTED = """
name: nest
inputs:
- {name: a, type: String, optional: true}
- {name: b, type: String}
implementation:
  container:
    image: busybox
    command: [echo]
    args:
    - if:
        cond: {isPresent: a}
        then: [{concat: [x=, {inputValue: a}]}]
        else: [{concat: [y, {inputValue: b}]}]
    - concat: [p, {if: {cond: {isPresent: a}, then: A, else: B}}, {inputValue: b}]
"""


@pytest.mark.parametrize("values, expected", [
    ({"b": "bee"}, ["ybee", "pBbee"]),
    ({"a": "ay", "b": "bee"}, ["x=ay", "pAbee"]),
])
def test_nested_placeholders_expand_as_kfp_writes_them(
    tmp_path, values: dict[str, str], expected: list[str]
) -> None:
    path = tmp_path / "nest.yaml"
    path.write_text(NESTED)
    container = load_kfp_component(str(path)).spec.container
    assert container is not None
    assert expand(container.args, lambda ph: values[ph.name], values.__contains__) == expected


@pytest.mark.parametrize("type_name, text, value", [
    ("str", " a b\n", " a b\n"), ("int", "31\n", 31), ("float", "0.5", 0.5),
    ("bool", "True", True), ("bool", "false\n", False), ("list", "[1, 2]", [1, 2]),
    ("dict", '{"k": 1}', {"k": 1}),
])
def test_output_parameters_are_read_as_kubeflow_reads_them(type_name: str, text: str, value: Any) -> None:
    from kubesage.dsl.types import parse_value

    assert parse_value(type_name, text) == value


@pytest.mark.parametrize("type_name, text", [("int", "3.5"), ("int", "abc"), ("bool", "yes please"),
                                             ("list", '{"k": 1}'), ("dict", "[")])
def test_an_output_parameter_of_the_wrong_type_is_refused(type_name: str, text: str) -> None:
    from kubesage.dsl.types import parse_value

    with pytest.raises(ValueError):
        parse_value(type_name, text)


@pytest.mark.parametrize("text, message", [
    ("name: broken\ninputs:\n- {name: a, type: String}\nimplementation:\n  container:\n"
     "    image: busybox\n    command: [echo, {inputValue: nope}]\n",
     "is not a Kubeflow component YAML that kfp can load"),
    ("name: py\ninputs:\n- {name: a, type: String}\nimplementation:\n  container:\n"
     "    image: python:3.11\n    command: [python, -c, 'pass', '{{$}}']\n",
     "reads the Kubeflow executor input ({{$}})"),
    ("name: odd\ninputs:\n- {name: a, type: String}\nimplementation:\n  container:\n"
     "    image: busybox\n    command: [echo, \"{{$.inputs.parameters['b']}}\"]\n",
     "its command line names input 'b', which its interface does not declare (declared: a)"),
])
def test_a_component_kubesage_cannot_run_is_refused_with_the_reason(
    tmp_path, text: str, message: str
) -> None:
    path = tmp_path / "component.yaml"
    path.write_text(text)
    with pytest.raises(DefinitionError) as err:
        load_kfp_component(str(path))
    assert message in str(err.value)


def test_imported_components_are_type_checked_in_pipelines() -> None:
    upper = load_kfp_component(os.path.join(COMPONENTS, "upper.yaml"))
    made = load_kfp_component(os.path.join(COMPONENTS, "make_text.yaml"))
    with pytest.raises(DefinitionError, match="call it inside a @pipeline"):
        upper(text="not in a pipeline")
    from components.train import train

    @pipeline(name="wrong")
    def wrong() -> None:
        trained = train(data=made(text="x", repeat=1).outputs["out"])
        upper(text=trained.outputs["model"])

    with pytest.raises(TypeMismatchError, match="input 'text' expects a Dataset artifact but gets "
                                                "output 'model' of task 'train', a Model"):
        wrong.build()


@pytest.mark.docker
def test_kfp_compile_keeps_the_components_own_command_line(tmp_path) -> None:
    from kfp import components

    from kubesage.targets.kfp import TARGET

    out = str(tmp_path / "imported.yaml")
    TARGET.compile(_pipeline("imported"), out)
    assert "is valid" in TARGET.validate(out)
    components.load_component_from_file(out)
    import yaml

    with open(out) as f:  # the pipeline spec, then the Kubernetes platform spec
        executors = next(yaml.safe_load_all(f))["deploymentSpec"]["executors"]
    upper = executors["exec-upper"]["container"]
    assert upper["image"] == "kubesage/torch:latest" and upper["command"][:2] == ["sh", "-ec"]
    assert json.loads(upper["args"][0])["IfPresent"]["Else"] == ["--quiet"]
    assert "{{$.outputs.parameters['size'].output_file}}" in upper["command"]


@pytest.mark.docker
def test_sagemaker_compile_runs_the_command_in_a_processing_job(tmp_path) -> None:
    from kubesage.targets.sagemaker import TARGET
    from kubesage.targets.sagemaker.compiler import CompileError

    out = str(tmp_path / "imported.json")
    TARGET.compile(_pipeline("imported_artifacts"), out)
    assert "is valid" in TARGET.validate(out)
    with open(out) as f:
        steps = {s["Name"]: s["Arguments"] for s in json.load(f)["Steps"]}
    app = steps["upper"]["AppSpecification"]
    assert app["ContainerEntrypoint"][3:6] == [
        "/opt/ml/processing/input/text/out", "!", "/opt/ml/processing/output/upper/upper"]
    assert app["ContainerArguments"] == ["--shout", "true", "suffix=!"]
    with pytest.raises(CompileError, match="output 'head' of task 'upper' .* container component"):
        TARGET.compile(_pipeline("imported"), str(tmp_path / "no.json"))
    assert not os.path.exists(tmp_path / "no.json")


def test_the_subprocess_runner_refuses_container_components(tmp_path) -> None:
    runner = runner_for("subprocess", LocalConfig(store=str(tmp_path)), REPO, log=io.StringIO())
    with pytest.raises(KubesageError, match="make-text, upper: container components .* --runner docker"):
        runner.run(_pipeline("imported"))


@pytest.mark.docker
def test_imported_components_run_locally_in_docker(docker_client: Any, config_file: str) -> None:
    record = run_json("run", f"{IMPORTED}:imported", "--config", config_file)
    assert record["status"] == "succeeded", record["_stderr"]
    steps = {s["name"]: s for s in record["steps"]}
    assert steps["upper"]["returns"] == {"size": 31, "head": "HELLO"}  # 2 x 15 bytes + "!"
    assert steps["report"]["returns"] == {"output": "HELLO"}
    assert steps["long"]["status"] == "succeeded"  # the condition read an imported output
    folder = steps["upper"]["outputs"]["upper"]["path"]
    with open(os.path.join(folder, "upper")) as f:
        assert f.read() == "HELLO KUBESAGE\nHELLO KUBESAGE\n!"
    assert "upper: options --quiet suffix=!" in record["_stderr"]
    again = run_json("run", f"{IMPORTED}:imported", "--config", config_file)
    assert all(s["cached"] for s in again["steps"])


@pytest.mark.docker
def test_imported_components_run_under_the_local_sagemaker_executor(
    docker_client: Any, tmp_path, fsx_root: str
) -> None:
    from kubesage.targets import RunOptions
    from kubesage.targets.sagemaker import TARGET
    from tests.sagemaker_fixtures import write_sagemaker_config

    target = write_sagemaker_config(str(tmp_path), fsx=fsx_root, store=str(tmp_path / "store"))
    record = TARGET.run(_pipeline("imported_artifacts"), RunOptions(
        params={"text": "abc"}, config=target, pipeline_file=IMPORTED, log=io.StringIO()))
    assert record.status == "succeeded"
    folder = record.step("upper").outputs["upper"]["path"]
    with open(os.path.join(folder, "upper")) as f:
        assert f.read() == "ABC\nABC\n!"

"""The neutral model: component interfaces, pipeline graphs, definition-time errors."""

from __future__ import annotations

import json
import typing

import pytest

from kubesage import (
    Condition,
    CycleError,
    Dataset,
    DefinitionError,
    Distribution,
    DuplicateNameError,
    Input,
    Metrics,
    MissingInputError,
    Model,
    Output,
    ParallelFor,
    ParameterError,
    Resources,
    TypeMismatchError,
    UnknownInputError,
    component,
    pipeline,
)
from kubesage.dsl.interface import ComponentSpec


@component(version="2.1.0", image="kubesage/torch", mounts={"fsx": "/fsx"},
           resources=Resources(cpu=4, memory="16Gi", gpus=1),
           distribution=Distribution(nodes=2, procs_per_node=4), retries=3, cache=False)
def make_data(source: str, out: Output[Dataset], size: int = 8, ratio: float = 0.5,
              flag: bool = False, names: list = [], opts: dict = {}) -> None:  # noqa: B006
    """Write a dataset."""
    with open(out.file("x.txt"), "w") as f:
        f.write(f"{source}:{size}")


@component
def fit(data: Input[Dataset], model: Output[Model], epochs: int = 1) -> None:
    with open(model.file("m.txt"), "w") as f:
        f.write(open(data.file("x.txt")).read() * epochs)


class Scores(typing.NamedTuple):
    accuracy: float
    label: str


@component
def score(model: Input[Model], metrics: Output[Metrics]) -> Scores:
    metrics.log_metric("accuracy", 0.5)
    return Scores(0.5, "ok")


@component
def publish(model: Input[Model], name: str) -> str:
    return name


def test_interface_from_typed_function() -> None:
    spec = make_data.spec
    assert spec.name == "make-data" and spec.version == "2.1.0"
    assert spec.entry == "tests.test_dsl:make_data"
    assert [(p.name, p.type, p.required) for p in spec.parameters] == [
        ("source", "str", True), ("size", "int", False), ("ratio", "float", False),
        ("flag", "bool", False), ("names", "list", False), ("opts", "dict", False)]
    assert [(a.name, a.type) for a in spec.outputs] == [("out", "Dataset")]
    assert spec.resources == Resources(cpu=4, memory="16Gi", gpus=1)
    assert spec.distribution.world_size == 8
    assert dict(spec.mounts) == {"fsx": "/fsx"}
    assert (spec.retries, spec.cache, spec.description) == (3, False, "Write a dataset.")
    assert [(r.name, r.type) for r in score.spec.returns] == [("accuracy", "float"), ("label", "str")]
    # the interface document round-trips through JSON unchanged
    doc = json.loads(json.dumps(spec.to_dict()))
    assert ComponentSpec.from_dict(doc) == spec


def test_component_called_outside_a_pipeline_is_the_plain_function(tmp_path) -> None:
    out = Dataset(str(tmp_path))
    make_data("src", out, size=3)
    assert (tmp_path / "x.txt").read_text() == "src:3"
    assert publish(Model(str(tmp_path)), "m1") == "m1"


def test_pipeline_graph_with_condition_and_fan_out() -> None:
    @pipeline(name="graph")
    def graph(src: str = "/fsx/a", threshold: float = 0.4, clients: list = ["a", "b"]) -> None:  # noqa: B006
        d = make_data(source=src)
        m = fit(data=d.outputs["out"], epochs=2)
        s = score(model=m.outputs.model)
        with Condition(s.outputs["accuracy"] >= threshold):
            publish(model=m.outputs["model"], name="x")
        with ParallelFor(clients) as client:
            publish(model=m.outputs["model"], name=client)

    built = graph.build()
    assert [t.name for t in built.tasks] == ["make-data", "fit", "score", "publish", "publish-2"]
    assert [p.name for p in built.parameters] == ["src", "threshold", "clients"]
    doc = built.to_dict()
    assert doc["groups"][0]["condition"] == {
        "left": {"task": "score", "output": "accuracy"}, "op": ">=", "right": {"param": "threshold"}}
    assert doc["tasks"][4]["arguments"]["name"] == {"loop": "loop-1"}
    assert [t.name for t in built.task("publish").upstream()] == ["fit", "score"]
    assert built.digest() == graph.build().digest()


def _build(body: typing.Callable[..., None]) -> None:
    pipeline(name="p")(body).build()


def test_unknown_input_names_task_and_suggests() -> None:
    def body() -> None:
        fit(data=make_data(source="s").outputs["out"], epoch=3)

    with pytest.raises(UnknownInputError, match=r"task 'fit' \(component 'fit'\): unknown input "
                       r"'epoch' \(did you mean 'epochs'\?\); its inputs are: epochs, data"):
        _build(body)


def test_missing_input_names_task_and_fix() -> None:
    def body() -> None:
        make_data()

    with pytest.raises(MissingInputError, match=r"task 'make-data'.*required input 'source' "
                       r"\(str\) is missing; pass source=<str>"):
        _build(body)

    def body2() -> None:
        fit(epochs=2)

    with pytest.raises(MissingInputError, match=r"input artifact 'data' \(Dataset\) is missing"):
        _build(body2)


def test_artifact_type_mismatch() -> None:
    def body() -> None:
        d = make_data(source="s")
        m = fit(data=d.outputs["out"])
        fit(data=m.outputs["model"])

    with pytest.raises(TypeMismatchError, match=r"task 'fit-2'.*input 'data' expects a Dataset "
                       r"artifact but gets output 'model' of task 'fit', a Model"):
        _build(body)


def test_parameter_of_wrong_type() -> None:
    def body() -> None:
        make_data(source="s", size="big")

    with pytest.raises(TypeMismatchError, match=r"task 'make-data'.*input 'size' expects a int, "
                       r"got 'big' \(str\)"):
        _build(body)

    def body2(name: int = 3) -> None:
        d = make_data(source="s")
        publish(model=fit(data=d.outputs["out"]).outputs["model"], name=name)

    with pytest.raises(TypeMismatchError, match=r"input 'name' expects a str but gets pipeline "
                       r"parameter 'name', a int"):
        _build(body2)


def test_artifact_passed_to_parameter() -> None:
    def body() -> None:
        d = make_data(source="s")
        publish(model=fit(data=d.outputs["out"]).outputs["model"], name=d.outputs["out"])

    with pytest.raises(TypeMismatchError, match=r"input 'name' is a str parameter but gets output "
                       r"'out' of task 'make-data', a Dataset artifact"):
        _build(body)


def test_cycle() -> None:
    def body() -> None:
        a = make_data(source="a")
        b = make_data(source="b").after(a)
        a.after(b)

    with pytest.raises(CycleError, match=r"has a cycle: make-data -> make-data-2 -> make-data"):
        _build(body)


def test_duplicate_task_name() -> None:
    def body() -> None:
        make_data(source="a").set_name("prep")
        make_data(source="b").set_name("prep")

    with pytest.raises(DuplicateNameError, match=r"two tasks are named 'prep'.*set_name"):
        _build(body)


def test_output_of_conditional_task_used_outside_condition() -> None:
    def body(t: float = 0.5) -> None:
        m = fit(data=make_data(source="a").outputs["out"])
        s = score(model=m.outputs["model"])
        with Condition(s.outputs["accuracy"] > t):
            m2 = fit(data=make_data(source="b").outputs["out"])
        publish(model=m2.outputs["model"], name="x")

    with pytest.raises(DefinitionError, match=r"runs inside Condition 'condition-1'; move this "
                       r"call inside the same block"):
        _build(body)


def test_pipeline_parameters_are_checked_at_run_time() -> None:
    @pipeline(name="params")
    def p(epochs: int = 2, rate: float = 0.1, tags: list = []) -> None:  # noqa: B006
        fit(data=make_data(source="x").outputs["out"], epochs=epochs)

    built = p.build()
    assert built.resolve_parameters({"epochs": "5", "rate": "1"}) == {
        "epochs": 5, "rate": 1.0, "tags": []}
    with pytest.raises(ParameterError, match=r"'epochs' expects a int: .*--param epochs=3"):
        built.resolve_parameters({"epochs": "many"})
    with pytest.raises(ParameterError, match=r"no parameter 'epoch' \(did you mean 'epochs'\?\)"):
        built.resolve_parameters({"epoch": "5"})
    with pytest.raises(ParameterError, match=r"'tags' expects a list"):
        built.resolve_parameters({"tags": '{"a": 1}'})


def test_comparing_an_artifact_is_refused() -> None:
    def body() -> None:
        d = make_data(source="a")
        with Condition(d.outputs["out"] > 1):
            pass

    with pytest.raises(TypeError, match=r"is a Dataset artifact and cannot be compared"):
        _build(body)


def test_component_without_annotations_is_refused() -> None:
    with pytest.raises(DefinitionError, match=r"argument 'x' has no type annotation"):
        @component
        def bad(x) -> None:  # type: ignore[no-untyped-def]
            pass


def test_compiled_file_parameters_go_through_the_one_type_table() -> None:
    """Both targets check a compiled file's parameters with ``typed_values`` (the table in
    ``dsl.types``): text parsed into each declared type, mistakes named with the fix."""
    from kubesage.dsl.errors import ParameterError
    from kubesage.dsl.pipeline import typed_values

    declared = {"epochs": "int", "lr": "float", "clients": "list", "name": "str"}
    assert typed_values("p", declared, {"epochs": "3", "lr": "1", "clients": '["a"]', "name": "7"}
                        ) == {"epochs": 3, "lr": 1.0, "clients": ["a"], "name": "7"}
    with pytest.raises(ParameterError,
                       match=r"pipeline 'p' has no parameter 'epoch' \(did you mean 'epochs'\?\)"):
        typed_values("p", declared, {"epoch": "3"})
    with pytest.raises(ParameterError, match=r"'epochs' expects a int: .*pass e.g. --param epochs=3"):
        typed_values("p", declared, {"epochs": "three"})
    with pytest.raises(ParameterError, match=r"'clients' expects a list, got"):
        typed_values("p", declared, {"clients": {"a": 1}})

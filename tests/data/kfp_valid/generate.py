"""Regenerate the kfp corpus of ``tests/test_kfp_corpus.py``: valid pipelines compiled by kfp's own
compiler (``tests/data/kfp_valid/*.yaml``) and hand-broken copies of them
(``tests/data/kfp_invalid/*.yaml``, with the error each must get in ``expected.yaml``).

    .venv/bin/python tests/data/kfp_valid/generate.py

The pipelines are written with the kfp DSL only (no kubesage), to cover what kfp's compiler emits
beyond a component's interface: ``pipelinechannel--`` inputs injected for format strings,
conditions and loops, and machine fields (CPU, memory, accelerator, image) set from pipeline
parameters or task outputs. kfp's own test corpus (``test_data/sdk_compiled_pipelines`` in
kubeflow/pipelines) is checked too when ``KUBESAGE_KFP_TEST_DATA`` points at it.
"""

# no "from __future__ import annotations": kfp reads the annotations of components

import copy
import os
import sys
from collections.abc import Callable
from typing import Any

import yaml
from kfp import compiler, dsl, kubernetes

HERE = os.path.dirname(os.path.abspath(__file__))
INVALID = os.path.join(os.path.dirname(HERE), "kfp_invalid")
IMAGE = "python:3.11-slim"


@dsl.component(base_image=IMAGE)
def flip() -> str:
    import random
    return random.choice(["heads", "tails"])


@dsl.component(base_image=IMAGE)
def random_num(low: int, high: int) -> int:
    import random
    return random.randint(low, high)


@dsl.component(base_image=IMAGE)
def say(msg: str) -> str:
    print(msg)
    return msg


@dsl.component(base_image=IMAGE)
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(base_image=IMAGE)
def machine(kind: str) -> str:
    return {"cpu": "2", "memory": "4G", "gpu": "nvidia.com/gpu", "count": "1"}[kind]


@dsl.component(base_image=IMAGE)
def make_data(rows: int, data: dsl.Output[dsl.Dataset]) -> None:
    with open(data.path, "w") as f:
        f.write("\n".join(str(i) for i in range(rows)))


@dsl.component(base_image=IMAGE)
def count_rows(data: dsl.Input[dsl.Dataset]) -> int:
    with open(data.path) as f:
        return len(f.read().splitlines())


@dsl.component(base_image=IMAGE)
def total(numbers: list) -> int:
    return sum(numbers)


@dsl.component(base_image=IMAGE)
def report(status: dsl.PipelineTaskFinalStatus, who: str) -> None:
    print(who, status.state, status.error_message)


@dsl.container_component
def echo(text: str):
    return dsl.ContainerSpec(image="alpine:3.20", command=["echo"], args=[text])


@dsl.pipeline(name="flip-coin")
def flip_coin(low: int = 0, high: int = 9) -> None:
    """dsl.If / Elif / Else, nested, with format strings of task outputs and parameters."""
    side = flip()
    with dsl.If(side.output == "heads"):
        num = random_num(low=low, high=high)
        with dsl.If(num.output > 5):
            say(msg=f"heads and {num.output} > 5 (from {low}..{high})")
        with dsl.Else():
            say(msg=f"heads and {num.output} <= 5")
    with dsl.Elif(side.output == "tails"):
        num2 = random_num(low=low, high=high)
        with dsl.If(num2.output == 9):
            say(msg=f"tails and {num2.output}")
    with dsl.Else():
        say(msg=f"on its edge: {side.output}")


@dsl.pipeline(name="params-containing-format")
def params_containing_format(name: str = "kubesage", version: int = 2) -> None:
    """Pipeline parameters and task outputs inside f-strings, lists and dicts."""
    first = say(msg=f"Hello {name}")
    second = say(msg=f"{first.output}, again: {name}-v{version}")
    echo(text=f"{second.output} / {name}")
    total(numbers=[version, 1, 2])
    say(msg=f"{{'who': '{name}', 'n': {version}}}").after(second)


@dsl.pipeline(name="machine-fields-from-parameters")
def machine_fields_from_parameters(cpu: str = "2", memory: str = "4G",
                                   gpu: str = "nvidia.com/gpu", gpus: str = "1",
                                   image: str = "python:3.12-slim") -> None:
    """set_cpu_limit and friends, and set_container_image, from pipeline parameters."""
    task = add(a=1, b=2)
    task.set_cpu_request(cpu).set_cpu_limit(cpu)
    task.set_memory_request(memory).set_memory_limit(memory)
    task.set_accelerator_type(gpu).set_accelerator_limit(gpus)
    task.set_container_image(image)


@dsl.pipeline(name="machine-fields-from-task-outputs")
def machine_fields_from_task_outputs(flavour: str = "slim") -> None:
    """The same machine fields from task outputs, one of them inside a condition."""
    cpu = machine(kind="cpu")
    memory = machine(kind="memory")
    gpu = machine(kind="gpu")
    count = machine(kind="count")
    task = add(a=3, b=4)
    task.set_cpu_limit(cpu.output).set_memory_limit(memory.output)
    task.set_accelerator_type(gpu.output).set_accelerator_limit(count.output)
    task.set_container_image(f"python:3.12-{flavour}")
    with dsl.If(cpu.output == "2"):
        again = add(a=5, b=6)
        again.set_cpu_limit(cpu.output)


@dsl.pipeline(name="loops")
def loops(names: list = ["a", "b"], suffix: str = "x") -> None:  # noqa: B006 (kfp's default)
    """ParallelFor over a parameter, a static list of dicts, nested, with parallelism;
    format strings of loop items; dsl.Collected."""
    with dsl.ParallelFor(names, parallelism=2) as item:
        say(msg=f"{item}-{suffix}")
        with dsl.ParallelFor([{"a": 1, "b": 2}, {"a": 3, "b": 4}]) as pair:
            sum_task = add(a=pair.a, b=pair.b)
            say(msg=item).after(sum_task)
            with dsl.If(sum_task.output > 3):
                say(msg=f"more than 3: {sum_task.output}")
    with dsl.ParallelFor([1, 2, 3]) as n:
        sums = add(a=n, b=10)
    total(numbers=dsl.Collected(sums.output))


@dsl.pipeline(name="artifacts-and-oneof")
def artifacts_and_oneof(rows: int = 10) -> None:
    """Artifacts between tasks, a condition on a task output, dsl.OneOf of parameters."""
    data = make_data(rows=rows)
    n = count_rows(data=data.outputs["data"])
    with dsl.If(n.output > 5):
        big = say(msg=f"big: {n.output} rows")
    with dsl.Else():
        small = say(msg=f"small: {n.output} rows")
    say(msg=dsl.OneOf(big.output, small.output))


@dsl.pipeline(name="inner")
def inner(greeting: str = "hi", who: str = "there") -> str:
    return say(msg=f"{greeting}, {who}!").output


@dsl.pipeline(name="exit-handler-and-nested")
def exit_handler_and_nested(who: str = "world") -> None:
    """An exit handler with PipelineTaskFinalStatus around a nested pipeline fed a format string."""
    final = report(who=f"exit of {who}")
    with dsl.ExitHandler(final):
        nested = inner(greeting=f"hello {who}", who=who)
        say(msg=f"nested said {nested.output}")


@dsl.pipeline(name="kubernetes-config")
def kubernetes_config(secret: str = "db-creds", claim: str = "data") -> None:
    """Kubernetes platform config, some of it from pipeline parameters."""
    task = say(msg=f"secret {secret} on {claim}")
    kubernetes.use_secret_as_env(task, secret_name=secret,
                                 secret_key_to_env={"password": "DB_PASSWORD"})
    kubernetes.mount_pvc(task, pvc_name=claim, mount_path="/data")
    kubernetes.add_toleration(task, key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")
    kubernetes.set_image_pull_policy(task, "IfNotPresent")
    task.set_cpu_limit("1").set_memory_limit("1G")


@dsl.pipeline(name="loop-item-in-condition")
def loop_item_in_condition(names: list = ["a", "b"]) -> None:  # noqa: B006 (kfp's default)
    """Compiles, but kfp's compiler passes neither the outer loop's item nor the dict fields
    into the inner loop and the dsl.If (kubeflow/pipelines#13273), so tasks read inputs their
    groups lack and the run fails there: an invalid file that kfp compiles (in kfp_invalid)."""
    with dsl.ParallelFor(names) as item:
        with dsl.ParallelFor([{"a": 1, "b": 2}, {"a": 3, "b": 4}]) as pair:
            sum_task = add(a=pair.a, b=pair.b)
            with dsl.If(sum_task.output > 3):
                say(msg=f"{item}: {pair.a} + {pair.b} = {sum_task.output}")


PIPELINES: list[Any] = [flip_coin, params_containing_format, machine_fields_from_parameters,
                        machine_fields_from_task_outputs, loops, artifacts_and_oneof,
                        exit_handler_and_nested, kubernetes_config]

Docs = list[dict[str, Any]]


def _task(docs: Docs, component: str, task: str) -> dict[str, Any]:
    owner = docs[0]["root"] if component == "root" else docs[0]["components"][component]
    found: dict[str, Any] = owner["dag"]["tasks"][task]
    return found


def _params(docs: Docs, component: str, task: str) -> dict[str, Any]:
    found: dict[str, Any] = _task(docs, component, task)["inputs"]["parameters"]
    return found


def _rename(mapping: dict[str, Any], old: str, new: str) -> None:
    mapping[new] = mapping.pop(old)


# name, source, what is broken, the error it must get (a regular expression)
BROKEN: list[tuple[str, str, Callable[[Docs], None], str]] = [
    ("empty", "flip_coin", lambda d: d.clear(), r"the file is empty"),
    ("misspelt_components", "flip_coin", lambda d: _rename(d[0], "components", "components_1"),
     r'is not a valid PipelineSpec: .*has no field named "components_1"'),
    ("no_name", "flip_coin", lambda d: d[0]["pipelineInfo"].__setitem__("name", None),
     r"pipelineInfo.name is missing"),
    ("undeclared_parameter", "params_containing_format",
     lambda d: _rename(_params(d, "root", "say"), "msg", "mesage"),
     r"task 'say' of root passes parameter 'mesage', which component 'comp-say' does not "
     r"declare"),
    ("machine_field_constant", "machine_fields_from_parameters",
     lambda d: _params(d, "root", "add")["cpu_limit"]["runtimeValue"].__setitem__("constant", "2"),
     r"task 'add' of root passes parameter 'cpu_limit', which component 'comp-add' does not "
     r"declare"),
    ("machine_field_reads_missing_channel", "machine_fields_from_parameters",
     lambda d: _params(d, "root", "add").pop("pipelinechannel--memory"),
     r"task 'add' of root passes parameter 'memory_(limit|request)', which component 'comp-add' "
     r"does not declare"),
    ("channel_from_undeclared_input", "params_containing_format",
     lambda d: _params(d, "root", "say")["pipelinechannel--name"].__setitem__(
         "componentInputParameter", "nmae"),
     r"task 'say' of root reads input parameter 'nmae', which root does not declare"),
    ("channel_from_missing_task", "params_containing_format",
     lambda d: _params(d, "root", "say-2")["pipelinechannel--say-Output"][
         "taskOutputParameter"].__setitem__("producerTask", "sya"),
     r"task 'say-2' of root takes 'Output' from task 'sya', which root does not have"),
    ("channel_from_outside_condition", "flip_coin",
     lambda d: _params(d, "comp-condition-4", "say-2")["pipelinechannel--random-num-Output"]
     .__setitem__("componentInputParameter", "pipelinechannel--random-num-2-Output"),
     r"task 'say-2' of comp-condition-4 reads input parameter "
     r"'pipelinechannel--random-num-2-Output', which comp-condition-4 does not declare"),
    ("channel_from_undeclared_output", "machine_fields_from_task_outputs",
     lambda d: _params(d, "root", "add")["pipelinechannel--machine-Output"][
         "taskOutputParameter"].__setitem__("outputParameterKey", "Outptu"),
     r"task 'add' of root takes output 'Outptu' of task 'machine', whose component does not "
     r"declare it"),
    ("dangling_component", "loops",
     lambda d: _task(d, "root", "total")["componentRef"].__setitem__("name", "comp-totl"),
     r"task 'total' of root runs component 'comp-totl', which is not defined under components"),
    ("misspelt_kubernetes_field", "kubernetes_config",
     lambda d: _rename(d[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-say"],
                       "pvcMount", "pvcMounts"),
     r"the Kubernetes config of executor 'exec-say' is not a valid KubernetesExecutorConfig: "
     r'.*has no field named "pvcMounts"'),
]


@dsl.pipeline(name="outer-item-in-inner-loop-format")
def outer_item_in_inner_loop_format(names: list = ["a", "b"]) -> None:  # noqa: B006
    """Compiles, but the outer loop's item, read only by a format string in the inner loop, is
    not passed into the inner loop: the run fails at that task."""
    with dsl.ParallelFor(names) as item:
        with dsl.ParallelFor([1, 2]) as n:
            say(msg=f"{item}-{n}")


LOOP_ITEM_ERROR = (r"reads input parameter '[^']*loop-item[^']*', which [a-z0-9-]+ does not "
                   r"declare; kfp's compiler .*kubeflow/pipelines#13273")
#: compiled by kfp straight into kfp_invalid: name, the error it must get
COMPILED_BROKEN: list[tuple[Any, str]] = [
    (loop_item_in_condition, LOOP_ITEM_ERROR),
    (outer_item_in_inner_loop_format, LOOP_ITEM_ERROR),
]


def main() -> int:
    docs_of: dict[str, Docs] = {}
    for pipeline in PIPELINES:
        name = pipeline.pipeline_func.__name__
        path = os.path.join(HERE, f"{name}.yaml")
        compiler.Compiler().compile(pipeline, path)
        with open(path) as f:
            docs_of[name] = list(yaml.safe_load_all(f))
        print(path)
    os.makedirs(INVALID, exist_ok=True)
    expected = {}
    for name, source, change, error in BROKEN:
        docs = copy.deepcopy(docs_of[source])
        change(docs)
        path = os.path.join(INVALID, f"{name}.yaml")
        with open(path, "w") as f:
            f.write(f"# {source}.yaml of tests/data/kfp_valid, broken by generate.py there\n")
            yaml.safe_dump_all(docs, f, sort_keys=True)
        expected[f"{name}.yaml"] = error
        print(path)
    for pipeline, error in COMPILED_BROKEN:
        name = pipeline.pipeline_func.__name__
        path = os.path.join(INVALID, f"{name}.yaml")
        compiler.Compiler().compile(pipeline, path)
        expected[f"{name}.yaml"] = error
        print(path)
    with open(os.path.join(INVALID, "expected.yaml"), "w") as f:
        f.write("# file: the error 'kubesage validate FILE' must print (a regular expression);\n"
                "# written by tests/data/kfp_valid/generate.py\n")
        yaml.safe_dump(expected, f, sort_keys=True, width=200)
    return 0


if __name__ == "__main__":
    sys.exit(main())

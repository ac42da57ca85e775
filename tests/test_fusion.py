"""Fusion planning (kubesage.plan.fusion): which steps share a job, and why each boundary is where
it is; the config's fusion setting; --explain's numbers. No SDK, no Docker."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from kubesage import Artifact, Condition, Input, Model, Output, ParallelFor, component, pipeline
from kubesage.config.fusion import read_fusion
from kubesage.config.reader import ConfigError, ConfigReader
from kubesage.dsl.interface import Distribution, Resources
from kubesage.plan import Plan
from kubesage.plan.costs import CostModel, FusionSettings, Price, StartCost
from kubesage.plan.explain import explain, project
from kubesage.plan.fusion import FusionError, FusionPlan, Placement, plan_fusion


@component
def make(out: Output[Artifact], n: int = 1) -> int:
    return n


@component
def use(data: Input[Artifact], out: Output[Artifact]) -> float:
    return 0.5


@component(resources=Resources(gpus=1))
def train(data: Input[Artifact], model: Output[Model]) -> None:
    pass


@component(distribution=Distribution(nodes=2))
def wide(data: Input[Artifact], model: Output[Model]) -> None:
    pass


@component(fuse=False)
def loner(data: Input[Artifact], out: Output[Artifact]) -> None:
    pass


@component(image="other/image")
def elsewhere(data: Input[Artifact], out: Output[Artifact]) -> None:
    pass


class Target:
    """A target of two instance classes: ``gpu`` for steps that want GPUs or train on several
    nodes (anchors, as a training job), ``cpu`` for the others."""

    name = "test"

    def placement(self, step: Any) -> Placement:
        task = step.task
        if task.resources.gpus or task.distribution.nodes > 1:
            nodes = task.distribution.nodes
            return Placement("training", "gpu", (("training", 1),), 2, anchor=True, nodes=nodes,
                             world_size=task.distribution.world_size, leaders=nodes == 1,
                             gpus=bool(task.resources.gpus))
        return Placement("processing", "cpu", (("processing", 1),), 2,
                         world_size=task.distribution.world_size)

    def fits(self, members: Any) -> str:
        return ""


START = {"processing": StartCost(120, "test"), "training": StartCost(116, "test")}
PRICES = {"cpu": Price(0.23, "test"), "gpu": Price(1.515, "test")}


def fused(p: Any, **settings: Any) -> tuple[Plan, FusionPlan]:
    built = p.build() if hasattr(p, "build") else p
    plan = Plan(built, None, expand=lambda loop: True)
    fusion_settings = FusionSettings(**settings)
    return plan, plan_fusion(plan, Target(), fusion_settings,
                             CostModel.of(START, PRICES, fusion_settings))


def labels(fusion: FusionPlan) -> list[str]:
    return [g.label for g in fusion.fused]


def reason(fusion: FusionPlan, producer: str, consumer: str) -> str:
    return next(b.reason for b in fusion.boundaries
                if (b.producer.name, b.consumer.name) == (producer, consumer))


def test_a_chain_on_one_instance_class_is_one_job() -> None:
    @pipeline(name="chain")
    def chain() -> None:
        first = make()
        second = use(data=first.outputs["out"])
        use(data=second.outputs["out"]).set_name("third")

    plan, fusion = fused(chain)
    assert labels(fusion) == ["make + use + third"]
    numbers = project(fusion, plan)
    assert (numbers.jobs_before, numbers.jobs_after) == ({"processing": 3}, {"processing": 1})
    assert (numbers.pods_before, numbers.pods_after) == (6, 2)
    assert (numbers.wait_before_s, numbers.wait_after_s, numbers.saved_s) == (360, 120, 240)


def test_off_keeps_every_step_its_own_job() -> None:
    @pipeline(name="chain-off")
    def chain() -> None:
        use(data=make().outputs["out"])

    plan, fusion = fused(chain, mode="off")
    assert labels(fusion) == [] and len(fusion.groups) == 2
    assert project(fusion, plan).saved_s == 0


def test_fan_out_items_stay_separate_jobs_and_each_items_chain_fuses() -> None:
    @pipeline(name="fan")
    def fan() -> None:
        head = make()
        with ParallelFor([1, 2, 3]) as n:
            first = make(n=n)
            use(data=first.outputs["out"])
        use(data=head.outputs["out"]).set_name("tail")

    _, fusion = fused(fan)
    assert labels(fusion) == ["make + tail", "make-2[0] + use[0]", "make-2[1] + use[1]",
                              "make-2[2] + use[2]"]


def test_a_step_outside_a_loop_never_joins_an_item() -> None:
    @pipeline(name="into-loop")
    def into() -> None:
        head = make()
        with ParallelFor([1, 2]):
            use(data=head.outputs["out"])

    _, fusion = fused(into)
    assert labels(fusion) == []
    assert "a fan-out's items stay separate jobs" in reason(fusion, "make", "use[0]")


def test_a_condition_splits_a_group_and_its_branch_fuses() -> None:
    @pipeline(name="gated")
    def gated(bar: float = 0.1) -> None:
        scored = use(data=make().outputs["out"])
        with Condition(scored.output >= bar):
            inner = make().set_name("inner")
            use(data=inner.outputs["out"]).set_name("inner-use")

    _, fusion = fused(gated)
    assert labels(fusion) == ["make + use", "inner + inner-use"]
    assert "a condition splits groups" in reason(fusion, "use", "inner")


def test_must_run_alone_other_images_and_retries_split() -> None:
    @pipeline(name="apart")
    def apart() -> None:
        first = make()
        other = elsewhere(data=first.outputs["out"])
        loner(data=other.outputs["out"])
        use(data=first.outputs["out"]).set_retries(2)

    _, fusion = fused(apart)
    assert labels(fusion) == []
    assert "runs in image other/image" in reason(fusion, "make", "elsewhere")
    assert "component 'loner' declares fuse=False" in reason(fusion, "elsewhere", "loner")
    assert "sets retries" in reason(fusion, "make", "use")


def test_a_long_cpu_step_is_not_moved_onto_a_gpu_instance_unless_it_is_short() -> None:
    @pipeline(name="prep-train")
    def prep_train() -> None:
        data = make()
        trained = train(data=data.outputs["out"])
        use(data=trained.outputs["model"])

    plan, fusion = fused(prep_train)
    assert labels(fusion) == []
    why = reason(fusion, "make", "train")
    assert "no duration estimate: assumed 3600 s" in why
    assert "more than the 120 s start it saves is worth there" in why
    assert "not fused, it would cost more than it saves: make | train" in explain(
        fusion, plan, lambda g: g.label)
    _, fusion = fused(prep_train, durations={"make": 60, "use": 30})
    assert labels(fusion) == ["make + train + use"]
    assert fusion.fused[0].job == "training"


def test_a_multi_node_step_takes_followers_but_no_leaders() -> None:
    @pipeline(name="multi")
    def multi() -> None:
        data = make()
        trained = wide(data=data.outputs["out"])
        use(data=trained.outputs["model"])

    _, fusion = fused(multi, durations={"make": 1, "use": 1})
    assert labels(fusion) == ["wide + use"]
    assert "its hosts would each run them" in reason(fusion, "make", "wide")


def test_a_step_that_would_hold_the_group_back_does_not_join() -> None:
    @pipeline(name="diamond")
    def diamond() -> None:
        a = make()
        b = use(data=a.outputs["out"])
        c = make().set_name("other")
        both = use(data=b.outputs["out"]).set_name("both").after(c)
        del both

    _, fusion = fused(diamond)
    assert "both also waits for other, which the job of make does not" in reason(
        fusion, "use", "both")


def test_a_sibling_waits_for_the_joining_step_only_when_it_is_short() -> None:
    @pipeline(name="siblings")
    def siblings() -> None:
        a = make()
        use(data=a.outputs["out"]).set_name("left")
        use(data=a.outputs["out"]).set_name("right")

    _, fusion = fused(siblings)
    assert labels(fusion) == []
    assert "would wait for left too" in reason(fusion, "make", "left")
    _, fusion = fused(siblings, assumed_duration_s=5)
    assert labels(fusion) == ["make + left + right"]


def test_explicit_groups_are_checked() -> None:
    @pipeline(name="explicit")
    def explicit() -> None:
        a = make()
        b = use(data=a.outputs["out"])
        use(data=a.outputs["out"]).set_name("c").after(b)
        make().set_name("stray")

    _, fusion = fused(explicit, mode="explicit", groups=(("make", "use"),))
    assert labels(fusion) == ["make + use"]
    with pytest.raises(FusionError, match="names 'nope', which is no task of the pipeline"):
        fused(explicit, mode="explicit", groups=(("make", "nope"),))
    with pytest.raises(FusionError, match="stray neither reads from nor waits for an earlier "
                                          "member: members must be consecutive"):
        fused(explicit, mode="explicit", groups=(("make", "stray"),))
    with pytest.raises(FusionError, match="use runs between members"):
        fused(explicit, mode="explicit", groups=(("make", "c"),))


def test_explicit_groups_follow_the_hard_rules_and_report_their_cost() -> None:
    @pipeline(name="explicit-cost")
    def explicit() -> None:
        lone = loner(data=make().outputs["out"])
        train(data=lone.outputs["out"])

    with pytest.raises(FusionError, match="fuse=False"):
        fused(explicit, mode="explicit", groups=(("make", "loner"),))

    @pipeline(name="explicit-gpu")
    def moved() -> None:
        train(data=make().outputs["out"])

    plan, fusion = fused(moved, mode="explicit", groups=(("make", "train"),))
    assert labels(fusion) == ["make + train"]  # the user decided: reported, not refused
    assert "costs $1.285 per run more on gpu" in explain(fusion, plan, lambda g: g.label)


def read(doc: Any) -> FusionSettings:
    return read_fusion(ConfigReader({"fusion": doc} if doc is not None else {}, "c.yaml"))


def test_the_config_setting_in_every_form() -> None:
    assert read(None).mode == "auto" and read("auto").mode == "auto"
    assert read(False).mode == "off" and read("off").mode == "off"  # YAML reads off as false
    assert read([["a", "b"]]) == FusionSettings(mode="explicit", groups=(("a", "b"),),
                                                source="c.yaml")
    tuned = read({"mode": False, "durations": {"prep": 60}, "start_s": {"processing": 90},
                  "prices": {"ml.x": 2}, "assumed_duration_s": 10})
    assert tuned.mode == "off" and tuned.durations == {"prep": 60.0}
    assert tuned.start["processing"].seconds == 90 and tuned.prices["ml.x"].per_hour == 2
    assert dataclasses.replace(tuned, mode="auto").assumed_duration_s == 10
    for bad, message in ((["a"], "must be a list of lists"), ([["a"]], "has one task"),
                         ([["a", "b"], ["b", "c"]], "names task 'b' in two groups"),
                         ("sometimes", "use auto, off, or a list of groups"),
                         ({"mode": "explicit"}, "lists no group"),
                         ({"mode": "auto", "durations": {"x": -1}}, "must be >= 0")):
        with pytest.raises(ConfigError, match=message):
            read(bad)


def test_the_config_overrides_the_start_costs() -> None:
    settings = FusionSettings(start={"processing": StartCost(30, "mine")})
    cost = CostModel.of(START, PRICES, settings)
    assert cost.start_s("processing") == 30 and cost.start_s("training") == 116
    assert cost.duration("t", "c") == (3600.0, False)

"""Step fusion: which consecutive steps of a plan share one job on a cloud target.

On SageMaker every step is a job that takes about two minutes to start; on Kubeflow every step
is a driver and an executor pod. Fusion runs a chain of steps in one job (one Processing or
Training job; one container task), one member after the other, artifacts passing on local disk.
Every member stays its own step in the run record. The target says how it would run each step
alone (``Placement``: the kind of job, the instance class, what it cannot share) and what fits
in one job (``FusionTarget.fits``: the service's limits); this module decides, with the start
costs and prices of ``kubesage.plan.costs``. It knows no target.

A step joins the group of one of the steps it waits for (its producers, in plan order), when:

1. neither must run alone: a component declared ``@component(fuse=False)``, a step that sets
   retries (a retry would run the whole job again), or one its target cannot share (a
   SageMaker registration step is no job; a multi-node Kubeflow step is a TrainJob; a container
   component runs its own command line);
2. both run for the same loop item: never across a ``ParallelFor``'s items (each item's chain may
   fuse; N items stay N jobs), and never between a step inside a loop and one outside it;
3. both sit in the same ``Condition`` groups: **a condition splits a group**. The condition is
   decided between jobs, as the service decides it (SageMaker's ``ConditionStep``, Kubeflow's
   ``dsl.If``), so the service's own view of the run shows the branch, a skipped member is
   skipped by the service, and a step after the condition never reads outputs a job did not
   make. Steps inside one branch fuse with each other;
4. both run in the same image, with the same caching, and at most one of them is an anchor (a
   training job: the group becomes a training job on its instance type);
5. a multi-node anchor takes no steps before it (they would run on every host) and only
   single-process steps after it, which run after training on rank 0 (``train`` + ``evaluate``);
   a batch transform takes steps after its last job only;
6. the step waits for nothing the group does not already wait for (else the group's first member
   would be held back), and no step outside the group that reads from it would wait longer for
   the joining step than the start it saves;
7. the cost model accepts the instance class: moving a step onto a pricier class (a CPU step onto
   a GPU instance) costs ``duration x price difference``, which may not exceed the value of the
   start saved (its seconds at the group's instance price). A step without a duration estimate is
   assumed long (``assumed_duration_s``), so it is never moved onto a pricier class. A step that
   wants GPUs is never moved off its own instance class;
8. the group still fits one job of its target (inputs, channels, arguments).

Explicit groups (``fusion: [[preprocess, train, evaluate]]``) are checked against rules 1-5 and
8, and must be consecutive: each member after the first reads from (or waits for) an earlier
member, and no step outside the group runs between two members. Rules 6 and 7 are reported by
``--explain`` but do not refuse an explicit group: the user decided.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from kubesage.dsl.control import Condition, ParallelFor
from kubesage.dsl.errors import DefinitionError
from kubesage.plan.costs import CostModel, FusionSettings
from kubesage.plan.steps import Plan, Step


class FusionError(DefinitionError):
    """Explicit fusion groups that cannot run as one job (names the group, the rule, the fix)."""


@dataclass(frozen=True)
class Placement:
    """How a target runs one step alone."""

    job: str = ""  # the kind of job ("processing", "training", "task"); "" = no job to share
    instance: str = ""  # instance class it runs on alone
    starts: tuple[tuple[str, int], ...] = ()  # job kind -> how many jobs it starts alone
    pods: int = 0  # Kubernetes pods it starts alone (0: not Kubernetes)
    alone: str = ""  # why it must run alone ("" = it may share a job)
    anchor: bool = False  # a group with it becomes its kind of job, on its instance
    nodes: int = 1  # hosts of its job
    world_size: int = 1  # processes over all hosts
    leaders: bool = True  # may steps run before it in its job
    gpus: bool = False  # wants GPUs: never moved onto another instance class


class FusionTarget(Protocol):
    """What fusion asks of a target."""

    name: str

    def placement(self, step: Step) -> Placement:
        """How ``step`` runs alone."""
        ...  # pragma: no cover

    def fits(self, members: Sequence[Step]) -> str:
        """Why ``members`` (in order) do not fit one job of the target, or ""."""
        ...  # pragma: no cover


@dataclass(eq=False)
class Group:
    """Steps that run in one job, in order; a group of one is a step as it always was."""

    members: list[Step]
    placements: list[Placement]

    @property
    def first(self) -> Step:
        return self.members[0]

    @property
    def fused(self) -> bool:
        return len(self.members) > 1

    @property
    def anchor(self) -> Placement | None:
        return next((p for p in self.placements if p.anchor), None)

    @property
    def job(self) -> str:
        anchor = self.anchor
        return anchor.job if anchor else self.placements[0].job

    @property
    def label(self) -> str:
        return " + ".join(s.name for s in self.members)


@dataclass(frozen=True)
class Boundary:
    """Why ``consumer`` does not share the job of ``producer``, one of the steps it waits for."""

    producer: Step
    consumer: Step
    reason: str


@dataclass
class FusionPlan:
    """The groups of one plan on one target, the reasons for every boundary, the cost model."""

    target: str
    mode: str
    groups: list[Group]
    boundaries: list[Boundary]
    cost: CostModel
    placements: dict[int, Placement] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what --explain adds (explicit groups' costs)

    def group_of(self, step: Step) -> Group:
        return next(g for g in self.groups if any(m is step for m in g.members))

    @property
    def fused(self) -> list[Group]:
        return [g for g in self.groups if g.fused]


def plan_fusion(plan: Plan, target: FusionTarget, settings: FusionSettings,
                cost: CostModel) -> FusionPlan:
    """The groups of ``plan`` on ``target`` for the config's ``settings``."""
    placements = {id(s): target.placement(s) for s in plan.steps}
    result = FusionPlan(target.name, settings.mode, [], [], cost, placements)
    if settings.mode == "off":
        result.groups = [Group([s], [placements[id(s)]]) for s in plan.steps]
    elif settings.mode == "explicit":
        _explicit(plan, target, settings, result)
    else:
        _auto(plan, target, result)
    return result


# -- auto ---------------------------------------------------------------------------------
def _auto(plan: Plan, target: FusionTarget, result: FusionPlan) -> None:
    placements = result.placements
    graph = _Graph(plan, placements)
    reasons: dict[tuple[int, int], str] = {}  # (consumer, group) -> why not
    for step in plan.steps:
        joined = None
        for group in _producer_groups(step, result.groups):
            why = (_hard_rules(group, step, placements[id(step)])
                   or _timing_rules(group, step, graph, result.cost)
                   or _cost_rule(group, step, placements[id(step)], result.cost)[1]
                   or target.fits([*group.members, step]))
            if why:
                reasons[(id(step), id(group))] = why
                continue
            group.members.append(step)
            group.placements.append(placements[id(step)])
            joined = group
            break
        if joined is None:
            result.groups.append(Group([step], [placements[id(step)]]))
    _boundaries(plan, result, reasons)


def _producer_groups(step: Step, groups: list[Group]) -> list[Group]:
    """The groups of the steps ``step`` waits for, the one holding its latest producer first."""
    found: list[Group] = []
    for dep in reversed(step.deps):
        group = next((g for g in groups if any(m is dep for m in g.members)), None)
        if group is not None and group not in found:
            found.append(group)
    return found


def _boundaries(plan: Plan, result: FusionPlan, reasons: dict[tuple[int, int], str]) -> None:
    for step in plan.steps:
        own = result.group_of(step)
        for dep in step.deps:
            group = result.group_of(dep)
            if group is own:
                continue
            why = reasons.get((id(step), id(group)))
            if why is None:
                why = (f"{step.name} joined the job of {own.first.name}" if own.fused
                       and own.first is not step else f"{step.name} starts a job of its own")
            result.boundaries.append(Boundary(dep, step, why))


# -- the rules ----------------------------------------------------------------------------
def _scope(step: Step) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(id(g) for g in step.task.groups if isinstance(g, ParallelFor)), step.index


def _conditions(step: Step) -> list[str]:
    return [g.id for g in step.task.groups if isinstance(g, Condition)]


def alone_reason(step: Step, placement: Placement) -> str:
    """Why ``step`` never shares a job, or ""."""
    if not step.task.spec.fuse:
        return (f"{step.name} must run alone (component '{step.task.spec.name}' declares "
                "fuse=False)")
    if step.task.retries:
        return (f"{step.name} sets retries, and a retry would run every member of a shared job "
                "again")
    if placement.alone:
        return f"{step.name} must run alone: {placement.alone}"
    if not placement.job:
        return f"{step.name} is no job that steps can share"
    return ""


def _hard_rules(group: Group, step: Step, placement: Placement) -> str:
    """Rules 1-5: what no cost model can buy."""
    first = group.first
    for member, p in ((first, group.placements[0]), (step, placement)):
        why = alone_reason(member, p)
        if why:
            return why
    if _scope(step) != _scope(first):
        loops = [g.id for g in step.task.groups if isinstance(g, ParallelFor)]
        return (f"{step.name} runs per item of {', '.join(loops) or 'no loop'} and {first.name} "
                "does not run for the same item: a fan-out's items stay separate jobs")
    if _conditions(step) != _conditions(first):
        where = ", ".join(_conditions(step)) or "no condition"
        return (f"{step.name} sits in {where}, the job of {first.name} does not: a condition "
                "splits groups (it is decided between jobs, as the service decides it)")
    if step.task.spec.image != first.task.spec.image:
        return (f"{step.name} runs in image {step.task.spec.image}, the job of {first.name} in "
                f"{first.task.spec.image}")
    if step.task.cache != first.task.cache:
        return f"{step.name} and {first.name} differ in caching (cache=False on one of them)"
    return _anchor_rules(group, step, placement)


def _anchor_rules(group: Group, step: Step, placement: Placement) -> str:
    anchor = group.anchor
    if placement.anchor and anchor is not None:
        return (f"{step.name} is a {placement.job} job and the group already has one "
                f"({anchor.job}); one per job")
    if placement.anchor and not placement.leaders:
        why = ("its hosts would each run them" if placement.nodes > 1
               else "its job starts after jobs of its own")
        return f"{step.name} takes no steps before it in its job: {why}"
    if anchor is not None and anchor.nodes > 1 and placement.world_size > 1:
        return (f"{step.name} runs {placement.world_size} processes; after a multi-node step only "
                "single-process steps run, on rank 0")
    return ""


def _timing_rules(group: Group, step: Step, graph: _Graph, cost: CostModel) -> str:
    """Rule 6: joining holds nothing back for longer than the start it saves."""
    members = {id(m) for m in group.members}
    before = graph.ancestors[id(group.first)]
    for dep in step.deps:
        if id(dep) not in members and id(dep) not in before:
            return (f"{step.name} also waits for {dep.name}, which the job of {group.first.name} "
                    f"does not: joining would hold {group.first.name} back until {dep.name} ends")
    seconds, given = cost.duration(step.task.name, step.task.spec.name)
    saved = cost.start_s(_own_kind(group, step, graph))
    for member in group.members:
        for other in graph.consumers[id(member)]:
            if id(other) in members or other is step or id(step) in graph.ancestors[id(other)]:
                continue
            if seconds > saved:
                return (f"{other.name} reads from the job and would wait for {step.name} too "
                        f"({_seconds(seconds, given)}), longer than the {saved:.0f} s start "
                        "it saves")
    return ""


def _own_kind(group: Group, step: Step, graph: _Graph) -> str:
    placement = graph.placement_of(step)
    return group.job if placement.anchor else placement.job


def _seconds(seconds: float, given: bool) -> str:
    return f"about {seconds:.0f} s" if given else f"no duration estimate: assumed {seconds:.0f} s"


def group_instance(placements: Sequence[Placement], cost: CostModel) -> str:
    """The instance class a group runs on: its anchor's, else its priciest member's."""
    anchor = next((p for p in placements if p.anchor), None)
    if anchor is not None:
        return anchor.instance
    def per_hour(p: Placement) -> float:
        price = cost.price(p.instance)
        return price.per_hour if price is not None else -1.0

    return max(placements, key=per_hour).instance


def _cost_rule(group: Group, step: Step, placement: Placement,
               cost: CostModel) -> tuple[float, str]:
    """Rule 7: (extra dollars per run, why it is refused or "")."""
    members = [*group.members, step]
    placements = [*group.placements, placement]
    instance = group_instance(placements, cost)
    extra, why = moving_cost(members, placements, instance, cost)
    if why:
        return extra, why
    before, _ = moving_cost(group.members, group.placements,
                            group_instance(group.placements, cost), cost)
    price = cost.price(instance)
    kind = group.job if placement.anchor else placement.job
    value = cost.start_s(kind) * (price.per_hour if price else 0.0) / 3600
    if extra - before > value + 1e-9:
        return extra, (f"moving {_moved(members, placements, instance, cost)} onto {instance} "
                       f"costs ${extra - before:.3f} per run, more than the {cost.start_s(kind):.0f} "
                       f"s start it saves is worth there (${value:.3f})")
    return extra, ""


def moving_cost(members: Sequence[Step], placements: Sequence[Placement], instance: str,
                cost: CostModel) -> tuple[float, str]:
    """(dollars per run the members cost more on ``instance`` than on their own, why impossible)."""
    extra = 0.0
    target = cost.price(instance)
    for step, p in zip(members, placements, strict=True):
        if p.instance == instance:
            continue
        if p.gpus:
            return 0.0, f"{step.name} wants GPUs of its own instance class ({p.instance})"
        own = cost.price(p.instance)
        if own is None or target is None:
            missing = p.instance if own is None else instance
            return 0.0, (f"the cost model has no price for {missing}, so {step.name} is not moved "
                         f"between {p.instance} and {instance}; add fusion.prices.{missing}")
        if target.per_hour < own.per_hour:
            return 0.0, (f"{step.name} would move onto {instance}, a cheaper (smaller) class than "
                         f"its own {p.instance}")
        seconds, _ = cost.duration(step.task.name, step.task.spec.name)
        extra += seconds * (target.per_hour - own.per_hour) / 3600
    return extra, ""


def _moved(members: Sequence[Step], placements: Sequence[Placement], instance: str,
           cost: CostModel) -> str:
    parts = []
    for step, p in zip(members, placements, strict=True):
        if p.instance != instance:
            seconds, given = cost.duration(step.task.name, step.task.spec.name)
            parts.append(f"{step.name} ({_seconds(seconds, given)} on {p.instance})")
    return ", ".join(parts)


class _Graph:
    """Ancestors and consumers of every step of a plan."""

    def __init__(self, plan: Plan, placements: dict[int, Placement] | None = None) -> None:
        self.ancestors: dict[int, set[int]] = {}
        self.consumers: dict[int, list[Step]] = {id(s): [] for s in plan.steps}
        self._placements = placements or {}
        self._steps = {id(s): s for s in plan.steps}
        for step in plan.steps:  # dependency order
            found: set[int] = set()
            for dep in step.deps:
                found.add(id(dep))
                found |= self.ancestors[id(dep)]
                self.consumers[id(dep)].append(step)
            self.ancestors[id(step)] = found

    def placement_of(self, step: Step) -> Placement:
        return self._placements.get(id(step), Placement())

    def consumers_of_any(self, members: Sequence[Step]) -> list[Step]:
        """Every step that (transitively) waits for one of ``members``."""
        ids = {id(m) for m in members}
        return [s for sid, s in self._steps.items() if self.ancestors[sid] & ids and sid not in ids]


# -- explicit groups ----------------------------------------------------------------------
def _explicit(plan: Plan, target: FusionTarget, settings: FusionSettings,
              result: FusionPlan) -> None:
    graph = _Graph(plan, result.placements)
    taken: dict[int, Group] = {}
    for names in settings.groups:
        for members in _resolve(plan, names, settings):
            group = _checked_group(members, names, graph, target, result, settings)
            for member in members:
                taken[id(member)] = group
            result.groups.append(group)
    for step in plan.steps:
        if id(step) not in taken:
            result.groups.append(Group([step], [result.placements[id(step)]]))
    order = {id(s): i for i, s in enumerate(plan.steps)}
    result.groups.sort(key=lambda g: order[id(g.first)])
    _boundaries(plan, result, {})


def _resolve(plan: Plan, names: tuple[str, ...], settings: FusionSettings) -> list[list[Step]]:
    """The steps of a group, one list per loop item (a group inside a loop fuses per item)."""
    by_scope: dict[tuple[tuple[int, ...], tuple[int, ...]], list[Step]] = {}
    known = {s.task.name for s in plan.steps}
    for name in names:
        if name not in known:
            raise FusionError(
                f"{settings.source}: fusion group [{', '.join(names)}] names '{name}', which is no "
                f"task of the pipeline; its tasks are: {', '.join(sorted(known))}")
    if len(set(names)) != len(names):
        raise FusionError(f"{settings.source}: fusion group [{', '.join(names)}] names a task "
                          "twice; name each once")
    for step in plan.steps:
        if step.task.name in names:
            by_scope.setdefault(_scope(step), []).append(step)
    groups = list(by_scope.values())
    if any(len(g) != len(names) for g in groups):
        raise FusionError(
            f"{settings.source}: fusion group [{', '.join(names)}] mixes steps inside and outside "
            "a loop (or of different loops): a fan-out's items stay separate jobs; group the "
            "tasks of one loop body")
    return groups


def _checked_group(members: list[Step], names: tuple[str, ...], graph: _Graph,
                   target: FusionTarget, result: FusionPlan, settings: FusionSettings) -> Group:
    where = f"{settings.source}: fusion group [{', '.join(names)}]"
    group = Group([members[0]], [result.placements[id(members[0])]])
    inside = {id(m) for m in members}
    for step in members[1:]:
        placement = result.placements[id(step)]
        why = _hard_rules(group, step, placement)
        if not why and not any(id(d) in {id(m) for m in group.members} for d in step.deps):
            why = (f"{step.name} neither reads from nor waits for an earlier member: members "
                   "must be consecutive")
        if not why:
            between = [s for s in graph.consumers_of_any(group.members) if id(s) not in inside
                       and any(a == id(s) for a in graph.ancestors[id(step)])]
            if between:
                why = (f"{between[0].name} runs between members (after {group.first.name}, "
                       f"before {step.name}); add it to the group or split the group there")
        why = why or target.fits([*group.members, step])
        if why:
            raise FusionError(f"{where} cannot run as one job: {why}")
        group.members.append(step)
        group.placements.append(placement)
    extra, costly = _explicit_costs(group, result.cost)
    if costly:
        result.notes.append(f"{group.label}: {costly}")
    elif extra:
        result.notes.append(f"{group.label}: costs ${extra:.3f} per run more on "
                            f"{group_instance(group.placements, result.cost)}")
    return group


def _explicit_costs(group: Group, cost: CostModel) -> tuple[float, str]:
    instance = group_instance(group.placements, cost)
    return moving_cost(group.members, group.placements, instance, cost)



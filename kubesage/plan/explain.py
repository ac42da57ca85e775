"""What fusion changes, in numbers and words: ``kubesage compile --explain``.

Jobs (and pods) per run before and after, and the time spent waiting for starts along the
critical path: each job counts its start cost (``kubesage.plan.costs``), the longest chain of
waiting jobs is what a run waits at least, and the difference is the projected saving. Work
itself is the same fused or not (members run in one job, one after the other, as their
dependencies made them run anyway), so it is left out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kubesage.plan.fusion import FusionPlan, Group, group_instance
from kubesage.plan.steps import Plan


@dataclass(frozen=True)
class Projection:
    """A run's jobs, pods and critical-path start waiting, before and after fusion."""

    jobs_before: dict[str, int]
    jobs_after: dict[str, int]
    pods_before: int
    pods_after: int
    wait_before_s: float
    wait_after_s: float

    @property
    def saved_s(self) -> float:
        return self.wait_before_s - self.wait_after_s


def group_starts(group: Group) -> tuple[tuple[str, int], ...]:
    """The jobs a group starts: a single step's own; a fused group's anchor's, else one job."""
    if not group.fused:
        return group.placements[0].starts
    anchor = group.anchor
    return anchor.starts if anchor is not None else ((group.job, 1),)


def group_pods(group: Group) -> int:
    if not group.fused:
        return group.placements[0].pods
    anchor = group.anchor
    return anchor.pods if anchor is not None else max(p.pods for p in group.placements)


def project(fusion: FusionPlan, plan: Plan) -> Projection:
    """Counts and critical-path waiting for ``fusion``'s groups of ``plan``."""
    before: Counter[str] = Counter()
    for step in plan.steps:
        for kind, count in fusion.placements[id(step)].starts:
            before[kind] += count
    after: Counter[str] = Counter()
    for group in fusion.groups:
        for kind, count in group_starts(group):
            after[kind] += count
    singles = [Group([s], [fusion.placements[id(s)]]) for s in plan.steps]
    return Projection(
        dict(sorted(before.items())), dict(sorted(after.items())),
        sum(fusion.placements[id(s)].pods for s in plan.steps),
        sum(group_pods(g) for g in fusion.groups),
        _critical_wait(plan, singles, fusion), _critical_wait(plan, fusion.groups, fusion))


def _critical_wait(plan: Plan, groups: Sequence[Group], fusion: FusionPlan) -> float:
    """The longest chain of start costs through ``groups`` (in plan order)."""
    of = {id(m): g for g in groups for m in g.members}
    finish: dict[int, float] = {}
    for group in groups:  # a group's first member comes after every producer of the group
        waits = [finish[id(of[id(d)])] for m in group.members for d in m.deps
                 if of[id(d)] is not group and id(of[id(d)]) in finish]
        own = sum(fusion.cost.start_s(kind) * count for kind, count in group_starts(group))
        finish[id(group)] = max(waits, default=0.0) + own
    return max(finish.values(), default=0.0)


def explain(fusion: FusionPlan, plan: Plan, job_name: Callable[[Group], str],
            per: str = "run") -> str:
    """The text ``compile --explain`` prints: groups, boundaries, numbers, sources."""
    numbers = project(fusion, plan)
    lines = [f"fusion on {fusion.target}: {fusion.mode} (counts per {per})"]
    fused = fusion.fused
    lines.append(f"groups ({len(fused)}):" if fused else "groups: none (every step is a job of "
                 "its own)")
    for i, group in enumerate(fused, 1):
        instance = group_instance(group.placements, fusion.cost)
        kind = "task (one driver and one executor pod)" if group.job == "task" else \
            f"{group.job} job"
        lines.append(f"  {i}. {group.label} -> {job_name(group)}: one {kind}"
                     + (f" on {instance}" if instance else ""))
    if fusion.boundaries:
        lines.append("boundaries:")
        for b in fusion.boundaries:
            lines.append(f"  {b.producer.name} | {b.consumer.name}: {b.reason}")
    lines += [f"  note: {n}" for n in fusion.notes]
    lines.append("jobs: " + _counts(numbers.jobs_before, numbers.jobs_after))
    if numbers.pods_before:
        lines.append(f"pods: {numbers.pods_before} -> {numbers.pods_after}")
    lines.append(f"waiting for starts on the critical path: {numbers.wait_before_s:.0f} s -> "
                 f"{numbers.wait_after_s:.0f} s; projected saving {numbers.saved_s:.0f} s per {per}")
    refused = [b for b in fusion.boundaries if "costs $" in b.reason or "longer than" in b.reason]
    if refused:
        lines.append("not fused, it would cost more than it saves: "
                     + "; ".join(f"{b.producer.name} | {b.consumer.name}" for b in refused))
    lines.append("start costs: " + "; ".join(f"{kind} {c.seconds:.0f} s ({c.source})"
                                             for kind, c in sorted(fusion.cost.start.items())))
    used = sorted({p.instance for p in fusion.placements.values() if p.instance})
    prices = [f"{i} ${fusion.cost.prices[i].per_hour}/h ({fusion.cost.prices[i].source})"
              for i in used if i in fusion.cost.prices]
    if prices:
        lines.append("prices: " + "; ".join(prices))
    return "\n".join(lines) + "\n"


def _counts(before: dict[str, int], after: dict[str, int]) -> str:
    total = f"{sum(before.values())} -> {sum(after.values())}"
    kinds = sorted(set(before) | set(after))
    if len(kinds) <= 1:
        return total
    return total + " (" + ", ".join(f"{k} {before.get(k, 0)} -> {after.get(k, 0)}"
                                    for k in kinds) + ")"

"""The start-cost model fusion decides with: what a job's start costs, what an instance costs.

A cloud target starts every step as a job (SageMaker) or as pods (Kubeflow); the start takes
minutes on SageMaker and tens of seconds on Kubeflow, whatever the step's work. Each target
brings a table of start costs, every figure with its source (``StartCost``), and a price per
instance class; the target config can override both, and give each component an estimate of
its duration on the service (``FusionSettings``). Nothing here knows a target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

ASSUMED_DURATION_S = 3600.0  # a step without an estimate: assumed long (never moved to pricier)


@dataclass(frozen=True)
class StartCost:
    """Seconds from asking for a job (or pod) until its code runs, and where the figure is from."""

    seconds: float
    source: str


@dataclass(frozen=True)
class Price:
    """An instance class's price per hour, and where the figure is from."""

    per_hour: float
    source: str


@dataclass(frozen=True)
class FusionSettings:
    """What a target config says about fusion (``fusion:`` in ``config/kfp.yaml`` and
    ``config/sagemaker.yaml``): the mode, explicit groups, and overrides of the cost model."""

    mode: str = "auto"  # auto | off | explicit
    groups: tuple[tuple[str, ...], ...] = ()  # explicit: task names, in each group
    durations: Mapping[str, float] = field(default_factory=dict)  # task or component -> seconds
    start: Mapping[str, StartCost] = field(default_factory=dict)  # job kind -> start cost
    prices: Mapping[str, Price] = field(default_factory=dict)  # instance class -> price
    assumed_duration_s: float = ASSUMED_DURATION_S
    source: str = "(defaults)"  # the config file, for messages


MODES = ("auto", "off", "explicit")


@dataclass(frozen=True)
class CostModel:
    """A target's start costs and prices with the config's overrides, and the duration
    estimates: everything fusion weighs."""

    start: Mapping[str, StartCost]
    prices: Mapping[str, Price]
    durations: Mapping[str, float]
    assumed_duration_s: float = ASSUMED_DURATION_S

    @classmethod
    def of(cls, start: Mapping[str, StartCost], prices: Mapping[str, Price],
           settings: FusionSettings) -> CostModel:
        """The target's tables, overridden by ``settings``."""
        return cls({**start, **settings.start}, {**prices, **settings.prices},
                   dict(settings.durations), settings.assumed_duration_s)

    def start_s(self, kind: str) -> float:
        """Seconds one start of a job of ``kind`` costs (0 for a kind the table lacks)."""
        cost = self.start.get(kind)
        return cost.seconds if cost else 0.0

    def duration(self, task: str, component: str) -> tuple[float, bool]:
        """(estimated seconds on the service, whether it is an estimate the config gave)."""
        for name in (task, component):
            if name in self.durations:
                return float(self.durations[name]), True
        return self.assumed_duration_s, False

    def price(self, instance: str) -> Price | None:
        return self.prices.get(instance)

"""The ``fusion:`` setting of a cloud target's config (``config/kfp.yaml``, ``config/sagemaker.yaml``).

Three forms::

    fusion: auto                              # the default: kubesage finds the groups
    fusion: off                               # every step its own job: today's compiled files
    fusion: [[preprocess, train, evaluate]]   # these groups only (task names), checked

or a mapping, to tune the cost model ``auto`` decides with::

    fusion:
      mode: auto                   # auto | off | explicit (explicit needs groups)
      groups: [[train, evaluate]]
      durations: {preprocess: 60}  # estimated seconds on the service, per task or component
      start_s: {processing: 90}    # a job kind's start, overriding the target's table
      prices: {ml.g5.2xlarge: 1.515}   # an instance class's price per hour
      assumed_duration_s: 3600     # a step without an estimate is assumed to take this long
"""

from __future__ import annotations

from typing import Any

from kubesage.config.reader import ConfigReader
from kubesage.plan.costs import ASSUMED_DURATION_S, MODES, FusionSettings, Price, StartCost

_KEYS = ("mode", "groups", "durations", "start_s", "prices", "assumed_duration_s")


def read_fusion(r: ConfigReader) -> FusionSettings:
    """``fusion:`` of the config ``r`` reads (absent: ``auto``)."""
    value: Any = r.doc.get("fusion")
    if isinstance(value, bool):  # YAML 1.1 reads a bare off/on as false/true
        value = "auto" if value else "off"
    if value is None or isinstance(value, str):
        return FusionSettings(mode=_mode(r, value), source=r.path)
    if isinstance(value, list):
        return FusionSettings(mode="explicit", groups=_groups(r, value), source=r.path)
    if not isinstance(value, dict):
        raise r.fail("fusion", f"must be auto, off, a list of groups or a mapping, got {value!r}")
    f = r.child("fusion", known=_KEYS)
    if isinstance(f.doc.get("mode"), bool):  # mode: off
        f.doc["mode"] = "auto" if f.doc["mode"] else "off"
    groups = _groups(r, f.doc.get("groups") or [])
    mode = f.get("mode", str, False, "explicit" if groups else "auto", choices=MODES)
    if mode == "explicit" and not groups:
        raise f.fail("mode", "is explicit but 'fusion.groups' lists no group; add groups: "
                             "[[task-a, task-b]]")
    durations = f.child("durations", False)
    starts = f.child("start_s", False)
    prices = f.child("prices", False)
    where = f"{r.path} (fusion.%s)"
    return FusionSettings(
        mode=mode, groups=groups,
        durations={str(k): durations.get(k, float, least=0, example="60") for k in durations.doc},
        start={str(k): StartCost(starts.get(k, float, least=0, example="120"),
                                 where % "start_s") for k in starts.doc},
        prices={str(k): Price(prices.get(k, float, least=0, example="1.515"), where % "prices")
                for k in prices.doc},
        assumed_duration_s=f.get("assumed_duration_s", float, False, ASSUMED_DURATION_S, least=0),
        source=r.path)


def _mode(r: ConfigReader, value: str | None) -> str:
    if value is None:
        return "auto"
    if value not in ("auto", "off"):
        raise r.fail("fusion", f"is {value!r}; use auto, off, or a list of groups "
                               "([[preprocess, train]])")
    return value


def _groups(r: ConfigReader, value: Any) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or not all(
            isinstance(g, list) and g and all(isinstance(n, str) for n in g) for g in value):
        raise r.fail("fusion", f"groups must be a list of lists of task names, e.g. "
                               f"[[preprocess, train, evaluate]]; got {value!r}")
    seen: set[str] = set()
    for group in value:
        for name in group:
            if name in seen:
                raise r.fail("fusion", f"names task '{name}' in two groups; a task runs in one job")
            seen.add(name)
        if len(group) < 2:
            raise r.fail("fusion", f"group {group} has one task; a group fuses two or more")
    return tuple(tuple(g) for g in value)

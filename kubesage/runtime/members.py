"""Run the members of a fused job in order, in this process: what every contract shares.

A fused job (``kubesage.plan.fusion``) runs several components one after the other. Each member
gets its parameters (literal, or a value an earlier member returned), its input artifacts
(delivered by the target, or an earlier member's output folder, on local disk), its own output
folders, its own ``KUBESAGE_STEP`` and checkpoint folder, and reports its own result; a member
that raises ends the job, and the members after it do not run. Each contract says where things
are (``MemberRun``) and how a member's result is written (``report``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from kubesage.dsl.component import Component
from kubesage.dsl.types import coerce
from kubesage.runtime.context import CHECKPOINT_ENV, STEP_ENV, world
from kubesage.runtime.invoke import Invocation, Result, invoke

RETURN_PREFIX = "kubesage-return"  # one line per numeric returned value (SageMaker: a metric)
MEMBER_FLAG = "--member"  # starts a member's arguments in a fused processing job
MEMBERS_KEY = "kubesage.members"  # training: hyperparameter naming the members, in order
MEMBER_KEY = "kubesage.member."  # training: hyperparameter holding one member's layout (JSON)
MEMBERS_OUTPUT = "kubesage-members"  # processing: the one output holding every member's folder
RESULTS_DIR = ".kubesage-results"  # training: non-anchor members' results, in output/data
DONE_DIR = ".kubesage-done"  # training: a finished member's outputs, kept with the checkpoints


@dataclass
class MemberRun:
    """One member: what it is called with. ``from_returns`` maps a parameter to (member,
    returned value); ``from_outputs`` an input to (member, output)."""

    name: str
    component: Component[Any, Any]
    parameters: dict[str, Any] = field(default_factory=dict)
    from_returns: dict[str, tuple[str, str]] = field(default_factory=dict)
    inputs: dict[str, tuple[str, dict[str, Any]]] = field(default_factory=dict)
    from_outputs: dict[str, tuple[str, str]] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    checkpoint_dir: str = ""


@dataclass
class Done:
    """What a member left: its result, its output folders and when it ran."""

    result: Result
    outputs: dict[str, str]
    started: float
    ended: float

    def to_dict(self) -> dict[str, Any]:
        return {**self.result.to_dict(), "started": self.started, "ended": self.ended}


def result_of(doc: Mapping[str, Any]) -> Result:
    """A ``Result`` from a result file's document."""
    return Result(returns=dict(doc.get("returns", {})), artifacts=dict(doc.get("artifacts", {})),
                  metrics=dict(doc.get("metrics", {})), series=dict(doc.get("series", {})))


def return_line(member: str, name: str, value: Any) -> str | None:
    """The line a numeric returned value is printed as (None for other values)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return f"{RETURN_PREFIX} {member}.{name}={value!r}"


def return_regex(member: str, name: str) -> str:
    """The regular expression that reads ``return_line``'s value back (a metric definition)."""
    return rf"{RETURN_PREFIX} {re.escape(member)}\.{re.escape(name)}=([-+0-9.eE]+)"


def print_returns(member: str, result: Result) -> None:
    """Print a member's numeric returned values (``return_line``), for the job's metrics."""
    for name, value in sorted(result.returns.items()):
        line = return_line(member, name, value)
        if line:
            print(line, flush=True)


@contextlib.contextmanager
def member_env(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for one member; restore the process's afterwards."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def run_members(members: list[MemberRun], report: Callable[[MemberRun, Done], None],
                known: dict[str, Done] | None = None) -> dict[str, Done]:
    """Run ``members`` in order (those in ``known`` are done already and are skipped); each
    finished member is ``report``-ed before the next starts."""
    done = dict(known or {})
    for member in members:
        if member.name in done:
            continue
        call = invocation(member, done)
        env = {STEP_ENV: member.name, **member.env}
        if member.checkpoint_dir:
            env[CHECKPOINT_ENV] = member.checkpoint_dir
        print(f"kubesage: {member.name} started", flush=True)
        started = time.time()
        with member_env(env):
            result = invoke(member.component, call)
        finished = Done(result, dict(member.outputs), started, time.time())
        if world().is_main:
            print_returns(member.name, result)
        report(member, finished)
        done[member.name] = finished
        print(f"kubesage: {member.name} succeeded in {finished.ended - started:.1f}s", flush=True)
    return done


def invocation(member: MemberRun, done: Mapping[str, Done]) -> Invocation:
    """The member's call: its own values plus what earlier members returned and wrote."""
    spec = member.component.spec
    parameters = dict(member.parameters)
    for name, (source, returned) in member.from_returns.items():
        param = spec.parameter(name)
        value = done[source].result.returns[returned]
        parameters[name] = coerce(param.type, value) if param is not None else value
    inputs = dict(member.inputs)
    for name, (source, output) in member.from_outputs.items():
        earlier = done[source]
        inputs[name] = (earlier.outputs[output], earlier.result.artifacts.get(output, {}))
    return Invocation(parameters, inputs, dict(member.outputs))

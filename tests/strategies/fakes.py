"""In-memory stand-ins for a platform, its traffic layer and Prometheus, for driving every
strategy in-process: they keep state, check the calls against it, and remember what users
could have reached on the app's address after every change."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from tasks.analysis.prometheus import ProviderError
from tasks.errors import DeployFailed, TargetError
from tasks.routers.replicas import canary_replicas, share
from tasks.steps import Clock
from tasks.targets import InFlight, Role, TargetStatus, Version, Workload


class FakeClock:
    """Monotonic time that moves only when someone sleeps."""

    def __init__(self) -> None:
        self.t = 0.0

    def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)

    def clock(self) -> Clock:
        return Clock(sleep=self.sleep, monotonic=lambda: self.t,
                     now=lambda: datetime.fromtimestamp(1_800_000_000 + self.t, UTC))


@dataclass
class FakeWorkload:
    version: Version
    replicas: int
    on_app_address: bool


@dataclass
class FakeTarget:
    """The workloads of one app, by role, with the stable one's records."""

    replicas: int = 2
    workloads: dict[Role, FakeWorkload] = field(default_factory=dict)
    stable: Version | None = None
    previous: Version | None = None
    in_flight: InFlight | None = None
    broken: set[str] = field(default_factory=set)
    """Versions whose replicas never start: deploying them raises DeployFailed."""
    restore_fails: bool = False
    calls: list[str] = field(default_factory=list)
    exposure: list[dict[str, float]] = field(default_factory=list)
    """After every change: each version's share (percent) of the app's address."""

    @classmethod
    def running(cls, version: Version, replicas: int = 2) -> FakeTarget:
        target = cls(replicas=replicas, stable=version)
        target.workloads[Role.STABLE] = FakeWorkload(version, replicas, True)
        return target

    def _changed(self, call: str) -> None:
        self.calls.append(call)
        on_app = [w for w in self.workloads.values() if w.on_app_address and w.replicas]
        total = sum(w.replicas for w in on_app)
        shares: dict[str, float] = {}
        for w in on_app:
            shares[w.version.version] = shares.get(w.version.version, 0) + 100 * w.replicas / total
        self.exposure.append(shares)

    def max_share(self, version: Version) -> float:
        return max((e.get(version.version, 0.0) for e in self.exposure), default=0.0)

    def status(self) -> TargetStatus:
        main = self.workloads.get(Role.STABLE)
        return TargetStatus(
            exists=main is not None,
            current=main.version if main else None,
            stable=self.stable, previous=self.previous,
            desired_replicas=main.replicas if main else 0,
            running_replicas=main.replicas if main else 0,
            in_flight=self.in_flight,
            workloads=tuple(Workload(role, w.version, w.replicas, w.replicas,
                                     w.on_app_address and w.replicas > 0)
                            for role, w in self.workloads.items()),
        )

    def mark(self, in_flight: InFlight, restore_point: Version | None) -> None:
        self.in_flight, self.previous = in_flight, restore_point
        self.calls.append(f"mark {in_flight.version}")

    def _start(self, version: Version) -> None:
        if version.version in self.broken:
            raise DeployFailed(f"3 tasks of {version.version} failed to start")

    def run(self, role: Role, version: Version, replicas: int, progress, wait=True) -> None:
        on_app = role is not Role.PREVIEW
        self.workloads[role] = FakeWorkload(version, replicas, on_app)
        self._changed(f"run {role.value} {version.version} x{replicas}")
        if replicas:
            self._start(version)

    def watch(self, role: Role, version: Version) -> Workload:
        w = self.workloads[role]
        self._start(version)
        return Workload(role, w.version, w.replicas, w.replicas, w.on_app_address)

    def wait(self, role: Role, version: Version, progress, ready: int = 0) -> None:
        self.watch(role, version)

    def restore(self, to: Version, progress) -> None:
        if self.restore_fails:
            raise TargetError("the engine refused the update")
        self.workloads[Role.STABLE] = FakeWorkload(to, self.replicas, True)
        self._changed(f"restore {to.version}")

    def scale(self, role: Role, replicas: int, progress) -> None:
        w = self.workloads[role]
        w.replicas = replicas
        self._changed(f"scale {role.value} x{replicas}")
        if replicas:
            self._start(w.version)

    def set_app_address(self, role: Role, on: bool) -> None:
        self.workloads[role].on_app_address = on
        self._changed(f"address {role.value} {'on' if on else 'off'}")

    def remove(self, role: Role, progress) -> None:
        if self.workloads.pop(role, None) is not None:
            self._changed(f"remove {role.value}")

    def unmark(self, stable: Version | None) -> None:
        self.in_flight = None
        if stable is not None:
            self.stable = stable
        self.calls.append(f"unmark {stable.version if stable else '-'}")


class FakeRouter:
    """Replica-count shares and a switch, as the Swarm router does them."""

    def __init__(self, target: FakeTarget) -> None:
        self.target = target

    def set_weight(self, weight: int, progress) -> float:
        replicas = canary_replicas(weight, self.target.replicas)
        self.target.scale(Role.CANARY, replicas, progress)
        return share(replicas, self.target.replicas)

    def switch(self, to: Role, progress) -> None:
        if to is Role.PREVIEW:
            self.target.set_app_address(Role.PREVIEW, True)
            self.target.scale(Role.STABLE, 0, progress)
            return
        stable = self.target.workloads.get(Role.STABLE)
        if stable is not None and stable.replicas < self.target.replicas:
            self.target.scale(Role.STABLE, self.target.replicas, progress)
        preview = self.target.workloads.get(Role.PREVIEW)
        if preview is not None and preview.on_app_address:
            self.target.scale(Role.PREVIEW, 0, progress)


Answer = Callable[[str, int], float | None | Exception]
"""(version, how many times that version was asked before) -> a value, no data or an error."""


class ScriptedPrometheus:
    """Answers each query by the version it names: good versions 0.0, scripted others."""

    def __init__(self, script: dict[str, Answer] | None = None) -> None:
        self.script = script or {}
        self.asked: dict[str, int] = {}

    def query(self, promql: str, at: datetime) -> float | None:
        version = re.search(r'version="([^"]+)"', promql).group(1)
        n = self.asked.get(version, 0)
        self.asked[version] = n + 1
        answer = self.script.get(version, lambda v, i: 0.0)(version, n)
        if isinstance(answer, Exception):
            raise answer
        return answer


def always(value) -> Answer:
    return lambda version, n: value


def after(good: int, then) -> Answer:
    """`good` good answers, then `then` for ever."""
    return lambda version, n: 0.0 if n < good else then


DOWN = ProviderError("Prometheus at http://127.0.0.1:9090 unreachable (ConnectionError)")

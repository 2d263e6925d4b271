"""The toy platform's target and router: workloads by role in memory, with the stable one's
records; they check the calls against their state and remember, after every change, each
version's share of the app's address."""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.errors import DeployFailed, TargetError
from tasks.routers.replicas import canary_replicas, share
from tasks.targets import InFlight, Role, TargetStatus, Version, Workload


@dataclass
class ToyWorkload:
    version: Version
    replicas: int
    on_app_address: bool


@dataclass
class ToyTarget:
    """The workloads of one app, by role, with the stable one's records."""

    replicas: int = 2
    workloads: dict[Role, ToyWorkload] = field(default_factory=dict)
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
    def running(cls, version: Version, replicas: int = 2) -> ToyTarget:
        target = cls(replicas=replicas, stable=version)
        target.workloads[Role.STABLE] = ToyWorkload(version, replicas, True)
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
        self.workloads[role] = ToyWorkload(version, replicas, on_app)
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
        self.workloads[Role.STABLE] = ToyWorkload(to, self.replicas, True)
        self._changed(f"restore {to.version}")

    def scale(self, role: Role, replicas: int, progress) -> None:
        w = self.workloads[role]
        w.replicas = replicas
        self._changed(f"scale {role.value} x{replicas}")
        if replicas:
            self._start(w.version)

    def lead_address(self, to: Role) -> None:
        """The app's address to `to`'s workload alone (STABLE: back to the stable one)."""
        for role, workload in self.workloads.items():
            workload.on_app_address = role is to or (role is Role.CANARY and to is Role.STABLE)
        self._changed(f"address to {to.value}")

    def remove(self, role: Role, progress) -> None:
        if self.workloads.pop(role, None) is not None:
            self._changed(f"remove {role.value}")

    def unmark(self, stable: Version | None) -> None:
        self.in_flight = None
        if stable is not None:
            self.stable = stable
        self.calls.append(f"unmark {stable.version if stable else '-'}")


class ToyRouter:
    """The toy platform's router: replica-count shares, and a switch that moves the app's
    address between the stable and the preview workload in one step (its addresses are
    flags, so nothing restarts)."""

    def __init__(self, target: ToyTarget) -> None:
        self.target = target

    def set_weight(self, weight: int, progress) -> float:
        replicas = canary_replicas(weight, self.target.replicas)
        self.target.scale(Role.CANARY, replicas, progress)
        return share(replicas, self.target.replicas)

    def prepare(self, role: Role, progress) -> None:
        """A toy preview answers on an address of its own from the start."""

    def switch(self, to: Role, progress) -> None:
        self.target.lead_address(to)

    def clean_up(self, role: Role, progress) -> None:
        """The toy's addresses are its workloads' flags: they go with them."""

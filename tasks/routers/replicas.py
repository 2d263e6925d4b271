"""Traffic shares by replica counts: a canary of c replicas beside s stable ones gets about
c / (c + s) of requests when clients spread them over every replica (DNS round robin, a
Kubernetes Service). The math is pure, so the spec check and the routers agree on every
number; `give_share` is how every replica-count router sets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.errors import SpecError
from tasks.targets.base import Progress, Role

if TYPE_CHECKING:
    from tasks.targets.base import Target

TOLERANCE = 10.0
"""How far (in percentage points) a share may be from the weight asked: beyond it, the
spec is refused rather than quietly given another share."""


def canary_replicas(weight: int, stable: int) -> int:
    """Canary replicas beside `stable` ones closest to `weight` percent (at least one)."""
    if weight <= 0:
        return 0
    return max(1, round(weight * stable / (100 - weight)))


def share(canary: int, stable: int) -> float:
    """The canary's share of requests, in percent."""
    return 100.0 * canary / (canary + stable) if canary + stable else 0.0


def check_weights(weights: list[int], stable: int, where: str) -> None:
    """Raise SpecError, naming `where`, for a weight `stable` replicas cannot come near."""
    for weight in weights:
        canary = canary_replicas(weight, stable)
        got = share(canary, stable)
        if abs(got - weight) > TOLERANCE:
            shares = sorted({round(share(c, stable)) for c in range(1, 4 * stable + 1)})
            raise SpecError(
                f"{where}: weight {weight}% cannot be set by replica counts beside "
                f"{stable} stable replica(s): the nearest is {got:.0f}% ({canary} canary "
                f"replica(s)); shares within reach: {', '.join(f'{s}%' for s in shares[:8])}"
                " (more stable replicas give finer steps)"
            )


def give_share(target: Target, weight: int, address: str, progress: Progress) -> float:
    """Size the target's canary for about `weight` percent of `address`'s traffic and wait
    for it; returns the share it gets. A weight the stable size cannot come near is a
    SpecError (checked here too for targets whose size is only known from the platform)."""
    check_weights([weight], target.replicas, "strategy.steps")
    replicas = canary_replicas(weight, target.replicas)
    got = share(replicas, target.replicas)
    progress(f"canary at {got:.0f}% of {address}'s traffic: {replicas} "
             f"replica(s) beside {target.replicas} stable (asked {weight}%)")
    target.scale(Role.CANARY, replicas, progress)
    return got

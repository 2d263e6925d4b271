"""Traffic shares by replica counts: a canary of c replicas beside s stable ones gets about
c / (c + s) of requests when clients spread them over every replica (DNS round robin, a
Kubernetes Service). The math is pure, so the spec check and the routers agree on every
number; `canary_size` is what every replica-count router asks.
"""

from __future__ import annotations

from tasks.errors import SpecError

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


def canary_size(weight: int, stable: int, address: str) -> tuple[int, float, str]:
    """The canary replicas beside `stable` ones for about `weight` percent of `address`'s
    traffic, the share they give, and that in words. A weight the stable size cannot come
    near is a SpecError (checked here too for targets whose size only the platform knows)."""
    check_weights([weight], stable, "strategy.steps")
    replicas = canary_replicas(weight, stable)
    got = share(replicas, stable)
    return replicas, got, (f"canary at {got:.0f}% of {address}'s traffic: {replicas} "
                           f"replica(s) beside {stable} stable (asked {weight}%)")

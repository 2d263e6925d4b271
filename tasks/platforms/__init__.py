"""The platforms Ferryman releases to, one package each, and the table that names them.

`PLATFORMS` maps a spec's `target.kind` to its `Platform` row (tasks/platforms/base.py): the
spec's `target:` union, the Target and Router factories and the query variables all come from
it, so adding a platform is one package and one row (docs/ARCHITECTURE.md says how).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from tasks.errors import SpecError
from tasks.platforms import kubernetes, swarm
from tasks.platforms.base import Platform

if TYPE_CHECKING:
    from tasks.registries import RegistryAuth
    from tasks.routers.base import Router
    from tasks.targets.base import Target

PLATFORMS: dict[str, Platform] = {p.kind: p for p in (swarm.PLATFORM, kubernetes.PLATFORM)}
"""By `target.kind`. The spec's `target:` union is built from it when tasks.spec loads."""


class Placed(Protocol):
    """What the factories read of a release spec: the app, where it runs and its router."""

    app: str
    target: Any
    router: Any


def register(platform: Platform) -> None:
    """Add a platform at run time (a plug-in; the tests' toy platform). Its kind reaches the
    factories below; the spec's `target:` union, built at import, knows only the table's."""
    PLATFORMS[platform.kind] = platform


def platform_of(kind: str) -> Platform:
    """The row of `kind`; an unknown kind is an error that lists the known ones."""
    try:
        return PLATFORMS[kind]
    except KeyError:
        raise SpecError(f"target.kind: no platform {kind!r} (known: "
                        f"{', '.join(PLATFORMS)})") from None


def get_target(spec: Placed, auth: RegistryAuth | None = None, client=None) -> Target:
    """The app's Target on its spec's platform. `auth` lets the platform's nodes pull (Swarm;
    Kubernetes pods pull with the namespace's imagePullSecrets, as its own users' do)."""
    return platform_of(spec.target.kind).target(spec.app, spec.target, auth=auth, client=client)


def get_router(spec: Placed, target: Target) -> Router:
    """The router the spec names (`router.kind`, the platform's default when absent)."""
    platform = platform_of(spec.target.kind)
    kind = spec.router.kind or platform.default_router
    try:
        make = platform.routers[kind]
    except KeyError:
        raise SpecError(f"router.kind: no router {kind!r} on {platform.kind} (known: "
                        f"{', '.join(platform.routers)})") from None
    return make(target)

"""What a platform brings to Ferryman, as one row of the table in `tasks/platforms/__init__.py`.

A platform is one package under tasks/platforms/ (its spec model, its target, its routers and
their helpers) and one `Platform` row naming them; nothing outside the package knows its kind.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from tasks.routers.base import Router
from tasks.targets.base import Target


def no_defaults(target: dict, app: str) -> dict:
    """A platform whose `target:` keys need nothing from the rest of the spec."""
    return target


@dataclass(frozen=True)
class Platform:
    kind: str
    """The spec's `target.kind`."""
    spec: type[BaseModel]
    """The `target:` model; its `kind` field is `Literal[kind]`."""
    target: Callable[..., Target]
    """`target(app, settings, auth=None, client=None)`: the app's Target on this platform;
    `client` is the platform's API client (a fake in the fast tests)."""
    routers: Mapping[str, Callable[[Any], Router]]
    """By the spec's `router.kind`: each router made over the platform's Target."""
    declared_replicas: Callable[[Any], int | None]
    """The stable size the orchestration files give, None when only the platform knows it;
    raises SpecError naming the file's problem. Touches no platform."""
    query_variables: Callable[[Any], dict[str, str]]
    """What `${service}` and `${namespace}` stand for in a metric query."""
    with_defaults: Callable[[dict, str], dict] = no_defaults
    """The `target:` mapping with the keys it takes from the app's name filled in."""

    @property
    def default_router(self) -> str:
        """The router of a spec that names none: the row's first."""
        return next(iter(self.routers))

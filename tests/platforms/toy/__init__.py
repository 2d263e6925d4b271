"""A toy platform, defined only here: one package and one registration are all a platform
needs to run the strategies (docs/ARCHITECTURE.md). Its "API client" is its in-memory state
(`workloads.py`), which it hands out as its target."""

from __future__ import annotations

from typing import Literal

from tasks.fields import SpecModel
from tasks.platforms import register
from tasks.platforms.base import Platform
from tests.platforms.toy.workloads import ToyRouter, ToyTarget


class ToyTargetSpec(SpecModel):
    kind: Literal["toy"] = "toy"
    replicas: int = 2


def toy_target(app: str, settings: ToyTargetSpec, auth=None, client=None) -> ToyTarget:
    return client if client is not None else ToyTarget(replicas=settings.replicas)


def declared_replicas(settings: ToyTargetSpec) -> int:
    return settings.replicas


def query_variables(settings: ToyTargetSpec) -> dict[str, str]:
    return {"service": "toy", "namespace": ""}


PLATFORM = Platform(
    kind="toy", spec=ToyTargetSpec, target=toy_target, routers={"replicas": ToyRouter},
    declared_replicas=declared_replicas, query_variables=query_variables,
)
register(PLATFORM)

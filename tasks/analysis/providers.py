"""The metric providers by `analysis.provider.kind`: the spec's `provider:` union and the
factory are both read from `PROVIDERS`, so a second provider is one module and one row."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Union

from pydantic import BaseModel, Field

from tasks.analysis.base import MetricProvider, ProviderError
from tasks.analysis.prometheus import PrometheusProvider, PrometheusSpec

PROVIDERS: dict[str, tuple[type[BaseModel], Callable[[Any], MetricProvider]]] = {
    "prometheus": (PrometheusSpec, PrometheusProvider.of),
}
"""kind -> (its `analysis.provider` model, what makes the provider from it)."""

ProviderSpec = Annotated[
    Union[tuple(model for model, _ in PROVIDERS.values())],  # noqa: UP007 (from the table)
    Field(discriminator="kind"),
]
"""Where the measurements come from: one model per `analysis.provider.kind`."""


def provider_for(settings: Any) -> MetricProvider:
    """The provider an `analysis.provider` names; an unknown kind is an error, never a
    default."""
    try:
        _, make = PROVIDERS[settings.kind]
    except KeyError:
        raise ProviderError(f"analysis.provider.kind: no provider {settings.kind!r} "
                            f"(known: {', '.join(PROVIDERS)})") from None
    return make(settings)

"""What a traffic layer offers the strategies (Flagger's `router.Interface`).

The router decides who answers on the app's address: how big a share the canary gets, and
which role's workload the address leads to. Without a service mesh the share is set by
replica counts behind one name (`tasks/routers/replicas.py`).
"""

from __future__ import annotations

from typing import Protocol

from tasks.targets.base import Progress, Role


class Router(Protocol):
    """Who answers on the app's address, and on a preview's own address.

    A target runs a canary or a preview on no address of the app's: the router decides when
    and how each joins (a network alias, a Service's selector, a gateway's weights), so a
    second router for a platform changes no target and no strategy.
    """

    def prepare(self, role: Role, progress: Progress) -> None:
        """Give a role's new workload the address it is tried on before any user gets it
        (a preview's own address); called once it runs, before it is analysed."""
        ...

    def set_weight(self, weight: int, progress: Progress) -> float:
        """Give the canary about `weight` percent of the app's traffic (0: none); returns
        the share it really gets, in percent."""
        ...

    def switch(self, to: Role, progress: Progress) -> None:
        """Lead the app's address to `to`'s workload alone (blue-green): PREVIEW to switch
        to the new version, STABLE to switch back."""
        ...

    def clean_up(self, role: Role, progress: Progress) -> None:
        """Remove what the router made for `role` (a preview's Service); called before the
        role's workload goes. Nothing there is no error."""
        ...

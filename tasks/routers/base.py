"""What a traffic layer offers the strategies (Flagger's `router.Interface`).

The router decides who answers on the app's address: how big a share the canary gets, and
which role's workload the address leads to. Without a service mesh the share is set by
replica counts behind one name (`tasks/routers/replicas.py`).
"""

from __future__ import annotations

from typing import Protocol

from tasks.targets.base import Progress, Role


class Router(Protocol):
    def set_weight(self, weight: int, progress: Progress) -> float:
        """Give the canary about `weight` percent of the app's traffic (0: none); returns
        the share it really gets, in percent."""
        ...

    def switch(self, to: Role, progress: Progress) -> None:
        """Lead the app's address to `to`'s workload alone (blue-green): PREVIEW to switch
        to the new version, STABLE to switch back."""
        ...

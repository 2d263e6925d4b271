"""The Router seam: what a traffic layer offers the strategies (`base.py`), and the share math
of replica-count routing (`replicas.py`). Each platform's routers live in its package
(tasks/platforms/<kind>/); `tasks.platforms.get_router` builds the one a spec names."""

from __future__ import annotations

from tasks.routers.base import Router

__all__ = ["Router"]

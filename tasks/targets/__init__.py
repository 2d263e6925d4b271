"""The Target seam: what every platform's target offers the strategies (`base.py`) and the
release marks it keeps on the stable workload (`records.py`). The targets themselves live in
their platform's package (tasks/platforms/<kind>/target.py); `tasks.platforms.get_target`
builds one from a spec."""

from __future__ import annotations

from tasks.targets.base import InFlight, Progress, Role, Target, TargetStatus, Version, Workload

__all__ = ["InFlight", "Progress", "Role", "Target", "TargetStatus", "Version", "Workload"]

"""Release strategies, each written once over a Target and a Router: rolling, blue-green
and canary. `carry_out` runs one to its end: promoted, or restored and verified."""

from __future__ import annotations

from types import ModuleType

from tasks.analysis.decision import Decision, Verdict
from tasks.errors import DeployFailed, FerrymanError, SpecError
from tasks.releases import Outcome
from tasks.steps import mark
from tasks.strategies import blue_green, canary, rolling
from tasks.strategies.base import Aborted, Release, passed
from tasks.strategies.restore import Ending, restore_and_verify
from tasks.targets import InFlight

__all__ = ["Aborted", "Ending", "Release", "carry_out", "strategy_module"]

MODULES: dict[str, ModuleType] = {
    "rolling": rolling, "blue-green": blue_green, "canary": canary,
}
"""The module that runs each of the spec's `strategy.kind`s (tasks.spec.STRATEGIES)."""


def strategy_module(kind: str) -> ModuleType:
    """The module of a strategy kind; an unknown kind is an error, not a default."""
    try:
        return MODULES[kind]
    except KeyError:
        raise SpecError(f"strategy.kind: no strategy {kind!r}") from None


def carry_out(release: Release, in_flight: InFlight) -> Ending:
    """Mark the release on the stable workload, run its strategy, then promote the new
    version or restore the stable one and verify it.

    Whatever happens after the mark, the app ends on a judged version or the ending says
    what runs instead: a failed deploy, an abort, any error and even an interruption of the
    process (re-raised once the app is restored) all go through the restore.
    """
    strategy = strategy_module(release.spec.strategy.kind)
    if release.stable is None and strategy is not rolling:
        # Nothing to compare with or fall back to: a first install is a plain deploy.
        release.notes.append(f"first install: deployed directly instead of "
                             f"{release.spec.strategy.kind}")
        strategy = rolling
    release.step(mark, release.target, in_flight, release.stable)
    try:
        decision = strategy.run(release)
        if passed(decision):
            try:
                strategy.promote(release)
            except DeployFailed as e:
                decision = Decision(Verdict.ROLLBACK, f"promotion failed: {e}")
            else:
                said = [a for a in release.answers if a != decision.reason]
                return Ending(Outcome.PROMOTED, "; ".join([decision.reason, *said]))
    except DeployFailed as e:
        decision = Decision(Verdict.ROLLBACK, f"deploy failed: {e}")
    except Aborted as e:
        ending = restore_and_verify(release, Decision(Verdict.ROLLBACK, f"aborted: {e}"))
        aborted = ending.outcome is Outcome.ROLLED_BACK
        return Ending(Outcome.ABORTED if aborted else ending.outcome, ending.reason,
                      ending.restored)
    except FerrymanError as e:
        decision = Decision(Verdict.ROLLBACK, f"{e.__class__.__name__}: {e}")
    except BaseException as e:
        # Not ours (a Prefect API error, a bug, SIGTERM through Prefect's TerminationSignal,
        # Ctrl-C): restore first, then let it go on its way.
        restore_and_verify(release, Decision(Verdict.ROLLBACK, f"interrupted: {e!r}"))
        raise
    return restore_and_verify(release, decision)

"""How far a Deployment's rollout got, read from the objects the API returns (plain dicts).

Pure, so the rules are table-tested without a cluster: `rollout` is `kubectl rollout
status`'s rule for Deployments, `stuck_pods` says which new pods will not come up by
themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

PROGRESS_DEADLINE_EXCEEDED = "ProgressDeadlineExceeded"
"""The reason the Deployment controller gives its `Progressing` condition when a rollout
made no progress for `progressDeadlineSeconds`."""
STUCK_REASONS = ("CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull")
"""A container waiting for one of these will not start without a change: kubelet backs
off between tries of a crashing container or an image it cannot pull."""


@dataclass(frozen=True)
class Rollout:
    """A Deployment's rollout as `kubectl rollout status` reads it."""

    done: bool
    failed: bool
    message: str


def condition(deployment: dict, kind: str) -> dict | None:
    """The status condition of type `kind` (`Progressing`, `Available`), if any."""
    conditions = (deployment.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == kind), None)


def rollout(deployment: dict) -> Rollout:
    """`kubectl rollout status`'s rule: done once the controller saw the latest spec
    (observedGeneration >= generation) and every replica is updated and available with no
    old one left; failed when the `Progressing` condition says ProgressDeadlineExceeded."""
    name = deployment.get("metadata", {}).get("name", "?")
    status = deployment.get("status") or {}
    generation = deployment.get("metadata", {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return Rollout(False, False, f"{name}: waiting for the controller to see the change")
    progressing = condition(deployment, "Progressing")
    if progressing is not None and progressing.get("reason") == PROGRESS_DEADLINE_EXCEEDED:
        return Rollout(False, True, f"{name} exceeded its progress deadline: "
                                    f"{progressing.get('message', '')}".rstrip(": "))
    wanted = (deployment.get("spec") or {}).get("replicas", 1)
    replicas = status.get("replicas", 0)
    updated = status.get("updatedReplicas", 0)
    available = status.get("availableReplicas", 0)
    if updated < wanted:
        return Rollout(False, False, f"{name}: {updated} of {wanted} new replicas updated")
    if replicas > updated:
        return Rollout(False, False,
                       f"{name}: {replicas - updated} old replicas pending termination")
    if available < updated:
        return Rollout(False, False,
                       f"{name}: {available} of {updated} updated replicas available")
    return Rollout(True, False, f"{name}: rolled out")


def pod_ready(pod: dict) -> bool:
    """Ready (its readiness probe passes) and not on its way out."""
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    ready = next((c for c in (pod.get("status") or {}).get("conditions") or []
                  if c.get("type") == "Ready"), None)
    return ready is not None and ready.get("status") == "True"


def stuck_pods(pods: list[dict]) -> list[str]:
    """`pod: Reason: message` of each pod with a container that will not start by itself."""
    found = []
    for pod in pods:
        statuses = (pod.get("status") or {}).get("containerStatuses") or []
        for container in statuses:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in STUCK_REASONS:
                found.append(f"{pod['metadata']['name']}: {waiting['reason']}: "
                             f"{waiting.get('message', '')}".rstrip(": "))
    return found

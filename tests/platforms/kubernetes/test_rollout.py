"""`kubectl rollout status`'s rule and the pod states that end a deploy, on API objects."""

from __future__ import annotations

import pytest

from tasks.platforms.kubernetes.rollout import condition, pod_ready, rollout, stuck_pods


def deployment(generation=2, observed=2, replicas=3, status=None, conditions=()):
    return {
        "metadata": {"name": "demo", "generation": generation},
        "spec": {"replicas": replicas},
        "status": {"observedGeneration": observed, **(status or {}),
                   "conditions": list(conditions)},
    }


PROGRESSING = {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}
DEADLINE = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": 'ReplicaSet "demo-5d" has timed out progressing.'}
ALL_DONE = {"replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}


@pytest.mark.parametrize("case, expected_done, words", [
    (deployment(status=ALL_DONE, conditions=[PROGRESSING]), True, "rolled out"),
    # The controller has not seen the latest spec: nothing else counts yet, not even a
    # deadline it reported for the previous one.
    (deployment(generation=3, observed=2, status=ALL_DONE, conditions=[DEADLINE]), False,
     "waiting for the controller"),
    (deployment(status={"replicas": 3, "updatedReplicas": 1, "availableReplicas": 3}), False,
     "1 of 3 new replicas updated"),
    (deployment(status={"replicas": 4, "updatedReplicas": 3, "availableReplicas": 3}), False,
     "1 old replicas pending termination"),
    (deployment(status={"replicas": 3, "updatedReplicas": 3, "availableReplicas": 2}), False,
     "2 of 3 updated replicas available"),
    # No status at all yet: a Deployment just created.
    ({"metadata": {"name": "demo", "generation": 1}, "spec": {"replicas": 1}}, False,
     "waiting for the controller"),
    # Scaled to zero: nothing to wait for.
    (deployment(replicas=0, status={}), True, "rolled out"),
])
def test_rollout_follows_kubectl_rollout_status(case, expected_done, words):
    state = rollout(case)
    assert (state.done, state.failed) == (expected_done, False)
    assert words in state.message


def test_a_passed_progress_deadline_fails_the_rollout_with_the_controllers_message():
    state = rollout(deployment(status={"replicas": 3, "updatedReplicas": 1},
                               conditions=[{"type": "Available", "status": "True"}, DEADLINE]))
    assert state.failed and not state.done
    assert state.message == ('demo exceeded its progress deadline: ReplicaSet "demo-5d" has '
                             "timed out progressing.")


def test_condition_is_found_by_type():
    case = deployment(conditions=[{"type": "Available", "status": "True"}, PROGRESSING])
    assert condition(case, "Progressing") == PROGRESSING
    assert condition(case, "ReplicaFailure") is None
    assert condition({"metadata": {}}, "Progressing") is None


def pod(name, ready=True, waiting=None, deleting=False):
    metadata = {"name": name, **({"deletionTimestamp": "2026-11-27T00:00:00Z"} if deleting
                                 else {})}
    state = {"waiting": waiting} if waiting else {"running": {}}
    return {"metadata": metadata, "status": {
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [{"name": "app", "state": state}],
    }}


def test_a_pod_is_ready_when_its_condition_says_so_and_it_is_not_going():
    assert pod_ready(pod("a"))
    assert not pod_ready(pod("b", ready=False))
    assert not pod_ready(pod("c", deleting=True))
    assert not pod_ready({"metadata": {"name": "d"}, "status": {}})


@pytest.mark.parametrize("reason", ["CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull"])
def test_pods_that_will_not_start_by_themselves_are_named_with_the_reason(reason):
    pods = [pod("ok"), pod("slow", ready=False, waiting={"reason": "ContainerCreating"}),
            pod("bad", ready=False, waiting={"reason": reason, "message": "back-off 10s"})]
    assert stuck_pods(pods) == [f"bad: {reason}: back-off 10s"]


def test_no_pods_are_stuck_while_they_start():
    assert stuck_pods([pod("new", ready=False, waiting={"reason": "ContainerCreating"})]) == []

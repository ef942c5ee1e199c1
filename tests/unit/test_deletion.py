"""The deletion planner: what deleting a GPUCluster means at Together."""

from __future__ import annotations

import datetime
from typing import Any

from tests.factories import cluster_info, gpucluster_spec
from together_operator.gpucluster import deletion, plan
from together_operator.gpucluster.spec import GPUClusterSpec
from together_operator.together.models import GPUClusterInfo

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(seconds=60)
KEY = "fp-key"
WHO = plan.Incarnation("team-a", "train", "uid-0001", NOW - datetime.timedelta(days=1))


def spec(**overrides: Any) -> GPUClusterSpec:
    return gpucluster_spec(**overrides)


def cluster(cluster_id: str = "c-1", status: str = "Ready") -> GPUClusterInfo:
    return cluster_info(cluster_id=cluster_id, status=status)


def decide(
    desired: GPUClusterSpec,
    recorded: plan.Recorded,
    observed: plan.Observation | None = None,
    now: datetime.datetime = NOW,
    rivals: plan.Rivals | None = None,
) -> deletion.DeletionAction:
    return deletion.plan_deletion(
        desired,
        who=WHO,
        recorded=recorded,
        observed=observed,
        now=now,
        intent_grace=GRACE,
        rivals=rivals,
    )


def looked_at(cluster: GPUClusterInfo | None = None, **kwargs: Any) -> plan.Observation:
    return plan.Observation(cluster=cluster, fresh=True, key_fingerprint=KEY, **kwargs)


def test_orphan_releases_without_looking_at_together() -> None:
    action = decide(spec(deletionPolicy="Orphan"), plan.Recorded("c-1"))
    assert isinstance(action, deletion.Release)
    assert action.reason == "Orphaned"
    assert "c-1 is left running" in action.message


def test_orphan_never_names_a_cluster_it_does_not_know() -> None:
    nothing = decide(spec(deletionPolicy="Orphan"), plan.Recorded())
    assert isinstance(nothing, deletion.Release)
    assert (nothing.reason, "None" in nothing.message) == (None, False)
    unanswered = decide(spec(deletionPolicy="Orphan"), plan.Recorded(create_intent_at=NOW))
    assert isinstance(unanswered, deletion.Release)
    assert unanswered.reason == "Orphaned"
    assert "None" not in unanswered.message
    assert "if Together made the cluster" in unanswered.message


def test_nothing_created_releases_at_once() -> None:
    action = decide(spec(), plan.Recorded())
    assert isinstance(action, deletion.Release)
    assert action.reason is None


def test_a_known_cluster_is_looked_up_then_deleted() -> None:
    assert decide(spec(), plan.Recorded("c-1")) == deletion.LookUp("c-1")
    action = decide(spec(), plan.Recorded("c-1"), looked_at(cluster()))
    assert action == deletion.DeleteCluster("c-1")


def test_a_cluster_being_deleted_is_waited_for() -> None:
    action = decide(spec(), plan.Recorded("c-1"), looked_at(cluster(status="Deleting")))
    assert action == deletion.AwaitDeletion("c-1")


def test_gone_with_the_key_that_made_it_releases() -> None:
    recorded = plan.Recorded("c-1", key_fingerprint=KEY)
    action = decide(spec(), recorded, looked_at(None))
    assert isinstance(action, deletion.Release)
    assert action.reason == "Deleted"


def test_gone_for_another_key_is_not_proof() -> None:
    recorded = plan.Recorded("c-1", key_fingerprint="the-old-key")
    action = decide(spec(), recorded, looked_at(None))
    assert isinstance(action, plan.Stall)
    assert action.reason == "CredentialsChanged"
    assert "deletionPolicy: Orphan" in action.message


def test_an_unresolved_create_is_looked_for_by_name() -> None:
    intent = plan.Recorded(create_intent_at=NOW - datetime.timedelta(seconds=5))
    assert decide(spec(), intent) == deletion.LookUp(None)
    found = decide(spec(), intent, looked_at(same_name=[cluster("c-9")]))
    assert found == deletion.DeleteCluster("c-9")


def test_an_unresolved_create_not_listed_is_waited_out_with_the_create_grace() -> None:
    intent = plan.Recorded(create_intent_at=NOW - datetime.timedelta(seconds=45))
    action = decide(spec(), intent, looked_at(same_name=[]))
    assert action == deletion.AwaitCreate(15.0)
    later = decide(spec(), intent, looked_at(same_name=[]), now=NOW + GRACE)
    assert isinstance(later, deletion.Release)


def test_two_namesakes_of_an_unresolved_create_stall() -> None:
    intent = plan.Recorded(create_intent_at=NOW)
    twins = [cluster("c-1"), cluster("c-2")]
    action = decide(spec(), intent, looked_at(same_name=twins))
    assert isinstance(action, plan.Stall)
    assert action.reason == "AmbiguousClusterName"
    assert "c-1, c-2" in action.message


def test_a_later_cluster_id_cannot_redirect_the_deletion() -> None:
    action = decide(spec(clusterId="c-2"), plan.Recorded("c-1"))
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterIdConflict"


def test_after_its_own_accepted_delete_a_404_is_proof_whatever_the_key() -> None:
    # The key was rotated (or the Secret replaced) after Together accepted the DELETE.
    recorded = plan.Recorded("c-1", key_fingerprint="the-old-key", delete_accepted=True)
    action = decide(spec(), recorded, looked_at(None))
    assert isinstance(action, deletion.Release)
    assert action.reason == "Deleted"


def test_a_spec_cluster_id_never_adopted_is_left_alone() -> None:
    action = decide(spec(clusterId="c-7"), plan.Recorded())
    assert isinstance(action, deletion.Release)
    assert action.reason is None


def test_a_cluster_another_object_prevails_on_is_not_deleted() -> None:
    theirs = cluster("c-1")  # its name carries no tag of this object; the rival is older
    rival = plan.Rivals(claims=(plan.Claim("uid-older", NOW - datetime.timedelta(days=9), True),))
    action = decide(
        spec(), plan.Recorded("c-1", key_fingerprint=KEY), looked_at(theirs), rivals=rival
    )
    assert isinstance(action, deletion.Release)
    assert action.reason is None

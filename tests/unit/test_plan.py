"""The planner: one next action from (spec, what was recorded, what Together reports)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.factories import cluster_info, gpucluster_spec
from together_operator.gpucluster import plan
from together_operator.gpucluster.compare import differs
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GPUClusterSpec
from together_operator.together.models import GPUClusterInfo

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(seconds=60)
WHO = plan.Incarnation("team-a", "train", "uid-0001", NOW - datetime.timedelta(days=1))
OWN_NAME = f"team-a-train-{plan.incarnation_tag('uid-0001')}"


def spec(**overrides: Any) -> GPUClusterSpec:
    return gpucluster_spec(**{"numGpus": 16, **overrides})


def cluster(**overrides: Any) -> GPUClusterInfo:
    return cluster_info(**{"num_gpus": 16, **overrides})


def decide(
    desired: GPUClusterSpec,
    *,
    recorded: plan.Recorded | None = None,
    observed: plan.Observation | None = None,
    attempts: plan.Attempts | None = None,
    rivals: plan.Rivals | None = None,
    adoption_allowed: bool = False,
    now: datetime.datetime = NOW,
) -> plan.Action:
    return plan.plan_action(
        desired,
        who=WHO,
        recorded=recorded or plan.Recorded(),
        observed=observed or plan.Observation(fresh=True),
        now=now,
        intent_grace=GRACE,
        attempts=attempts,
        rivals=rivals,
        adoption_allowed=adoption_allowed,
    )


def test_nothing_exists_creates_under_a_name_only_this_incarnation_produces() -> None:
    action = decide(spec())
    assert isinstance(action, plan.Create)
    assert action.request.cluster_name == OWN_NAME
    twin = plan.Incarnation("team-a", "train", "uid-0002")  # deleted and applied again
    assert plan.desired_cluster_name(spec(), twin) != OWN_NAME
    # a-b/c and a/b-c shared the old default name; their tags tell them apart now.
    first = plan.desired_cluster_name(spec(), plan.Incarnation("a-b", "c", "uid-x"))
    second = plan.desired_cluster_name(spec(), plan.Incarnation("a", "b-c", "uid-y"))
    assert first != second
    assert plan.name_tag(OWN_NAME) == WHO.tag
    assert plan.name_tag("team-a-train") is None
    assert action.request.num_gpus == 16
    assert action.request.billing_type == "ON_DEMAND"


def test_a_long_cluster_name_keeps_its_tag() -> None:
    name = plan.desired_cluster_name(spec(clusterName="x" * 63), WHO)
    assert len(name) == plan.BASE_LENGTH + 1 + plan.TAG_LENGTH
    assert name.endswith(WHO.tag)


def test_create_request_leaves_operator_fields_out() -> None:
    desired = spec(
        credentialsSecretRef={"name": "key"},
        kubeconfigSecretName="kc",
        deletionPolicy="Orphan",
        addOns=[
            {"name": "dash", "addOnType": "headlamp", "config": {"headlamp": {"enabled": True}}}
        ],
    )
    body = plan.create_request(desired, "x").model_dump(mode="json", exclude_none=True)
    assert "credentials_secret_ref" not in body
    assert "deletion_policy" not in body
    assert body["add_ons"] == [
        {"name": "dash", "add_on_type": "headlamp", "config": {"headlamp": {"enabled": True}}}
    ]


def test_restart_after_post_adopts_instead_of_creating() -> None:
    recorded = plan.Recorded(create_intent_at=NOW - datetime.timedelta(seconds=5))
    found = cluster(status="WaitingForControlPlaneNodes", cluster_name=OWN_NAME)
    action = decide(spec(), recorded=recorded, observed=plan.Observation(same_name=[found]))
    assert isinstance(action, plan.Adopt)
    assert action.cluster.cluster_id == "c-1"
    assert not action.by_spec


def test_a_cluster_under_the_objects_own_name_is_its_own_even_without_an_intent() -> None:
    # The intent record was lost (status wiped, say): the name alone proves the creator.
    found = cluster(cluster_name=OWN_NAME)
    action = decide(spec(), observed=plan.Observation(same_name=[found]))
    assert isinstance(action, plan.Adopt)


def test_recent_unanswered_create_waits_instead_of_posting_again() -> None:
    recorded = plan.Recorded(create_intent_at=NOW - datetime.timedelta(seconds=5))
    action = decide(spec(), recorded=recorded)
    assert isinstance(action, plan.Wait)
    assert action.reason == "ConfirmingCreate"


def test_unanswered_create_older_than_grace_with_nothing_listed_creates_again() -> None:
    recorded = plan.Recorded(create_intent_at=NOW - GRACE - datetime.timedelta(seconds=1))
    assert isinstance(decide(spec(), recorded=recorded), plan.Create)


def test_two_clusters_with_our_name_stall_with_instructions() -> None:
    twins = [cluster(cluster_id="c-1"), cluster(cluster_id="c-2")]
    recorded = plan.Recorded(create_intent_at=NOW)
    action = decide(spec(), recorded=recorded, observed=plan.Observation(same_name=twins))
    assert isinstance(action, plan.Stall)
    assert action.reason == "AmbiguousClusterName"
    assert "c-1, c-2" in action.message
    assert "spec.clusterId" in action.message


def test_a_deleting_namesake_does_not_block_creation() -> None:
    deleting = [cluster(status="Deleting")]
    action = decide(spec(), observed=plan.Observation(same_name=deleting, fresh=True))
    assert isinstance(action, plan.Create)


def test_a_first_create_is_decided_on_the_shared_snapshot() -> None:
    """No intent was ever recorded, so no POST under the incarnation's name can have been
    sent: the cached List is enough, and a burst of creates costs no List."""
    action = decide(spec(), observed=plan.Observation(fresh=False))
    assert isinstance(action, plan.Create)
    assert action.request.cluster_name == OWN_NAME


def test_a_create_after_an_unanswered_one_is_never_decided_on_a_cached_list() -> None:
    unanswered = plan.Recorded(create_intent_at=NOW - GRACE - datetime.timedelta(seconds=1))
    cached = plan.Observation(fresh=False)
    assert isinstance(decide(spec(), recorded=unanswered, observed=cached), plan.LookAgain)
    fresh = plan.Observation(fresh=True)
    assert isinstance(decide(spec(), recorded=unanswered, observed=fresh), plan.Create)
    # ... while everything that is not a create is decided on the cached list as it is.
    found = plan.Observation(same_name=[cluster(cluster_name=OWN_NAME)], fresh=False)
    assert isinstance(decide(spec(), observed=found), plan.Adopt)


def test_the_grace_rule_is_one_rule() -> None:
    intent = plan.Recorded(create_intent_at=NOW - datetime.timedelta(seconds=45))
    assert plan.unresolved_create(intent, NOW, GRACE) == datetime.timedelta(seconds=15)
    assert plan.unresolved_create(intent, NOW + datetime.timedelta(seconds=15), GRACE) is None
    assert plan.unresolved_create(plan.Recorded("c-1", NOW), NOW, GRACE) is None
    assert plan.unresolved_create(plan.Recorded(), NOW, GRACE) is None


def test_backing_off_holds_actions_but_not_waits_or_stalls() -> None:
    backing_off = plan.Attempts(backing_off=True)
    held = decide(spec(), attempts=backing_off)
    assert isinstance(held, plan.Hold)
    assert isinstance(held.postponed, plan.Create)
    scale = decide(
        spec(numGpus=24),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=cluster()),
        attempts=backing_off,
    )
    assert isinstance(scale, plan.Hold)
    in_sync = decide(
        spec(),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=cluster()),
        attempts=backing_off,
    )
    assert isinstance(in_sync, plan.InSync)


def test_an_update_accepted_again_and_again_without_effect_stalls() -> None:
    known = {"recorded": plan.Recorded("c-1"), "observed": plan.Observation(cluster=cluster())}
    update = decide(spec(numGpus=24), **known)  # type: ignore[arg-type]
    assert isinstance(update, plan.Update)
    twice = plan.Attempts(accepted_updates={update.body: (plan.MAX_IDENTICAL_UPDATES - 1, NOW)})
    assert isinstance(decide(spec(numGpus=24), attempts=twice, **known), plan.Update)  # type: ignore[arg-type]
    limit = plan.Attempts(accepted_updates={update.body: (plan.MAX_IDENTICAL_UPDATES, NOW)})
    stalled = decide(spec(numGpus=24), attempts=limit, **known)  # type: ignore[arg-type]
    assert isinstance(stalled, plan.Stall)
    assert stalled.reason == "UpdateNotApplied"
    assert "numGpus" in stalled.message
    # Not for good: after a while the same update is tried once more (capacity may be back).
    later = NOW + datetime.timedelta(seconds=plan.STALLED_RETRY_SECONDS)
    again = decide(spec(numGpus=24), attempts=limit, now=later, **known)  # type: ignore[arg-type]
    assert isinstance(again, plan.Update)


def test_a_missing_cluster_asked_with_another_key_is_not_called_gone() -> None:
    recorded = plan.Recorded("c-1", key_fingerprint="old-key")
    other_key = plan.Observation(key_fingerprint="new-key")
    action = decide(spec(), recorded=recorded, observed=other_key)
    assert isinstance(action, plan.Stall)
    assert action.reason == "CredentialsChanged"
    same_key = plan.Observation(key_fingerprint="old-key")
    gone = decide(spec(), recorded=recorded, observed=same_key)
    assert isinstance(gone, plan.Stall)
    assert gone.reason == "ClusterGone"


def test_a_missing_cluster_is_looked_up_at_most_once_per_interval() -> None:
    assert plan.worth_looking_up(last_looked_at=0.0, now=100.0, interval=60.0)
    assert not plan.worth_looking_up(last_looked_at=50.0, now=100.0, interval=60.0)
    assert plan.worth_looking_up(last_looked_at=40.0, now=100.0, interval=60.0)


def test_in_sync_when_mutable_fields_match() -> None:
    action = decide(
        spec(), recorded=plan.Recorded("c-1"), observed=plan.Observation(cluster=cluster())
    )
    assert isinstance(action, plan.InSync)


def test_scaling_puts_only_the_fields_that_differ() -> None:
    desired = spec(numGpus=24, numPreemptibleGpus=8)
    action = decide(
        desired, recorded=plan.Recorded("c-1"), observed=plan.Observation(cluster=cluster())
    )
    assert isinstance(action, plan.Update)
    assert action.changed == ("numGpus", "numPreemptibleGpus")
    assert action.request.model_dump(exclude_none=True) == {
        "num_gpus": 24,
        "num_preemptible_gpus": 8,
    }


@pytest.mark.parametrize("state", ["WaitingForDataPlaneNodes", "InstallingDrivers", "Scheduled"])
def test_no_write_while_together_is_busy(state: str) -> None:
    action = decide(
        spec(numGpus=24),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=cluster(status=state)),
    )
    assert isinstance(action, plan.Wait)
    assert state in action.message


def test_cluster_gone_behind_our_back_stalls() -> None:
    action = decide(spec(), recorded=plan.Recorded("c-1"), observed=plan.Observation())
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterGone"


def adopt(
    cluster_state: GPUClusterInfo | None,
    rivals: plan.Rivals | None = None,
    allowed: bool = True,
) -> plan.Action:
    return decide(
        spec(clusterId="c-1"),
        observed=plan.Observation(cluster=cluster_state),
        rivals=rivals,
        adoption_allowed=allowed,
    )


def test_adoption_records_an_unclaimed_cluster_then_manages_it() -> None:
    action = adopt(cluster())
    assert isinstance(action, plan.Adopt)
    assert action.by_spec
    managed = decide(
        spec(clusterId="c-1", numGpus=8),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=cluster()),
    )
    assert isinstance(managed, plan.Update)


def test_adoption_with_the_shared_key_needs_the_operators_permission() -> None:
    action = adopt(cluster(), allowed=False)
    assert isinstance(action, plan.Stall)
    assert action.reason == "AdoptionNotAllowed"
    assert "c-1" not in action.message  # nothing about the cluster itself


def other(uid: str, *, recorded: bool, age_days: int = 2) -> plan.Claim:
    return plan.Claim(uid, NOW - datetime.timedelta(days=age_days), recorded)


@pytest.mark.parametrize(
    ("found", "rivals"),
    [
        (None, None),  # not there for this key
        (cluster(status="Deleting"), None),
        (cluster(), plan.Rivals(claims=(other("uid-b", recorded=True),))),  # someone's
        (cluster(), plan.Rivals(creator=other("uid-c", recorded=False))),  # created for another
        (
            cluster(),
            plan.Rivals(claims=(other("uid-d", recorded=False, age_days=9),)),
        ),  # asked first
    ],
    ids=["missing", "deleting", "recorded-by-another", "created-by-another", "asked-first"],
)
def test_adoption_refuses_alike_whatever_the_reason(
    found: GPUClusterInfo | None, rivals: plan.Rivals | None
) -> None:
    action = adopt(found, rivals)
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterNotAdoptable"
    refusal = adopt(None)
    assert isinstance(refusal, plan.Stall)
    assert action.message == refusal.message  # an object learns nothing from it


def test_of_two_objects_asking_for_one_cluster_the_older_adopts() -> None:
    younger = plan.Rivals(claims=(other("uid-young", recorded=False, age_days=0),))
    assert isinstance(adopt(cluster(), younger), plan.Adopt)


def test_a_recorded_cluster_another_object_prevails_on_is_not_managed() -> None:
    # Two objects record the same cluster (a forged status, say): the one whose tag the
    # cluster's name carries keeps it; the other stands back and touches nothing.
    theirs = cluster(cluster_name=f"team-b-x-{plan.incarnation_tag('uid-b')}")
    rival = plan.Rivals(claims=(other("uid-b", recorded=True, age_days=0),))
    action = decide(
        spec(numGpus=24),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=theirs),
        rivals=rival,
    )
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterClaimedElsewhere"
    ours = cluster(cluster_name=OWN_NAME)
    kept = decide(
        spec(numGpus=24),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=ours),
        rivals=rival,
    )
    assert isinstance(kept, plan.Update)


def test_prevailing_is_decided_the_same_way_by_every_claimant() -> None:
    older, younger = (
        other("uid-old", recorded=True, age_days=5),
        other("uid-new", recorded=True, age_days=1),
    )
    as_old = plan.Incarnation("n", "a", "uid-old", older.created_at)
    as_new = plan.Incarnation("n", "b", "uid-new", younger.created_at)
    adopted = cluster(cluster_name="someone-named-it")  # no tag: the older object keeps it
    assert plan.prevails(as_old, [younger], adopted)
    assert not plan.prevails(as_new, [older], adopted)
    created = cluster(cluster_name=f"x-{plan.incarnation_tag('uid-new')}")  # the creator keeps it
    assert plan.prevails(as_new, [older], created)
    assert not plan.prevails(as_old, [younger], created)


def test_unknown_together_status_is_tolerated() -> None:
    odd = cluster(status="SomethingNew")
    assert plan.is_transitional(odd)
    action = decide(
        spec(numGpus=24), recorded=plan.Recorded("c-1"), observed=plan.Observation(cluster=odd)
    )
    assert isinstance(action, plan.Wait)


def test_cluster_config_compares_by_value_not_by_omitted_defaults() -> None:
    observed = cluster(cluster_config={"load_balancer": "NONE", "jumphost_enabled": True})
    same = spec(clusterConfig={"loadBalancer": "NONE", "jumphostEnabled": True})
    assert isinstance(
        decide(same, recorded=plan.Recorded("c-1"), observed=plan.Observation(cluster=observed)),
        plan.InSync,
    )
    different = spec(clusterConfig={"loadBalancer": "TRAEFIK"})
    action = decide(
        different, recorded=plan.Recorded("c-1"), observed=plan.Observation(cluster=observed)
    )
    assert isinstance(action, plan.Update)
    assert action.changed == ("clusterConfig",)


def test_cluster_id_set_after_creating_another_cluster_is_refused() -> None:
    action = decide(
        spec(clusterId="c-2"),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=cluster(cluster_id="c-2")),
    )
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterIdConflict"
    assert "c-1" in action.message


def test_cluster_id_set_while_a_create_is_unresolved_waits_for_the_create_first() -> None:
    intent = plan.Recorded(create_intent_at=NOW)
    waiting = decide(spec(clusterId="c-2"), recorded=intent, observed=plan.Observation())
    assert isinstance(waiting, plan.Wait)
    assert waiting.reason == "ConfirmingCreate"
    # The create did reach Together: that cluster is this object's (clusterId cannot win).
    found = plan.Observation(same_name=[cluster(cluster_name=OWN_NAME)])
    assert isinstance(decide(spec(clusterId="c-2"), recorded=intent, observed=found), plan.Adopt)
    # It never did: forget it, so that the clusterId can be adopted next.
    late = NOW + GRACE + datetime.timedelta(seconds=1)
    gone = decide(
        spec(clusterId="c-2"), recorded=intent, observed=plan.Observation(fresh=True), now=late
    )
    assert isinstance(gone, plan.ForgetCreate)


def test_an_old_operators_unresolved_create_is_handed_to_a_person() -> None:
    action = decide(spec(), recorded=plan.Recorded(legacy_intent=True))
    assert isinstance(action, plan.Stall)
    assert action.reason == "LegacyCreateUnresolved"
    assert "'team-a-train'" in action.message


def test_cluster_id_equal_to_the_recorded_one_is_fine() -> None:
    action = decide(
        spec(clusterId="c-1"),
        recorded=plan.Recorded("c-1"),
        observed=plan.Observation(cluster=cluster()),
    )
    assert isinstance(action, plan.InSync)


def test_false_and_omitted_config_values_are_the_same() -> None:
    # A proto3 server leaves false / NONE out of its answer: that must not look like drift.
    observed = cluster(cluster_config={"load_balancer": "NONE"})
    quiet = spec(clusterConfig={"loadBalancer": "NONE", "jumphostEnabled": False})
    action = decide(
        quiet, recorded=plan.Recorded("c-1"), observed=plan.Observation(cluster=observed)
    )
    assert isinstance(action, plan.InSync)
    assert differs({"a": True}, {}) is True
    assert differs({"a": False}, {"a": True}) is True


def test_an_object_is_revisited_on_a_timer_only_when_no_change_would_wake_it() -> None:
    def revisit(reason: Reason, **kwargs: Any) -> float | None:
        timing: dict[str, Any] = {
            "backoff_remaining": 0.0,
            "grace_remaining": None,
            "recheck_seconds": 30.0,
            "foreign_secret_seconds": 60.0,
            **kwargs,
        }
        return plan.revisit_after(reason, **timing)

    assert revisit(Reason.CLUSTER_READY) is None  # the fleet observer wakes it on a change
    assert revisit(Reason.PROVISIONING) is None
    assert revisit(Reason.CLUSTER_GONE) is None  # a person acts through the spec: that wakes
    assert revisit(Reason.RATE_LIMITED, backoff_remaining=6.0) == 6.0
    grace = datetime.timedelta(seconds=12)
    assert revisit(Reason.CONFIRMING_CREATE, grace_remaining=grace) == 12.0
    assert revisit(Reason.CREDENTIALS_NOT_FOUND) == 30.0  # the Secret may appear any moment
    assert revisit(Reason.KUBECONFIG_SECRET_CONFLICT) == 60.0  # its owner may delete it
    assert revisit(Reason.UPDATE_NOT_APPLIED) == plan.STALLED_RETRY_SECONDS


def test_nothing_is_created_before_the_finalizer_is_on_the_object() -> None:
    """Deleted before kopf adds the finalizer, the object would vanish at once and leave its
    cluster behind: the create waits for it."""
    action = plan.plan_action(
        spec(),
        who=WHO,
        recorded=plan.Recorded(),
        observed=plan.Observation(fresh=True),
        now=NOW,
        intent_grace=GRACE,
        finalized=False,
    )
    assert isinstance(action, plan.Wait)
    assert action.reason == "WaitingForFinalizer"

"""The planner: one next action from (spec, what was recorded, what Together reports)."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from tests.factories import cluster_info, gpucluster_spec
from together_operator.gpucluster import plan
from together_operator.gpucluster.reasons import Reason
from together_operator.gpucluster.spec import GPUClusterSpec
from together_operator.together.models import GPUClusterInfo

NOW = datetime.datetime(2026, 11, 22, 12, 0, tzinfo=datetime.UTC)
GRACE = datetime.timedelta(seconds=60)


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
) -> plan.Action:
    return plan.plan_action(
        desired,
        namespace="team-a",
        name="train",
        recorded=recorded or plan.Recorded(),
        observed=observed or plan.Observation(fresh=True),
        now=NOW,
        intent_grace=GRACE,
        attempts=attempts,
    )


def test_nothing_exists_creates_with_the_deterministic_name() -> None:
    action = decide(spec())
    assert isinstance(action, plan.Create)
    assert action.request.cluster_name == "team-a-train"
    assert action.request.num_gpus == 16
    assert action.request.billing_type == "ON_DEMAND"


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
    found = cluster(status="WaitingForControlPlaneNodes")
    action = decide(spec(), recorded=recorded, observed=plan.Observation(same_name=[found]))
    assert isinstance(action, plan.Adopt)
    assert action.cluster.cluster_id == "c-1"


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


def test_foreign_cluster_with_our_name_is_not_adopted_silently() -> None:
    action = decide(spec(), observed=plan.Observation(same_name=[cluster()]))
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterNameTaken"
    assert "spec.clusterId: c-1" in action.message


def test_a_deleting_namesake_does_not_block_creation() -> None:
    deleting = [cluster(status="Deleting")]
    action = decide(spec(), observed=plan.Observation(same_name=deleting, fresh=True))
    assert isinstance(action, plan.Create)


def test_a_create_is_never_decided_on_a_cached_list() -> None:
    assert isinstance(decide(spec(), observed=plan.Observation(fresh=False)), plan.LookAgain)
    # ... while everything that is not a create is decided on the cached list as it is.
    taken = plan.Observation(same_name=[cluster()], fresh=False)
    assert isinstance(decide(spec(), observed=taken), plan.Stall)


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
    twice = plan.Attempts(accepted_updates={update.body: plan.MAX_IDENTICAL_UPDATES - 1})
    assert isinstance(decide(spec(numGpus=24), attempts=twice, **known), plan.Update)  # type: ignore[arg-type]
    limit = plan.Attempts(accepted_updates={update.body: plan.MAX_IDENTICAL_UPDATES})
    stalled = decide(spec(numGpus=24), attempts=limit, **known)  # type: ignore[arg-type]
    assert isinstance(stalled, plan.Stall)
    assert stalled.reason == "UpdateNotApplied"
    assert "numGpus" in stalled.message


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


def test_adoption_of_unknown_id_says_so() -> None:
    action = decide(spec(clusterId="nope"), observed=plan.Observation())
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterNotFound"


def test_adoption_by_spec_cluster_id_updates_to_the_spec() -> None:
    action = decide(spec(clusterId="c-1", numGpus=8), observed=plan.Observation(cluster=cluster()))
    assert isinstance(action, plan.Update)
    assert action.cluster_id == "c-1"


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


def test_cluster_id_set_while_a_create_is_unresolved_is_refused() -> None:
    action = decide(
        spec(clusterId="c-2"),
        recorded=plan.Recorded(create_intent_at=NOW),
        observed=plan.Observation(cluster=cluster(cluster_id="c-2")),
    )
    assert isinstance(action, plan.Stall)
    assert action.reason == "ClusterIdConflict"


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
    assert plan.differs({"a": True}, {}) is True
    assert plan.differs({"a": False}, {"a": True}) is True


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

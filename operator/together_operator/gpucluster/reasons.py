"""Every reason the operator gives, in one block: condition reasons, event reasons, metrics labels.

A reason is a CamelCase word a person can search for in the README's troubleshooting section.
Together's errors name their own reason (``TogetherError.reason``); the members for them are
taken from the error classes, so the two cannot drift apart.
"""

from __future__ import annotations

from enum import StrEnum

from together_operator.together import errors


class Reason(StrEnum):
    """Why a condition is what it is, or why an event was posted."""

    # Together's view of the cluster, when the spec and Together agree.
    CLUSTER_READY = "ClusterReady"
    PROVISIONING = "Provisioning"
    CLUSTER_PAUSED = "ClusterPaused"
    CLUSTER_DEGRADED = "ClusterDegraded"

    # The operator is moving Together towards the spec.
    CREATING = "Creating"
    CREATED = "Created"
    ADOPTED = "Adopted"
    UPDATING = "Updating"
    UPDATING_ADD_ONS = "UpdatingAddOns"
    WAITING_FOR_STABLE_CLUSTER = "WaitingForStableCluster"
    CONFIRMING_CREATE = "ConfirmingCreate"
    WAITING_FOR_TOGETHER = "WaitingForTogether"
    WAITING_FOR_FINALIZER = "WaitingForFinalizer"
    DELETING = "Deleting"
    DELETED = "Deleted"
    ORPHANED = "Orphaned"
    KUBECONFIG_WRITTEN = "KubeconfigWritten"

    # A person must act (Stalled=True).
    INVALID_SPEC = "InvalidSpec"
    NO_CREDENTIALS = "NoCredentials"
    CREDENTIALS_NOT_FOUND = "CredentialsNotFound"
    CREDENTIALS_CHANGED = "CredentialsChanged"
    CLUSTER_ID_CONFLICT = "ClusterIdConflict"
    CLUSTER_GONE = "ClusterGone"
    CLUSTER_DELETING = "ClusterDeleting"
    AMBIGUOUS_CLUSTER_NAME = "AmbiguousClusterName"
    ADOPTION_NOT_ALLOWED = "AdoptionNotAllowed"
    CLUSTER_NOT_ADOPTABLE = "ClusterNotAdoptable"
    CLUSTER_CLAIMED = "ClusterClaimedElsewhere"
    LEGACY_CREATE_UNRESOLVED = "LegacyCreateUnresolved"
    UPDATE_NOT_APPLIED = "UpdateNotApplied"
    ADD_ON_TYPE_CONFLICT = "AddOnTypeConflict"
    KUBECONFIG_SECRET_CONFLICT = "KubeconfigSecretConflict"
    INVALID_KUBECONFIG = "InvalidKubeconfig"

    # Together answered with an error (the error classes name these).
    UNAUTHORIZED = errors.Unauthorized.reason
    FORBIDDEN = errors.Forbidden.reason
    INVALID_REQUEST = errors.InvalidRequest.reason
    NOT_FOUND = errors.NotFound.reason
    CONFLICT = errors.Conflict.reason
    OUT_OF_STOCK = errors.OutOfStock.reason
    RATE_LIMITED = errors.RateLimited.reason
    TOGETHER_UNAVAILABLE = errors.ServerError.reason
    INVALID_RESPONSE = errors.InvalidResponse.reason
    TOGETHER_UNREACHABLE = errors.TransportError.reason

    # Node health (the NodesHealthy condition, and events).
    NODES_HEALTHY = "NodesHealthy"
    NO_REMEDIATION_OPEN = "NoRemediationOpen"
    REMEDIATION_NEEDS_APPROVAL = "RemediationNeedsApproval"
    REMEDIATION_FAILED = "RemediationFailed"
    HEALTH_ALERTS_FIRING = "HealthAlertsFiring"
    REMEDIATING = "Remediating"
    HEALTH_CHECK_FAILED = "HealthCheckFailed"
    HEALTH_ALERT_FIRING = "HealthAlertFiring"
    HEALTH_ALERT_RESOLVED = "HealthAlertResolved"
    REMEDIATION = "Remediation"

    # The "nothing wrong" reasons of the Synced, Reconciling and Stalled conditions.
    SYNCED = "Synced"
    SETTLED = "Settled"
    NOT_STALLED = "NotStalled"


def reason_of(error: errors.TogetherError) -> Reason:
    """The reason for a Together error."""
    return Reason(error.reason)

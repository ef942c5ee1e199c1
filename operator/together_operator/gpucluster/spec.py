"""The GPUCluster custom resource: spec and status models, the single source of the CRD schema.

Field names are Together's create fields in camelCase (see the brief). Every field carries a
description, which becomes `kubectl explain` text. Validation that the API server can do
(enums, multiples of 8, cross-field rules, immutability) is declared here and rendered into
the CRD by :mod:`together_operator.gpucluster.crd`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, JsonValue
from pydantic.alias_generators import to_camel

from together_operator.together.models import (
    AddOnType,
    BillingType,
    ClusterType,
    GpuType,
    LoadBalancer,
)

GROUP = "compute.together.ai"
VERSION = "v1alpha1"
KIND = "GPUCluster"
PLURAL = "gpuclusters"
SINGULAR = "gpucluster"
SHORT_NAMES = ["tgc"]
CATEGORIES = ["together"]
FINALIZER = f"{GROUP}/finalizer"


class CamelModel(BaseModel):
    """snake_case in Python, camelCase in Kubernetes; unknown fields are kept out."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_k8s(self) -> dict[str, Any]:
        """The camelCase form, without unset optional fields."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class DeletionPolicy(StrEnum):
    DELETE = "Delete"
    ORPHAN = "Orphan"


def gpu_count(description: str) -> Any:
    """An optional GPU count: a non-negative multiple of 8."""
    return Field(default=None, ge=0, multiple_of=8, description=description)


class SharedVolumeSpec(CamelModel):
    """A shared volume created together with the cluster."""

    volume_name: str = Field(min_length=1, description="Name of the shared volume to create.")
    size_tib: int = Field(ge=1, description="Size of the shared volume in whole TiB.")


class OidcConfigSpec(CamelModel):
    """OIDC authentication for the tenant cluster's API server."""

    issuer_url: str = Field(description="OIDC issuer URL, e.g. https://accounts.google.com.")
    client_id: str = Field(description="OIDC client ID.")
    username_claim: str = Field(description="JWT claim used as the user name, e.g. sub or email.")
    username_prefix: str = Field(description="Prefix added to user names, e.g. 'oidc:'.")
    group_claim: str = Field(description="JWT claim holding the user's groups, e.g. groups.")
    group_prefix: str = Field(description="Prefix added to group names, e.g. 'oidc:'.")
    ca_cert: str | None = Field(
        default=None, description="PEM CA certificate of the issuer, when it uses a private CA."
    )


class EnabledFlag(CamelModel):
    """A feature switch."""

    enabled: bool | None = Field(default=None, description="Whether the feature is enabled.")


class SlurmStartupScripts(CamelModel):
    """Optional Slurm lifecycle scripts."""

    worker_prolog: str | None = Field(default=None, description="Worker node prolog script.")
    worker_epilog: str | None = Field(default=None, description="Worker node epilog script.")
    controller_prolog: str | None = Field(default=None, description="Controller prolog script.")
    controller_epilog: str | None = Field(default=None, description="Controller epilog script.")
    login_init_script: str | None = Field(default=None, description="Login node init script.")
    nodeset_init_script: str | None = Field(default=None, description="Nodeset init script.")
    extra_slurm_conf: str | None = Field(
        default=None, description="Additional slurm.conf fragments."
    )


class ClusterConfigSpec(CamelModel):
    """Tenant cluster configuration (mutable)."""

    load_balancer: LoadBalancer = Field(
        default=LoadBalancer.NONE, description="Load balancer installed in the tenant cluster."
    )
    kubernetes_dashboard_enabled: bool | None = Field(
        default=None, description="Install the Kubernetes dashboard."
    )
    jumphost_enabled: bool | None = Field(default=None, description="Provision a jump host.")
    slurm_startup_scripts: SlurmStartupScripts | None = Field(
        default=None, description="Slurm lifecycle scripts (Slurm clusters only)."
    )
    ingress: EnabledFlag | None = Field(default=None, description="Ingress for the cluster.")
    observability: EnabledFlag | None = Field(
        default=None, description="Observability stack for the cluster."
    )
    gpu_operator_version: str | None = Field(
        default=None, description="NVIDIA GPU Operator version, e.g. v24.6.2; service default."
    )
    network_operator_version: str | None = Field(
        default=None, description="NVIDIA Network Operator version, e.g. v24.7.0."
    )
    ssh_ca_enabled: bool | None = Field(
        default=None, description="Use a per-cluster SSH CA for OIDC-signed SSH access."
    )


class AddOnSpec(CamelModel):
    """An add-on enabled on the cluster."""

    name: str = Field(
        min_length=1, max_length=63, description="Name of this add-on instance (unique)."
    )
    add_on_type: AddOnType = Field(
        description="Type of add-on: dashboard, ingress, torchpass, headlamp or slurm_web.",
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description="Add-on configuration, as Together's AddOnConfig "
        "(e.g. {headlamp: {enabled: true}}).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class SecretKeyRef(CamelModel):
    """A key in a Secret in the GPUCluster's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field(default="apiKey", min_length=1, description="Key within the Secret.")


@dataclass(frozen=True)
class TogetherField:
    """Marks a spec field that is sent to Together on create.

    ``updatable`` fields can be changed in place (a merge-PUT); the others are create-only,
    and the CRD makes them immutable. This marker is the one declaration of mutability: the
    CEL rules, :data:`IMMUTABLE_FIELDS` and the update diff are all derived from it.
    """

    updatable: bool = False
    #: The ``GPUClusterInfo`` attribute holding Together's value, where it is named otherwise.
    observed_as: str | None = None


@dataclass(frozen=True)
class OperatorField:
    """Marks a spec field the operator acts on itself; never sent to Together."""


CREATE_ONLY = TogetherField()
UPDATABLE = TogetherField(updatable=True)
OPERATOR = OperatorField()


def _unchanged(field: str) -> str:
    return (
        f"has(self.{field}) == has(oldSelf.{field}) && "
        f"(!has(self.{field}) || self.{field} == oldSelf.{field})"
    )


def immutability_rule(fields: Sequence[str]) -> JsonValue:
    """One rule for every create-only field, naming in its message each one that changed.

    One rule, opened by ``self == oldSelf``: the API server evaluates the spec's rules on
    every write, status writes included, and one rule per field (22 of them) halved the rate
    of status writes it could take. A status write leaves the spec as it was, so this costs
    one comparison there."""
    # Strings and numbers only in the message: lists (and join) exceed the API server's
    # estimated cost budget for a rule.
    names = " + ".join(f"(({_unchanged(f)}) ? '' : 'spec.{f} ')" for f in fields)
    count = " + ".join(f"(({_unchanged(f)}) ? 0 : 1)" for f in fields)
    return {
        "rule": "self == oldSelf || (" + " && ".join(f"({_unchanged(f)})" for f in fields) + ")",
        "messageExpression": f"{names} + (({count}) == 1 ? 'is immutable: Together cannot "
        "change it' : 'are immutable: Together cannot change them') + ' in place; create a new "
        "GPUCluster instead'",
    }


# Cross-field rules the Together API would enforce, checked at `kubectl apply` instead. Only
# rules the contract states: where it is silent, the CRD must not reject what Together may
# accept (so no "RESERVED needs durationDays", no "preemptible GPUs not above numGpus").
CROSS_FIELD_RULES: list[JsonValue] = [
    {
        "rule": "self.clusterType != 'SLURM' || has(self.slurmShmSizeGib)",
        "message": "spec.slurmShmSizeGib is required when clusterType is SLURM",
    },
    {
        "rule": "self.clusterType == 'SLURM' || (!has(self.slurmShmSizeGib) && "
        "!has(self.slurmImage))",
        "message": "spec.slurmShmSizeGib and spec.slurmImage apply only to SLURM clusters",
    },
    {
        "rule": "self.billingType != 'SCHEDULED_CAPACITY' || "
        "(has(self.reservationStartTime) && has(self.reservationEndTime))",
        "message": "SCHEDULED_CAPACITY billing needs both spec.reservationStartTime and "
        "spec.reservationEndTime",
    },
    {
        "rule": "!has(self.reservationStartTime) || !has(self.reservationEndTime) || "
        "self.reservationEndTime > self.reservationStartTime",
        "message": "spec.reservationEndTime must be after spec.reservationStartTime",
    },
    {
        "rule": "!has(self.numCapacityPoolGpus) || self.numCapacityPoolGpus <= self.numGpus",
        "message": "spec.numCapacityPoolGpus must not exceed spec.numGpus",
    },
    {
        "rule": "!has(self.numCapacityPoolGpus) || has(self.capacityPoolId)",
        "message": "spec.numCapacityPoolGpus needs spec.capacityPoolId",
    },
    {
        "rule": "has(self.nvidiaVersionId) || "
        "(has(self.cudaVersion) && has(self.nvidiaDriverVersion))",
        "message": "set spec.nvidiaVersionId, or both spec.cudaVersion and "
        "spec.nvidiaDriverVersion (see the regions API for what each region offers)",
    },
    {
        "rule": "has(self.cudaVersion) == has(self.nvidiaDriverVersion)",
        "message": "spec.cudaVersion and spec.nvidiaDriverVersion must be set together",
    },
    {
        "rule": "!(has(self.sharedVolume) && has(self.volumeId))",
        "message": "spec.sharedVolume and spec.volumeId are mutually exclusive",
    },
    {
        "rule": "!has(self.autoScale) || !self.autoScale || "
        "(has(self.autoScaleMaxGpus) && self.autoScaleMaxGpus >= self.numGpus)",
        "message": "spec.autoScale needs spec.autoScaleMaxGpus of at least spec.numGpus",
    },
    {
        "rule": "!has(self.addOns) || "
        "self.addOns.all(a, self.addOns.exists_one(b, b.name == a.name))",
        "message": "spec.addOns names must be unique",
    },
]

ADD_ON_TYPE_RULE: JsonValue = {
    # Together's add-on update takes a config only: an add-on keeps its type for life.
    "rule": "!has(oldSelf.addOns) || !has(self.addOns) || self.addOns.all(a, "
    "oldSelf.addOns.all(b, b.name != a.name || b.addOnType == a.addOnType))",
    "message": "the addOnType of an add-on cannot change; to replace it, give the new "
    "add-on another name",
}

#: Together's date-times are RFC 3339, which requires a zone; Kubernetes's date-time format
#: alone would also let "2027-01-01T00:00:00" through, which Together refuses.
RFC3339_WITH_ZONE = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|z|[+-]\d{2}:\d{2})$"

SET_ONCE_RULE: JsonValue = {
    "rule": "!has(oldSelf.clusterId) || "
    "(has(self.clusterId) && self.clusterId == oldSelf.clusterId)",
    "message": "spec.clusterId may be set once; it cannot be changed or removed afterwards",
}


def _validations(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """The spec's CEL rules: cross-field checks, then the immutability rule of the create-only
    fields (derived from the field markers), then the set-once rule of ``clusterId`` and the
    add-on type rule."""
    schema["x-kubernetes-validations"] = [
        *CROSS_FIELD_RULES,
        immutability_rule(create_only_fields(model)),
        SET_ONCE_RULE,
        ADD_ON_TYPE_RULE,
    ]


class GPUClusterSpec(CamelModel):
    """Desired state of a Together GPU cluster."""

    model_config = ConfigDict(json_schema_extra=_validations)

    cluster_name: Annotated[str | None, CREATE_ONLY] = Field(
        default=None,
        min_length=1,
        max_length=63,
        description="Name of the cluster at Together. Defaults to <namespace>-<name>. Immutable.",
    )
    region: Annotated[str, CREATE_ONLY] = Field(
        min_length=1, description="Together region, e.g. us-central-8. Immutable."
    )
    gpu_type: Annotated[GpuType, CREATE_ONLY] = Field(
        description="GPU type of the worker nodes. Immutable."
    )
    num_gpus: Annotated[int, UPDATABLE] = Field(
        ge=8, multiple_of=8, description="Number of GPUs: a multiple of 8, at least 8."
    )
    cluster_type: Annotated[ClusterType, CREATE_ONLY] = Field(
        default=ClusterType.KUBERNETES, description="KUBERNETES or SLURM. Immutable."
    )
    billing_type: Annotated[BillingType, CREATE_ONLY] = Field(
        default=BillingType.ON_DEMAND,
        description="ON_DEMAND, RESERVED (durationDays sets its length) or SCHEDULED_CAPACITY "
        "(needs reservationStartTime and reservationEndTime). Immutable.",
    )
    duration_days: Annotated[int | None, CREATE_ONLY] = Field(
        default=None, ge=1, description="Reservation length in days (RESERVED). Immutable."
    )
    cuda_version: Annotated[str | None, CREATE_ONLY] = Field(
        default=None,
        description="CUDA version, e.g. 12.5; needs nvidiaDriverVersion. Immutable.",
    )
    nvidia_driver_version: Annotated[str | None, CREATE_ONLY] = Field(
        default=None, description="NVIDIA driver version, e.g. 550; needs cudaVersion. Immutable."
    )
    nvidia_version_id: Annotated[str | None, CREATE_ONLY] = Field(
        default=None,
        description="Region-specific NVIDIA catalog ID (from the regions API); an alternative "
        "to cudaVersion + nvidiaDriverVersion. Immutable.",
    )
    num_preemptible_gpus: Annotated[
        int | None, TogetherField(updatable=True, observed_as="desired_preemptible_gpus")
    ] = gpu_count(
        "Preemptible GPUs wanted in addition: a multiple of 8. "
        "Together allocates them asynchronously (status.allocatedPreemptibleGpus)."
    )
    num_reserved_gpus: Annotated[int | None, UPDATABLE] = gpu_count(
        "Prepaid reserved GPUs (RESERVED billing): a multiple of 8."
    )
    capacity_pool_id: Annotated[str | None, CREATE_ONLY] = Field(
        default=None, description="Capacity pool to draw GPUs from. Immutable."
    )
    num_capacity_pool_gpus: Annotated[int | None, UPDATABLE] = gpu_count(
        "GPUs drawn from the capacity pool: a multiple of 8, not above numGpus; needs "
        "capacityPoolId."
    )
    reservation_start_time: Annotated[AwareDatetime | None, CREATE_ONLY] = Field(
        default=None,
        description="Start of the reservation (SCHEDULED_CAPACITY), RFC 3339 with a time "
        "zone (e.g. 2027-01-01T00:00:00Z). Immutable.",
        json_schema_extra={"pattern": RFC3339_WITH_ZONE},
    )
    reservation_end_time: Annotated[AwareDatetime | None, UPDATABLE] = Field(
        default=None,
        description="End of the reservation, when the cluster is decommissioned; RFC 3339 "
        "with a time zone.",
        json_schema_extra={"pattern": RFC3339_WITH_ZONE},
    )
    auto_scale: Annotated[bool | None, CREATE_ONLY] = Field(
        default=None,
        description="Scale GPU workers between numGpus and autoScaleMaxGpus. Immutable.",
    )
    auto_scale_max_gpus: Annotated[int | None, CREATE_ONLY] = Field(
        default=None,
        ge=8,
        multiple_of=8,
        description="Upper bound for auto-scaling; required with autoScale. Immutable.",
    )
    slurm_shm_size_gib: Annotated[int | None, CREATE_ONLY] = Field(
        default=None, ge=1, description="Shared memory in GiB; required for SLURM. Immutable."
    )
    slurm_image: Annotated[str | None, CREATE_ONLY] = Field(
        default=None, description="Custom Slurm image (SLURM clusters). Immutable."
    )
    shared_volume: Annotated[SharedVolumeSpec | None, CREATE_ONLY] = Field(
        default=None,
        description="Create a shared volume with the cluster; exclusive with volumeId. Immutable.",
    )
    volume_id: Annotated[str | None, CREATE_ONLY] = Field(
        default=None,
        description="Attach an existing shared volume; exclusive with sharedVolume. Immutable.",
    )
    install_traefik: Annotated[bool | None, CREATE_ONLY] = Field(
        default=None, description="Install the Traefik ingress controller. Immutable."
    )
    project_id: Annotated[str | None, CREATE_ONLY] = Field(
        default=None, description="Together project that owns the cluster. Immutable."
    )
    oidc_config: Annotated[OidcConfigSpec | None, CREATE_ONLY] = Field(
        default=None, description="OIDC authentication for the tenant cluster. Immutable."
    )
    cluster_config: Annotated[ClusterConfigSpec | None, UPDATABLE] = Field(
        default=None, description="Tenant cluster configuration (mutable)."
    )
    add_ons: Annotated[list[AddOnSpec] | None, UPDATABLE] = Field(
        default=None,
        max_length=16,
        description="Add-ons enabled on the cluster (mutable; names are unique).",
    )
    credentials_secret_ref: Annotated[SecretKeyRef | None, OPERATOR] = Field(
        default=None,
        description="Secret in this namespace holding the Together API key; when absent the "
        "operator's own key is used.",
    )
    kubeconfig_secret_name: Annotated[str | None, OPERATOR] = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$",
        description="Secret that receives the cluster's kubeconfig under key 'kubeconfig'. "
        "Defaults to <name>-kubeconfig.",
    )
    deletion_policy: Annotated[DeletionPolicy, OPERATOR] = Field(
        default=DeletionPolicy.DELETE,
        description="Delete: deleting the GPUCluster deletes the Together cluster. Orphan: "
        "the Together cluster is left running.",
    )
    cluster_id: Annotated[str | None, OPERATOR] = Field(
        default=None,
        min_length=1,
        description="Adopt an existing Together cluster by ID instead of creating one. May be "
        "set once; cannot be changed or removed afterwards.",
    )


class PhaseTransition(CamelModel):
    """One step of Together's cluster phase history."""

    phase: str = Field(description="Together phase, e.g. CLUSTER_PHASE_READY.")
    transition_time: str = Field(description="When the cluster entered this phase (RFC 3339).")


class Condition(CamelModel):
    """A metav1.Condition."""

    type: str = Field(
        description="Condition type: Ready, Synced, Reconciling, Stalled or NodesHealthy."
    )
    status: str = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason for the last transition.")
    message: str = Field(description="Human-readable details.")
    last_transition_time: str = Field(description="When the status last changed (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, description="metadata.generation this condition was computed from."
    )


class AddOnStatus(CamelModel):
    """An add-on of the cluster as Together reports it."""

    name: str = Field(description="The add-on's name (its ID at Together).")
    add_on_type: str = Field(description="What it installs: dashboard, headlamp, ...")
    state: str = Field(
        description="Running (Together reports its state), Pending (enabled, not running "
        "yet) or Disabled."
    )
    managed: bool = Field(
        description="Named in spec.addOns (now or before): the operator changes and removes "
        "it. An add-on the spec never named is shown, never touched."
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description="Its config at Together (AddOnConfig).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


class AlertStatus(CamelModel):
    """A passive health-check alert firing on a node."""

    id: str = Field(description="The alert's ID at Together.")
    name: str = Field(description="What fired, e.g. GpuXidError.")
    severity: str = Field(description="INFO, WARNING or CRITICAL.")
    node: str = Field(description="The node (VM) it fired on.")
    started_at: str | None = Field(default=None, description="When it started (RFC 3339).")
    remediation_id: str | None = Field(
        default=None, description="The remediation Together opened for it, if any."
    )


class RemediationStatus(CamelModel):
    """A node's latest remediation, while open or after it failed."""

    node: str = Field(description="The node's host name.")
    id: str = Field(description="The remediation's ID at Together.")
    state: str = Field(
        description="PENDING_APPROVAL (a person must approve or reject it at Together), "
        "PENDING, QUARANTINING, QUARANTINED, RUNNING or FAILED."
    )
    mode: str | None = Field(default=None, description="How it is carried out, e.g. REBOOT_VM.")
    trigger: str | None = Field(default=None, description="MANUAL or AUTOMATED.")
    message: str | None = Field(default=None, description="Its error or reason.")


class NodeHealthStatus(CamelModel):
    """Node health at Together (see the NodesHealthy condition)."""

    firing_alerts: int | None = Field(
        default=None,
        description="Health-check alerts firing, as last read (absent: not read; alerts are "
        "read when the cluster shows trouble, or on the operator's health-check timer).",
    )
    alerts: list[AlertStatus] | None = Field(
        default=None, description="The newest firing alerts (at most 10)."
    )
    remediations: list[RemediationStatus] | None = Field(
        default=None, description="Nodes' latest remediations that are open or failed."
    )


class OwnershipStatus(CamelModel):
    """The operator's records about the Together cluster it manages for this object.

    Kept in status, which a copy of the object does not carry and which tenants without
    access to the status subresource cannot write; bound to the object's UID, so records
    that reach another object (a backup restored under a new UID, say) are not trusted.
    """

    uid: str = Field(description="The GPUCluster incarnation (metadata.uid) these records are for.")
    cluster_name: str | None = Field(
        default=None,
        description="The name the cluster was (or is being) created with at Together: the "
        "spec's clusterName (default <namespace>-<name>), a dash, and a tag derived from the "
        "object's UID, so that no other object can ever produce it.",
    )
    create_intent_at: str | None = Field(
        default=None,
        description="Set before a create is sent, cleared once its outcome is known (RFC 3339).",
    )
    key_fingerprint: str | None = Field(
        default=None,
        description="Fingerprint (never the key) of the API key that last saw the cluster.",
    )
    adopted: bool | None = Field(
        default=None, description="The cluster was adopted through spec.clusterId."
    )
    delete_accepted_at: str | None = Field(
        default=None,
        description="When Together accepted this operator's DELETE: a later 404 proves the "
        "deletion whatever key asks (RFC 3339).",
    )


class GPUClusterStatus(CamelModel):
    """Observed state, mirrored from Together."""

    observed_generation: int | None = Field(
        default=None, description="metadata.generation the operator last acted upon."
    )
    cluster_id: str | None = Field(default=None, description="ID of the Together cluster.")
    ownership: OwnershipStatus | None = Field(
        default=None, description="The operator's records about the cluster it manages."
    )
    state: str | None = Field(
        default=None, description="Together's status of the cluster, verbatim (e.g. Ready)."
    )
    phase_transitions: list[PhaseTransition] | None = Field(
        default=None, description="Together's phase history of the cluster."
    )
    num_gpus: int | None = Field(default=None, description="GPUs Together reports.")
    desired_preemptible_gpus: int | None = Field(
        default=None, description="Preemptible GPUs requested from Together."
    )
    allocated_preemptible_gpus: int | None = Field(
        default=None, description="Preemptible GPUs Together has allocated so far."
    )
    preemptible: str | None = Field(
        default=None, description="allocated/desired preemptible GPUs, for display."
    )
    control_plane_ready: bool | None = Field(
        default=None, description="Whether the cluster's control plane is ready."
    )
    control_plane_nodes: int | None = Field(
        default=None, description="Number of control-plane nodes."
    )
    worker_nodes: int | None = Field(default=None, description="Number of GPU worker nodes.")
    cuda_version: str | None = Field(default=None, description="CUDA version of the cluster.")
    nvidia_driver_version: str | None = Field(
        default=None, description="NVIDIA driver version of the cluster."
    )
    kubeconfig_secret_name: str | None = Field(
        default=None, description="Secret holding the cluster's kubeconfig (key 'kubeconfig')."
    )
    first_ready_at: str | None = Field(
        default=None, description="When the cluster first became Ready (RFC 3339)."
    )
    add_ons: list[AddOnStatus] | None = Field(
        default=None,
        description="The cluster's add-ons at Together, enabled or not (listed when the "
        "spec manages add-ons; otherwise the enabled ones the cluster reports).",
    )
    health: NodeHealthStatus | None = Field(
        default=None, description="Node health: firing alerts and open remediations."
    )
    last_sync_time: str | None = Field(
        default=None,
        description="When the Together view shown in this status was read. Status is written "
        "only when something changed, so this is the time of the latest change the operator "
        "saw, not of its latest poll (see the operator's metrics for that).",
    )
    conditions: list[Condition] | None = Field(
        default=None,
        description="Ready, Synced, Reconciling and Stalled (kstatus), and NodesHealthy.",
    )


def _role(model: type[BaseModel], name: str) -> TogetherField | OperatorField | None:
    info = model.model_fields[name]
    return next((m for m in info.metadata if isinstance(m, TogetherField | OperatorField)), None)


def create_only_fields(model: type[BaseModel] = GPUClusterSpec) -> tuple[str, ...]:
    """camelCase names of the fields Together cannot change in place (immutable in the CRD)."""
    return tuple(
        model.model_fields[name].alias or name
        for name in model.model_fields
        if _role(model, name) == CREATE_ONLY
    )


def updatable_fields() -> dict[str, TogetherField]:
    """snake_case names of the fields a merge-PUT can change, with their markers."""
    found = {name: _role(GPUClusterSpec, name) for name in GPUClusterSpec.model_fields}
    return {
        name: role
        for name, role in found.items()
        if isinstance(role, TogetherField) and role.updatable
    }


def operator_fields() -> frozenset[str]:
    """snake_case names of the fields never sent to Together."""
    return frozenset(
        name
        for name in GPUClusterSpec.model_fields
        if isinstance(_role(GPUClusterSpec, name), OperatorField)
    )


IMMUTABLE_FIELDS = create_only_fields()

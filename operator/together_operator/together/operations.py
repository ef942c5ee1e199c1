"""Every operation of Together's `/v1/compute` contract, once: used by the client and the simulator.

Names are the contract's ``operationId``s (so a reader finds each in
`together-compute-openapi.yaml`); paths are relative to the API root `/v1`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Operation:
    """One contract operation: its operationId, HTTP method and path template."""

    id: str
    method: str
    path: str

    def url(self, **parameters: str) -> str:
        """The path with its ``{placeholders}`` filled in."""
        return self.path.format(**parameters)


_CLUSTERS = "/compute/clusters"
_CLUSTER = _CLUSTERS + "/{cluster_id}"
_VOLUMES = "/compute/clusters/storage/volumes"
_ADDONS = _CLUSTER + "/addons"
_REMEDIATIONS = _CLUSTER + "/instances/{instance_id}/remediations"
_REMEDIATION = _REMEDIATIONS + "/{remediation_id}"

LIST_CLUSTERS: Final = Operation("GPUClusterService_List", "GET", _CLUSTERS)
CREATE_CLUSTER: Final = Operation("GPUClusterService_Create", "POST", _CLUSTERS)
GET_CLUSTER: Final = Operation("GPUClusterService_Get", "GET", _CLUSTER)
UPDATE_CLUSTER: Final = Operation("GPUClusterService_Update", "PUT", _CLUSTER)
DELETE_CLUSTER: Final = Operation("GPUClusterService_Delete", "DELETE", _CLUSTER)
LIST_REGIONS: Final = Operation("RegionService_List", "GET", "/compute/regions")
LIST_VOLUMES: Final = Operation("SharedVolumeService_List", "GET", _VOLUMES)
CREATE_VOLUME: Final = Operation("SharedVolumeService_Create", "POST", _VOLUMES)
# The contract updates a volume with a PUT on the collection, `volume_id` in the body.
UPDATE_VOLUME: Final = Operation("SharedVolumeService_Update", "PUT", _VOLUMES)
GET_VOLUME: Final = Operation("SharedVolumeService_Get", "GET", _VOLUMES + "/{volume_id}")
DELETE_VOLUME: Final = Operation("SharedVolumeService_Delete", "DELETE", _VOLUMES + "/{volume_id}")
LIST_ADDONS: Final = Operation("InstanceClusterAddOnService_List", "GET", _ADDONS)
CREATE_ADDON: Final = Operation("InstanceClusterAddOnService_Create", "POST", _ADDONS)
GET_ADDON: Final = Operation("InstanceClusterAddOnService_Get", "GET", _ADDONS + "/{addon_id}")
UPDATE_ADDON: Final = Operation(
    "InstanceClusterAddOnService_Update", "PUT", _ADDONS + "/{addon_id}"
)
DELETE_ADDON: Final = Operation(
    "InstanceClusterAddOnService_Delete", "DELETE", _ADDONS + "/{addon_id}"
)
LIST_REMEDIATIONS: Final = Operation("RemediationService_ListRemediations", "GET", _REMEDIATIONS)
CREATE_REMEDIATION: Final = Operation("RemediationService_CreateRemediation", "POST", _REMEDIATIONS)
GET_REMEDIATION: Final = Operation("RemediationService_GetRemediation", "GET", _REMEDIATION)
APPROVE_REMEDIATION: Final = Operation(
    "RemediationService_ApproveRemediation", "POST", _REMEDIATION + "/approve"
)
CANCEL_REMEDIATION: Final = Operation(
    "RemediationService_CancelRemediation", "POST", _REMEDIATION + "/cancel"
)
REJECT_REMEDIATION: Final = Operation(
    "RemediationService_RejectRemediation", "POST", _REMEDIATION + "/reject"
)
LIST_HEALTH_CHECK_ALERTS: Final = Operation(
    "HealthCheckService_ListPassiveHealthCheckAlerts", "GET", "/compute/passive_health_check_alerts"
)

ALL_OPERATIONS: Final = (
    LIST_CLUSTERS,
    CREATE_CLUSTER,
    GET_CLUSTER,
    UPDATE_CLUSTER,
    DELETE_CLUSTER,
    LIST_REGIONS,
    LIST_VOLUMES,
    CREATE_VOLUME,
    UPDATE_VOLUME,
    GET_VOLUME,
    DELETE_VOLUME,
    LIST_ADDONS,
    CREATE_ADDON,
    GET_ADDON,
    UPDATE_ADDON,
    DELETE_ADDON,
    LIST_REMEDIATIONS,
    CREATE_REMEDIATION,
    GET_REMEDIATION,
    APPROVE_REMEDIATION,
    CANCEL_REMEDIATION,
    REJECT_REMEDIATION,
    LIST_HEALTH_CHECK_ALERTS,
)

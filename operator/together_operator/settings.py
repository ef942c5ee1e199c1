"""The operator's one settings object: environment variables, overridden by CLI flags.

Nothing else in the package reads the environment for operator behaviour; the CLI builds an
:class:`OperatorSettings` and hands it down.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from together_operator.together.client import DEFAULT_BASE_URL


class OperatorSettings(BaseSettings):
    """How `together-operator run` behaves. Env names are given per field."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    together_api_key: SecretStr | None = Field(
        default=None,
        validation_alias="TOGETHER_API_KEY",
        description="API key used for GPUClusters without spec.credentialsSecretRef.",
    )
    together_base_url: str = Field(
        default=DEFAULT_BASE_URL,
        validation_alias="TOGETHER_BASE_URL",
        description="Together host; paths add /v1 (as in the official SDK).",
    )
    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to watch; empty means all namespaces."
    )
    adoption_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        validation_alias="TOGETHER_OPERATOR_ADOPTION_NAMESPACES",
        description="Namespaces whose GPUClusters may adopt an existing cluster "
        "(spec.clusterId) with the operator's own API key; '*' for all. Off by default: with "
        "a shared key, adoption would hand any namespace any cluster of the account. An "
        "object with its own key (spec.credentialsSecretRef) may always adopt from its account.",
    )
    leader_election: bool = Field(
        default=True,
        validation_alias="TOGETHER_OPERATOR_LEADER_ELECTION",
        description="Hold a Lease so that one operator instance acts at a time.",
    )
    lease_namespace: str | None = Field(
        default=None,
        validation_alias="TOGETHER_OPERATOR_LEASE_NAMESPACE",
        description="Namespace of the Lease: by default the Pod's namespace, or "
        "together-operator-system outside a Pod (where deploy/ installs the operator).",
    )
    lease_name: str = Field(
        default="together-operator",
        validation_alias="TOGETHER_OPERATOR_LEASE_NAME",
        description="Name of the Lease; instances that must not act together share it.",
    )
    lease_seconds: float = Field(
        default=15.0,
        ge=3,
        validation_alias="TOGETHER_OPERATOR_LEASE_SECONDS",
        description="How long the Lease holds without renewal: how long a successor waits "
        "after an instance dies without letting go. Renewed every third of it.",
    )
    fast_poll_seconds: float = Field(
        default=5.0,
        gt=0,
        validation_alias="TOGETHER_OPERATOR_FAST_POLL_SECONDS",
        description="List interval while any cluster is changing.",
    )
    slow_poll_seconds: float = Field(
        default=60.0,
        gt=0,
        validation_alias="TOGETHER_OPERATOR_SLOW_POLL_SECONDS",
        description="List interval when every cluster is stable (jittered by +-20%).",
    )
    resync_seconds: float = Field(
        default=600.0,
        gt=0,
        validation_alias="TOGETHER_OPERATOR_RESYNC_SECONDS",
        description="How often a GPUCluster nothing happened to is looked at anyway (+-20%), "
        "a safety net: changes at Together and in the spec wake it at once. A look that "
        "finds nothing changed costs no API call and no write.",
    )
    health_check_seconds: float = Field(
        default=0.0,
        ge=0,
        validation_alias="TOGETHER_OPERATOR_HEALTH_CHECK_SECONDS",
        description="Read every cluster's health-check alerts this often (one call per "
        "cluster); 0, the default, reads them only while a cluster shows trouble (a "
        "remediation open or failed, the cluster Degraded) or an alert fires.",
    )
    max_concurrent_requests: int = Field(
        default=8,
        ge=1,
        validation_alias="TOGETHER_OPERATOR_MAX_CONCURRENT_REQUESTS",
        description="Requests in flight at once to Together (per API key) and to the "
        "Kubernetes API; more wait their turn, so a burst of objects queues here (the writes "
        "a Together call waits on ahead of status reports).",
    )
    credentials_ttl_seconds: float = Field(
        default=30.0,
        ge=0,
        validation_alias="TOGETHER_OPERATOR_CREDENTIALS_TTL_SECONDS",
        description="How long an API key read from spec.credentialsSecretRef is reused.",
    )
    create_grace_seconds: float = Field(
        default=60.0,
        ge=0,
        validation_alias="TOGETHER_OPERATOR_CREATE_GRACE_SECONDS",
        description="After a create whose answer was lost, how long to keep listing before "
        "concluding it never happened and creating again.",
    )
    request_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        validation_alias="TOGETHER_OPERATOR_REQUEST_TIMEOUT_SECONDS",
        description="Timeout of one HTTP request to Together.",
    )
    log_format: Literal["plain", "json"] = Field(
        default="plain",
        validation_alias="TOGETHER_OPERATOR_LOG_FORMAT",
        description="Log line format.",
    )
    metrics_port: int | None = Field(
        default=None,
        validation_alias="TOGETHER_OPERATOR_METRICS_PORT",
        description="Serve Prometheus metrics on this port (none when unset).",
    )

    @field_validator("adoption_namespaces", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        # From the environment a list is "team-a,team-b"; from flags it is a list already.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

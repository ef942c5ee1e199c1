"""The operator's ServiceAccount gets exactly the permissions it uses: no wildcard, no extra."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.manifests import (
    LEADER_ELECTION_PERMISSIONS,
    REQUIRED_PERMISSIONS,
    SYSTEM_NAMESPACE,
    granted_permissions,
    helm_template,
    kustomize,
    load_objects,
)


def assert_exactly_required(granted: set[tuple[str, str, str]]) -> None:
    wildcards = {t for t in granted if "*" in t}
    assert not wildcards, f"wildcard grants: {sorted(wildcards)}"
    assert not granted - REQUIRED_PERMISSIONS, (
        f"more than needed: {sorted(granted - REQUIRED_PERMISSIONS)}"
    )
    assert not REQUIRED_PERMISSIONS - granted, f"missing: {sorted(REQUIRED_PERMISSIONS - granted)}"


def assert_only_the_lease_at_home(granted: dict[str | None, set[tuple[str, str, str]]]) -> None:
    assert granted.pop(SYSTEM_NAMESPACE) == LEADER_ELECTION_PERMISSIONS


def test_kustomize_grants_exactly_the_required_permissions_cluster_wide(kubectl: Path) -> None:
    granted = granted_permissions(load_objects(kustomize(kubectl)))
    assert_only_the_lease_at_home(granted)
    assert set(granted) == {None}
    assert_exactly_required(granted[None])


def test_helm_grants_exactly_the_required_permissions_cluster_wide(helm: Path) -> None:
    granted = granted_permissions(load_objects(helm_template(helm)))
    assert_only_the_lease_at_home(granted)
    assert set(granted) == {None}
    assert_exactly_required(granted[None])


def test_helm_grants_exactly_the_required_permissions_in_each_watched_namespace(
    helm: Path,
) -> None:
    objects = load_objects(helm_template(helm, "watchNamespaces={team-a,team-b}"))
    granted = granted_permissions(objects)
    assert_only_the_lease_at_home(granted)
    assert set(granted) == {"team-a", "team-b"}
    for namespace in granted.values():
        assert_exactly_required(namespace)


def test_the_rbac_check_catches_wildcards_and_extras() -> None:
    with pytest.raises(AssertionError, match="wildcard"):
        assert_exactly_required(set(REQUIRED_PERMISSIONS) | {("", "secrets", "*")})
    with pytest.raises(AssertionError, match="more than needed"):
        assert_exactly_required(set(REQUIRED_PERMISSIONS) | {("", "secrets", "patch")})
    with pytest.raises(AssertionError, match="missing"):
        assert_exactly_required(set(REQUIRED_PERMISSIONS) - {("", "events", "create")})

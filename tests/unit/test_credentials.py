"""API keys from Secrets: guarded by a finalizer while in use, let go when no GPUCluster names
them, and never kept in memory longer than the cache's time to live."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from tests.factories import gpucluster_spec
from tests.unit.reconciler_harness import NAMESPACE, FakeKube
from together_operator.controller.credentials import (
    CREDENTIALS_FINALIZER,
    CREDENTIALS_ROLE,
    ROLE_LABEL,
    Credentials,
)
from together_operator.gpucluster.plan import Stall
from together_operator.settings import OperatorSettings

KEY = "tgp_v1_CREDENTIALS-TEST-0b7e3f11-not-real"
WITH_SECRET = gpucluster_spec(credentialsSecretRef={"name": "team-key"})


class FixedUsers:
    def __init__(self, *uids: str) -> None:
        self.uids = set(uids)

    def users(self, namespace: str, secret: str) -> set[str]:
        return set(self.uids)


def credentials(kube: FakeKube, ttl: float = 30.0) -> Credentials:
    settings = OperatorSettings(credentials_ttl_seconds=ttl, together_api_key=SecretStr("x"))
    return Credentials(kube, settings)


async def test_a_secret_in_use_is_guarded_and_let_go_when_nobody_names_it() -> None:
    kube = FakeKube()
    kube.put_secret(NAMESPACE, "team-key", {"apiKey": KEY})
    keys = credentials(kube)
    assert await keys.api_key(NAMESPACE, WITH_SECRET) == KEY
    stored = kube.secrets[(NAMESPACE, "team-key")]["metadata"]
    assert stored["finalizers"] == [CREDENTIALS_FINALIZER]
    assert stored["labels"][ROLE_LABEL] == CREDENTIALS_ROLE

    keys.users = FixedUsers("uid-leaving", "uid-staying")
    await keys.release_if_unused(NAMESPACE, "team-key", leaving="uid-leaving")
    guarded = kube.secrets[(NAMESPACE, "team-key")]["metadata"]
    assert guarded["finalizers"] == [CREDENTIALS_FINALIZER]
    keys.users = FixedUsers("uid-staying")
    await keys.release_if_unused(NAMESPACE, "team-key", leaving="uid-staying")
    stored = kube.secrets[(NAMESPACE, "team-key")]["metadata"]
    assert stored["finalizers"] == []
    assert ROLE_LABEL not in stored["labels"]


async def test_a_secret_being_deleted_still_gives_its_key_and_gets_no_new_finalizer() -> None:
    kube = FakeKube()
    kube.put_secret(NAMESPACE, "team-key", {"apiKey": KEY})
    deleting = kube.secrets[(NAMESPACE, "team-key")]["metadata"]
    deleting["deletionTimestamp"] = "2026-11-22T12:00:00Z"
    assert await credentials(kube).api_key(NAMESPACE, WITH_SECRET) == KEY
    assert not kube.secrets[(NAMESPACE, "team-key")]["metadata"].get("finalizers")


async def test_a_missing_secret_says_what_to_create() -> None:
    missing = await credentials(FakeKube()).api_key(NAMESPACE, WITH_SECRET)
    assert isinstance(missing, Stall)
    assert missing.reason == "CredentialsNotFound"
    assert f"{NAMESPACE}/team-key" in missing.message


@pytest.mark.timeout(10)
async def test_keys_are_not_kept_past_their_time_to_live() -> None:
    kube = FakeKube()
    for namespace in ("deleted-team", "live-team"):
        kube.put_secret(namespace, "team-key", {"apiKey": KEY})
    keys = credentials(kube, ttl=0.05)
    await keys.api_key("deleted-team", WITH_SECRET)
    await asyncio.sleep(0.1)
    await keys.api_key("live-team", WITH_SECRET)
    assert [cached[0] for cached in keys._cache] == ["live-team"]

"""The controller's own Kubernetes calls: what goes on the wire, and how refusals come back.

The API server's side is an httpx MockTransport here (the calls themselves run against a real
kube-apiserver in the integration suite); these pin what that suite cannot provoke at will: a
429 from API Priority and Fairness, a rotated token, a 409 on a stale write.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from together_operator.controller import kube as kube_module
from together_operator.controller.kube import KubeApi


def configuration(tokens: list[str]) -> Any:
    """An official client Configuration whose token changes on each refresh."""
    conf = client.Configuration()
    conf.host = "https://kube.invalid:6443"
    conf.api_key["authorization"] = "stale"  # as loaded; the hook refreshes it
    conf.api_key_prefix["authorization"] = "Bearer"

    def refresh(c: Any) -> None:
        c.api_key["authorization"] = tokens.pop(0) if tokens else "last"

    conf.refresh_api_key_hook = refresh
    return conf


async def no_sleep(seconds: float) -> None:
    pass


def api(handler: Any, tokens: list[str] | None = None, sleep: Any = no_sleep) -> KubeApi:
    return KubeApi(configuration(tokens or []), transport=httpx.MockTransport(handler), sleep=sleep)


async def test_a_status_patch_is_a_merge_patch_conditional_on_the_version() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"kind": "GPUCluster"})

    kube = api(handler)
    await kube.patch_status("team-a", "train", {"state": "Ready"}, "41")
    await kube.close()
    (request,) = seen
    assert request.method == "PATCH"
    assert request.url.path == (
        "/apis/compute.together.ai/v1alpha1/namespaces/team-a/gpuclusters/train/status"
    )
    assert request.headers["Content-Type"] == "application/merge-patch+json"
    assert json.loads(request.content) == {
        "status": {"state": "Ready"},
        "metadata": {"resourceVersion": "41"},
    }


async def test_each_call_reads_the_token_again_so_a_rotated_one_is_used() -> None:
    authorizations: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        authorizations.append(request.headers["Authorization"])
        return httpx.Response(404, json={"reason": "NotFound"})

    kube = api(handler, tokens=["first", "rotated"])
    assert await kube.read_secret("team-a", "key") is None
    assert await kube.read_secret("team-a", "key") is None
    await kube.close()
    assert authorizations == ["Bearer first", "Bearer rotated"]


async def test_shed_load_is_waited_out_as_the_server_asks() -> None:
    waits: list[float] = []

    async def wait(seconds: float) -> None:
        waits.append(seconds)

    answers = iter([429, 503, 200])

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        headers = {"Retry-After": "3"} if status == 429 else {}
        return httpx.Response(status, headers=headers, json={"data": {"apiKey": "a2V5"}})

    kube = api(handler, sleep=wait)
    assert await kube.secret_value("team-a", "key", "apiKey") == "key"
    await kube.close()
    assert len(waits) == 2
    assert waits[0] == 3.0, "Retry-After is honoured"


async def test_a_refusal_reaches_the_caller_as_an_api_exception_with_its_status() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(409, json={"reason": "Conflict", "message": "changed"})

    kube = api(handler)
    with pytest.raises(ApiException) as refused:
        await kube.patch_status("team-a", "train", {"state": "Ready"}, "41", urgent=True)
    await kube.close()
    assert refused.value.status == 409
    assert calls == 1, "a conflict is not retried"
    assert "changed" in refused.value.body


async def test_a_server_that_keeps_failing_is_given_up_on_after_the_attempts() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(503)

    kube = api(handler)
    with pytest.raises(ApiException) as failed:
        await kube.delete_secret("team-a", "key")
    await kube.close()
    assert failed.value.status == 503
    assert calls == kube_module.ATTEMPTS

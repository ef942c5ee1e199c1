"""The OpenAPI contract as a response checker: every simulator answer must match it.

The contract (`tests/contract/together-compute-openapi.yaml`, Together's MIT-licensed spec) is
OpenAPI 3.1, whose schemas are JSON Schema 2020-12, so `jsonschema` validates bodies directly.
Bodies are checked against the contract as it is. The one overlay is explicit and opt-in: a
test that makes the simulator report a status outside the enum (a reservation's `Scheduled`,
or one forced through the admin API) names the statuses it tolerates, and only that test
tolerates them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

CONTRACT = Path(__file__).parent.parent / "contract" / "together-compute-openapi.yaml"
_CONTRACT_URI = "urn:together-compute-openapi"


@cache
def _spec(tolerated_statuses: frozenset[str] = frozenset()) -> dict[str, Any]:
    spec: dict[str, Any] = yaml.safe_load(CONTRACT.read_text())
    if tolerated_statuses:
        status = spec["components"]["schemas"]["GPUClusterInfo"]["properties"]["status"]
        status["enum"] = [*status["enum"], *sorted(tolerated_statuses)]
    return spec


@cache
def _registry(tolerated_statuses: frozenset[str]) -> Registry[Any]:
    contents = _spec(tolerated_statuses)
    resource: Resource[Any] = Resource.from_contents(contents, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(_CONTRACT_URI, resource)
    return registry


def _path_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^/v1" + re.sub(r"\{[^}]+\}", "[^/]+", template) + "$")


def response_schema_ref(method: str, path: str) -> str | None:
    """The `$ref` of the 200 response schema of the operation serving `method path`."""
    candidates = []
    for template, operations in _spec()["paths"].items():
        operation = operations.get(method.lower())
        if operation is not None and _path_pattern(template).match(path):
            ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
            # A literal segment beats a parameter: /clusters/storage/volumes over /clusters/{id}.
            candidates.append((template.count("{"), str(ref)))
    return min(candidates)[1] if candidates else None


def validate_body(
    method: str, path: str, body: object, tolerated_statuses: frozenset[str] = frozenset()
) -> str:
    """Check a 200 body against the contract (a cluster `status` may also be one of
    `tolerated_statuses`); returns the schema it matched."""
    ref = response_schema_ref(method, path)
    assert ref is not None, f"{method} {path} is not an operation of the contract"
    validator = Draft202012Validator(
        {"$ref": _CONTRACT_URI + ref},
        registry=_registry(tolerated_statuses),
        format_checker=FormatChecker(),
    )
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.absolute_path))
    assert not errors, f"{method} {path} answered outside the contract ({ref}): " + "; ".join(
        f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]
    )
    return ref


def validate_error(body: object) -> None:
    """Check an error body has the simulator's one shape, grpc-gateway's `google.rpc.Status`:
    `{"code": int, "message": str, "details"?: [{"@type", "reason", ...}]}`."""
    assert isinstance(body, dict), body
    assert isinstance(body.get("code"), int), body
    assert isinstance(body.get("message"), str), body
    assert body["message"], body
    assert set(body) <= {"code", "message", "details"}, body
    for detail in body.get("details", []):
        assert isinstance(detail, dict), body
        assert detail.get("@type") == "type.googleapis.com/google.rpc.ErrorInfo", body
        assert isinstance(detail.get("reason"), str), body


class ContractChecks:
    """An httpx response hook that validates every `/v1` answer; counts what it checked.

    `tolerated_statuses` are cluster statuses outside the contract's enum that this check
    accepts; give them only where the test itself made the simulator report them."""

    def __init__(self, tolerated_statuses: Iterable[str] = ()) -> None:
        self.checked: list[str] = []
        self.tolerated_statuses = frozenset(tolerated_statuses)

    def __call__(self, response: httpx.Response) -> None:
        path = response.request.url.path
        if not path.startswith("/v1/"):
            return
        response.read()
        if response.status_code == 200:
            method, body = response.request.method, response.json()
            self.checked.append(validate_body(method, path, body, self.tolerated_statuses))
        else:
            validate_error(response.json())

"""Add-ons after creation: what ``spec.addOns`` asks of Together's add-on endpoints, and what
status shows of them. Pure; the reconciler lists add-ons and makes the calls.

The rules, which the README's "Add-ons" section states for users:

- ``spec.addOns`` names the add-ons the GPUCluster manages. One Together lacks is added; one
  whose config differs gets the spec's config merged in (that is how an add-on is disabled,
  and re-enabled: only the add-on endpoints see a disabled add-on, a cluster's own
  ``add_ons`` lists enabled ones only); one the spec named before and no longer does is
  removed. "Named before" is recorded in ``status.addOns[].managed``.
- An add-on the spec never named (made in Together's console, say) is shown, never touched.
- An add-on keeps its type for life (Together's update takes a config only): the CRD refuses
  a type change, and an add-on of the same name but another type at Together stalls.

Add-ons are listed (one call) only when the spec manages some and what Together's cluster
reports of them changed since the last listing; a settled object costs nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from together_operator.gpucluster.compare import differs
from together_operator.gpucluster.spec import AddOnSpec, AddOnStatus, GPUClusterSpec
from together_operator.together.models import (
    AddOnInfo,
    ClusterAddOnCreateRequest,
    ClusterAddOnUpdateRequest,
    GPUClusterInfo,
)

RUNNING, PENDING, DISABLED = "Running", "Pending", "Disabled"


@dataclass(frozen=True)
class AddAddOn:
    """Create this add-on."""

    request: ClusterAddOnCreateRequest

    @property
    def says(self) -> str:
        return f"add {self.request.name}"


@dataclass(frozen=True)
class ChangeAddOn:
    """Merge this config into the add-on ``name``."""

    name: str
    request: ClusterAddOnUpdateRequest

    @property
    def says(self) -> str:
        return f"change {self.name}"


@dataclass(frozen=True)
class RemoveAddOn:
    """Delete the add-on ``name``."""

    name: str

    @property
    def says(self) -> str:
        return f"remove {self.name}"


AddOnStep = AddAddOn | ChangeAddOn | RemoveAddOn


@dataclass(frozen=True)
class TypeConflict:
    """Together has an add-on of the spec's name but of another type."""

    name: str
    wanted: str
    present: str


def managed_names(spec: GPUClusterSpec, recorded: Collection[str]) -> frozenset[str]:
    """The add-ons the object manages: those its spec names, and those it named before."""
    return frozenset(a.name for a in spec.add_ons or ()) | frozenset(recorded)


def worth_listing(spec: GPUClusterSpec, recorded: Collection[str]) -> bool:
    """Whether the object has add-ons to look after at all."""
    return bool(managed_names(spec, recorded))


def reported_digest(cluster: GPUClusterInfo) -> str:
    """What the cluster itself reports of its add-ons (enabled ones: names, types, configs),
    as a digest. A listing stays good while this does not change: add-ons change only
    through the add-on endpoints, and any change to an enabled one shows here."""
    seen = sorted(
        (a.name, a.add_on_type, a.config.model_dump(mode="json", exclude_none=True))
        for a in cluster.add_ons
    )
    return hashlib.sha256(json.dumps(seen, sort_keys=True).encode()).hexdigest()


def steps_for(
    spec: GPUClusterSpec, present: Sequence[AddOnInfo], recorded: Collection[str]
) -> tuple[tuple[AddOnStep, ...], TypeConflict | None]:
    """The calls that bring Together's add-ons (``present``, every one, as the add-on
    endpoints list them) to the spec, removals first (a name freed can be reused)."""
    by_name = {a.name: a for a in present}
    wanted: dict[str, AddOnSpec] = {a.name: a for a in spec.add_ons or ()}
    removals: list[AddOnStep] = [
        RemoveAddOn(name) for name in sorted(recorded) if name not in wanted and name in by_name
    ]
    others: list[AddOnStep] = []
    for name, add_on in wanted.items():
        there = by_name.get(name)
        if there is None:
            others.append(AddAddOn(_create_request(add_on)))
        elif there.add_on_type != add_on.add_on_type.value:
            return (), TypeConflict(name, add_on.add_on_type.value, there.add_on_type)
        elif differs(add_on.config or {}, there.config.model_dump(mode="json")):
            request = ClusterAddOnUpdateRequest.model_validate({"config": add_on.config})
            others.append(ChangeAddOn(name, request))
    return (*removals, *others), None


def _create_request(add_on: AddOnSpec) -> ClusterAddOnCreateRequest:
    return ClusterAddOnCreateRequest.model_validate(
        {"name": add_on.name, "add_on_type": add_on.add_on_type, "config": add_on.config}
    )


def statuses(
    cluster: GPUClusterInfo, listed: Sequence[AddOnInfo] | None, managed: Collection[str]
) -> list[AddOnStatus]:
    """``status.addOns``: every add-on listed, else the enabled ones the cluster reports.

    A listing is taken, or updated from the answers to the operator's own calls, whenever
    configs change, so its configs are the newer; whether an add-on runs shows first in the
    cluster's own view (its state changes without its config)."""
    reported = {a.name: a for a in cluster.add_ons}
    shown = list(listed) if listed is not None else list(cluster.add_ons)
    return [
        AddOnStatus(
            name=a.name,
            add_on_type=a.add_on_type,
            state=_state(a, reported.get(a.name)),
            managed=a.name in managed,
            config=a.config.model_dump(mode="json", exclude_none=True) or None,
        )
        for a in shown
    ]


def _state(add_on: AddOnInfo, reported: AddOnInfo | None) -> str:
    if not add_on.enabled:
        return DISABLED
    running = add_on.running or (reported is not None and reported.running)
    return RUNNING if running else PENDING


def still_managed(
    shown: Sequence[AddOnStatus],
    recorded: Collection[str],
    *,
    listed: Sequence[AddOnInfo] | None,
) -> frozenset[str]:
    """The names to record as managed after showing ``shown``: the managed ones shown, and,
    without a listing (which alone shows disabled add-ons), the recorded ones not shown."""
    names = frozenset(s.name for s in shown if s.managed)
    if listed is None:
        names |= frozenset(recorded) - {s.name for s in shown}
    return names


def recorded_managed(status_add_ons: object) -> frozenset[str]:
    """The names ``status.addOns`` records as managed."""
    if not isinstance(status_add_ons, list):
        return frozenset()
    return frozenset(
        str(a["name"])
        for a in status_add_ons
        if isinstance(a, dict) and a.get("managed") is True and a.get("name")
    )

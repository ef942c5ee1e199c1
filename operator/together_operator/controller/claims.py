"""Who claims which Together cluster: an index over every GPUCluster the operator watches.

kopf lists every object and indexes it before any handler runs, so a decision about
ownership never misses a claimant that exists. An object claims the cluster its records name
(``status.clusterId``, trusted per :mod:`~together_operator.controller.records`), asks for the
one ``spec.clusterId`` names, and is known by the tag of its UID, which the name of every
cluster it creates carries.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from together_operator.controller.objects import GPUClusterObject
from together_operator.controller.records import recorded_cluster_id
from together_operator.gpucluster.plan import Claim, Incarnation, Rivals, name_tag
from together_operator.together.models import GPUClusterInfo


def _cluster_key(cluster_id: str) -> str:
    return f"cluster:{cluster_id}"


def _tag_key(tag: str) -> str:
    return f"tag:{tag}"


def claims_of(body: Mapping[str, Any]) -> dict[str, Claim]:
    """The index entries of one GPUCluster (kopf keeps them while the object exists)."""
    obj = GPUClusterObject.from_body(body)
    who = obj.incarnation
    entries = {_tag_key(who.tag): Claim(who.uid, who.created_at, recorded=False)}
    recorded = recorded_cluster_id(obj)
    if recorded is not None:
        entries[_cluster_key(recorded)] = Claim(who.uid, who.created_at, recorded=True)
    requested = obj.spec.get("clusterId")
    if isinstance(requested, str) and requested and requested != recorded:
        entries[_cluster_key(requested)] = Claim(who.uid, who.created_at, recorded=False)
    return entries


class ClaimIndex(Protocol):
    """What the reconciler asks of the index."""

    def rivals(
        self, who: Incarnation, cluster_id: str | None, cluster: GPUClusterInfo | None
    ) -> Rivals: ...


class IndexedClaims:
    """:class:`ClaimIndex` over a kopf index of :func:`claims_of` (any mapping of keys to
    iterables of claims will do)."""

    def __init__(self, index: Mapping[str, Iterable[Claim]]) -> None:
        self._index = index

    def _others(self, key: str, who: Incarnation) -> tuple[Claim, ...]:
        return tuple(c for c in self._index.get(key, ()) if c.uid != who.uid)

    def rivals(
        self, who: Incarnation, cluster_id: str | None, cluster: GPUClusterInfo | None
    ) -> Rivals:
        claims = self._others(_cluster_key(cluster_id), who) if cluster_id else ()
        tag = name_tag(cluster.cluster_name) if cluster is not None else None
        creators = self._others(_tag_key(tag), who) if tag else ()
        return Rivals(claims, creators[0] if creators else None)


class NoClaims:
    """:class:`ClaimIndex` of an operator that sees no other object (unit tests)."""

    def rivals(
        self, who: Incarnation, cluster_id: str | None, cluster: GPUClusterInfo | None
    ) -> Rivals:
        return Rivals()

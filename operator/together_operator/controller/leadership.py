"""One operator instance acts at a time: a coordination.k8s.io Lease, as controller-runtime does.

An instance waits until it holds the Lease (it is free, expired, or its own), renews it every
few seconds while it runs, and stops as soon as it cannot prove it still holds it. This keeps
a second instance — ``together-operator run`` on a laptop beside the Deployment, a second Helm
release, an old Pod on a partitioned node — from acting at the same time. It is one of two
layers: the create intent is also written conditionally on the object's resourceVersion, so
even two instances that both act cannot both create a cluster.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

logger = logging.getLogger(__name__)
IN_CLUSTER_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
#: Where the Lease lives when not run in a Pod: the namespace deploy/ installs into.
DEFAULT_NAMESPACE = "together-operator-system"


def default_lease_namespace() -> str:
    """The Pod's namespace in a Pod, else the namespace deploy/ installs the operator into,
    so that a local ``together-operator run`` and the Deployment compete for one Lease."""
    try:
        with open(IN_CLUSTER_NAMESPACE_FILE) as handle:
            return handle.read().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def instance_identity() -> str:
    """Who holds the Lease: the Pod's name (its hostname) and the process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


class LeaseUnavailable(RuntimeError):
    """The Lease cannot be taken at all (its namespace is missing, say): the message says
    what to do."""


@dataclass
class Leadership:
    """Holds the Lease ``namespace/name`` for ``identity``."""

    api: Any  # kubernetes CoordinationV1Api
    namespace: str
    name: str
    identity: str
    duration_seconds: float = 15.0
    clock: Callable[[], datetime.datetime] = _now

    @classmethod
    def for_api_client(
        cls,
        api_client: Any,
        namespace: str,
        name: str,
        identity: str,
        *,
        duration_seconds: float = 15.0,
    ) -> Leadership:
        coordination = client.CoordinationV1Api(api_client)
        return cls(coordination, namespace, name, identity, duration_seconds)

    @property
    def renew_seconds(self) -> float:
        return self.duration_seconds / 3

    @property
    def retry_seconds(self) -> float:
        return min(2.0, self.duration_seconds / 3)

    async def acquire(self) -> None:
        """Return once this instance holds the Lease (waiting for the holder to let go or
        to stop renewing it)."""
        announced = None
        while True:
            holder = await asyncio.to_thread(self._try_acquire)
            if holder is None:
                logger.info("holding Lease %s/%s as %s", self.namespace, self.name, self.identity)
                return
            if holder != announced:
                logger.info(
                    "waiting for Lease %s/%s, held by %s", self.namespace, self.name, holder
                )
                announced = holder
            await asyncio.sleep(self.retry_seconds)

    async def keep(self, lost: Callable[[], None]) -> None:
        """Renew the Lease until cancelled; call ``lost`` (once) when it can no longer be
        shown to be held: another instance took it, or renewing failed for too long."""
        last_renewed = self.clock()
        while True:
            await asyncio.sleep(self.renew_seconds)
            try:
                holder = await asyncio.to_thread(self._try_acquire)
            except Exception as error:
                logger.warning("renewing Lease %s/%s failed: %s", self.namespace, self.name, error)
                if self._within_deadline(last_renewed):
                    continue
                holder = "unknown: renewing kept failing"
            if holder is None:
                last_renewed = self.clock()
                continue
            logger.error(
                "lost Lease %s/%s (holder: %s); stopping, so that only one instance acts",
                self.namespace,
                self.name,
                holder,
            )
            lost()
            return

    def _within_deadline(self, last_renewed: datetime.datetime) -> bool:
        # Stop before the Lease can expire for others: they may take it from then on.
        deadline = datetime.timedelta(seconds=self.duration_seconds - self.renew_seconds)
        return self.clock() - last_renewed < deadline

    async def release(self) -> None:
        """Let go at once (on a clean stop), so that the next instance need not wait."""
        try:
            await asyncio.to_thread(self._release)
        except Exception as error:
            logger.warning("releasing Lease %s/%s failed: %s", self.namespace, self.name, error)

    # --- the Lease protocol, synchronous (runs in a worker thread) --------------------------

    def _try_acquire(self) -> str | None:
        """Take or renew the Lease; None when this instance now holds it, else the holder."""
        now = self.clock()
        try:
            lease = self.api.read_namespaced_lease(self.name, self.namespace)
        except ApiException as error:
            if error.status != 404:
                raise
            return self._create(now)
        spec = lease.spec
        holder = spec.holder_identity
        if holder and holder != self.identity and not self._expired(spec, now):
            return str(holder)
        if holder != self.identity:
            spec.lease_transitions = (spec.lease_transitions or 0) + 1
            spec.acquire_time = now
        spec.holder_identity = self.identity
        spec.lease_duration_seconds = round(self.duration_seconds)
        spec.renew_time = now
        try:
            # The read resourceVersion travels with the object: a concurrent taker gets 409.
            self.api.replace_namespaced_lease(self.name, self.namespace, lease)
        except ApiException as error:
            if error.status == 409:
                return "another instance (it renewed or took the Lease just now)"
            raise
        return None

    def _expired(self, spec: Any, now: datetime.datetime) -> bool:
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return True
        if renewed.tzinfo is None:
            renewed = renewed.replace(tzinfo=datetime.UTC)
        duration = datetime.timedelta(seconds=spec.lease_duration_seconds or self.duration_seconds)
        return bool(now > renewed + duration)

    def _create(self, now: datetime.datetime) -> str | None:
        body = client.V1Lease(
            metadata=client.V1ObjectMeta(name=self.name, namespace=self.namespace),
            spec=client.V1LeaseSpec(
                holder_identity=self.identity,
                lease_duration_seconds=round(self.duration_seconds),
                acquire_time=now,
                renew_time=now,
                lease_transitions=0,
            ),
        )
        try:
            self.api.create_namespaced_lease(self.namespace, body)
        except ApiException as error:
            if error.status == 409:
                return "another instance (it created the Lease just now)"
            if error.status == 404:
                raise LeaseUnavailable(
                    f"cannot create Lease {self.namespace}/{self.name}: namespace "
                    f"{self.namespace!r} does not exist. Create it, or point "
                    "--lease-namespace at the namespace the operator runs in"
                ) from None
            raise
        return None

    def _release(self) -> None:
        lease = self.api.read_namespaced_lease(self.name, self.namespace)
        if lease.spec.holder_identity != self.identity:
            return
        lease.spec.holder_identity = None
        lease.spec.lease_duration_seconds = 1
        self.api.replace_namespaced_lease(self.name, self.namespace, lease)

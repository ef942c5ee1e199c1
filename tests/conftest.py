"""Session-wide Kubernetes for the suite: the local control plane, or an existing cluster.

With ``USE_EXISTING_CLUSTER=1`` and ``KUBECONFIG`` set, the suite runs against that cluster
(kind on a laptop, say); otherwise it starts a real etcd + kube-apiserver on 127.0.0.1.
Everything under ``tests/integration`` is marked ``integration``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import KubeTarget


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in Path(str(item.fspath)).parts:
            item.add_marker(pytest.mark.integration)


def use_existing_cluster() -> bool:
    return os.environ.get("USE_EXISTING_CLUSTER", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="session")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeTarget]:
    """A running Kubernetes API server and an admin kubeconfig for it."""
    if use_existing_cluster():
        from together_operator.devenv.existing import ExistingCluster

        kubeconfig = os.environ.get("KUBECONFIG")
        if not kubeconfig:
            pytest.fail("USE_EXISTING_CLUSTER=1 needs KUBECONFIG to point at the cluster")
        yield ExistingCluster(Path(kubeconfig), tmp_path_factory.mktemp("existing-cluster"))
        return
    from together_operator.devenv import ControlPlane

    with ControlPlane.start(tmp_path_factory.mktemp("control-plane")) as plane:
        yield plane

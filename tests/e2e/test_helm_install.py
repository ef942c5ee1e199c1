"""The Helm chart on a real node: cluster-wide, with watchNamespaces, and an upgrade."""

from __future__ import annotations

import time
from typing import Any

from tests.e2e.conftest import Installation, NodeStack, image_tag, live_clusters
from tests.integration.conftest import GPUClusters
from tests.support import wait_for

#: The same image under a second tag, as a release pipeline would push it.
NEXT_TAG_SUFFIX = "-e2e-next"


def operator_image(node: NodeStack) -> str:
    """The image of the one operator Pod (waiting out a replaced one that is still going)."""

    def one_pod() -> list[dict[str, Any]] | None:
        found = node.operator_pods()
        return found if len(found) == 1 else None

    [pod] = wait_for(one_pod, timeout=60, interval=1, what="exactly one operator Pod")
    return str(pod["spec"]["containers"][0]["image"])


def test_helm_cluster_wide(
    installation: Installation, gpuclusters: GPUClusters, namespace: str
) -> None:
    installation.helm()
    node = installation.node
    assert operator_image(node) == f"together-operator:{image_tag()}"
    gpuclusters.create(namespace, "charted")
    gpuclusters.wait_condition(namespace, "charted", "Ready", "True", timeout=90)
    assert f"{namespace}/charted" in node.operator_logs()
    gpuclusters.delete_and_wait(namespace, "charted", timeout=120)


def test_helm_with_watch_namespaces_manages_only_those(
    installation: Installation, gpuclusters: GPUClusters
) -> None:
    node = installation.node
    watched, other = "e2e-watched", "e2e-unwatched"
    for name in (watched, other):
        node.kubectl("create", "namespace", name)
    try:
        installation.helm(f"watchNamespaces={{{watched}}}")
        gpuclusters.create(watched, "seen")
        gpuclusters.create(other, "unseen")
        gpuclusters.wait_condition(watched, "seen", "Ready", "True", timeout=90)
        # Long enough for the operator to have acted on the other one, had it watched it.
        time.sleep(10)
        assert "status" not in (gpuclusters.get(other, "unseen") or {})
        assert node.simulator.clusters_for(f"{other}-unseen") == []
        # Without a finalizer (never touched) the unwatched object deletes at once.
        gpuclusters.delete_and_wait(other, "unseen", timeout=30)
        gpuclusters.delete_and_wait(watched, "seen", timeout=120)
    finally:
        installation.helm()  # cluster-wide again before the Roles' namespaces go
        for name in (watched, other):
            node.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")


def test_helm_upgrade_to_a_new_tag_while_a_cluster_is_created_ends_with_one_cluster(
    installation: Installation, gpuclusters: GPUClusters, namespace: str
) -> None:
    installation.helm()
    node = installation.node
    old_tag = image_tag()
    new_tag = old_tag + NEXT_TAG_SUFFIX
    node.ctr(
        "images",
        "tag",
        "--force",
        f"docker.io/library/together-operator:{old_tag}",
        f"docker.io/library/together-operator:{new_tag}",
    )
    gpuclusters.create(namespace, "upgraded")
    # At once, while the create is in flight: the Recreate strategy stops the old Pod.
    installation.helm_upgrade(f"image.tag={new_tag}", wait=False)
    wait_for(
        lambda: [
            p for p in node.operator_pods() if p["spec"]["containers"][0]["image"].endswith(new_tag)
        ],
        timeout=60,
        interval=1,
        what="the upgraded operator Pod",
    )
    node.wait_operator_ready()
    gpuclusters.wait_condition(namespace, "upgraded", "Ready", "True", timeout=120)
    assert operator_image(node) == f"together-operator:{new_tag}"
    assert len(node.simulator.clusters_for(f"{namespace}-upgraded")) == 1
    assert len(live_clusters(node, f"{namespace}-upgraded")) == 1
    gpuclusters.delete_and_wait(namespace, "upgraded", timeout=120)

"""Use an existing cluster (kind on a laptop, say) in place of the local control plane.

Users are minted through the CertificateSigningRequest API with the built-in
``kubernetes.io/kube-apiserver-client`` signer, which any conformant cluster with a
controller-manager provides, so RBAC tests run unchanged against it. That signer refuses
the ``system:masters`` group; a user asked for in it gets the ``cluster-admin`` ClusterRole
through a ClusterRoleBinding instead (the same rights, granted by RBAC).
"""

from __future__ import annotations

import base64
import copy
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from together_operator.devenv.kubeconfig import write_kubeconfig
from together_operator.devenv.pki import new_private_key, private_key_pem

MASTERS_GROUP = "system:masters"


def _bind_cluster_admin(rbac: Any, user: str) -> None:
    """Grant ``user`` cluster-admin (idempotent: the binding is named after the user)."""
    from kubernetes.client.rest import ApiException

    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": f"together-test-{user}-cluster-admin"},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "cluster-admin",
        },
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    try:
        rbac.create_cluster_role_binding(binding)
    except ApiException as error:
        if error.status != 409:
            raise


@dataclass
class ExistingCluster:
    """A cluster reached through ``kubeconfig``; users' kubeconfigs are written to ``workdir``."""

    kubeconfig: Path
    workdir: Path

    def mint_user(self, user: str, groups: Sequence[str] = (), *, name: str | None = None) -> Path:
        """A kubeconfig for ``user`` in ``groups``, signed by the cluster's client signer."""
        from kubernetes import client, config

        api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        if MASTERS_GROUP in groups:
            _bind_cluster_admin(client.RbacAuthorizationV1Api(api_client), user)
            groups = [group for group in groups if group != MASTERS_GROUP]
        key = new_private_key()
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, group) for group in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, user))
        request = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name(attributes))
            .sign(key, hashes.SHA256())
        )
        certificates = client.CertificatesV1Api(api_client)
        csr_name = f"together-test-{user}-{uuid.uuid4().hex[:8]}"
        certificates.create_certificate_signing_request(
            {
                "apiVersion": "certificates.k8s.io/v1",
                "kind": "CertificateSigningRequest",
                "metadata": {"name": csr_name},
                "spec": {
                    "request": base64.b64encode(
                        request.public_bytes(serialization.Encoding.PEM)
                    ).decode(),
                    "signerName": "kubernetes.io/kube-apiserver-client",
                    "expirationSeconds": 3600,
                    "usages": ["client auth"],
                },
            }
        )
        try:
            csr = certificates.read_certificate_signing_request(csr_name)
            csr.status.conditions = [
                client.V1CertificateSigningRequestCondition(
                    type="Approved",
                    status="True",
                    reason="TogetherOperatorTests",
                    message="approved by the together-operator test suite",
                )
            ]
            certificates.replace_certificate_signing_request_approval(csr_name, csr)
            cert_pem = self._wait_for_certificate(certificates, csr_name)
        finally:
            certificates.delete_certificate_signing_request(csr_name)
        document = self._user_document(user, cert_pem, private_key_pem(key))
        return write_kubeconfig(self.workdir / "users" / f"{name or user}.kubeconfig", document)

    @staticmethod
    def _wait_for_certificate(certificates: Any, csr_name: str, timeout: float = 30.0) -> bytes:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = certificates.read_certificate_signing_request(csr_name).status
            if status.certificate:
                return base64.b64decode(status.certificate)
            time.sleep(0.5)
        raise RuntimeError(
            f"CertificateSigningRequest {csr_name} was approved but not signed within "
            f"{timeout:.0f}s: does the cluster run kube-controller-manager's signers?"
        )

    def _user_document(self, user: str, cert_pem: bytes, key_pem: bytes) -> dict[str, Any]:
        """The admin kubeconfig's current cluster, with ``user`` as its only credential."""
        admin = yaml.safe_load(self.kubeconfig.read_text())
        current = next(c for c in admin["contexts"] if c["name"] == admin["current-context"])[
            "context"
        ]
        cluster = next(c for c in admin["clusters"] if c["name"] == current["cluster"])
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [copy.deepcopy(cluster)],
            "users": [
                {
                    "name": user,
                    "user": {
                        "client-certificate-data": base64.b64encode(cert_pem).decode(),
                        "client-key-data": base64.b64encode(key_pem).decode(),
                    },
                }
            ],
            "contexts": [{"name": user, "context": {"cluster": cluster["name"], "user": user}}],
            "current-context": user,
        }

"""The embedded local environment: a real etcd + kube-apiserver on loopback, and `dev up/down`.

Stands alone: nothing here imports the operator, so the control plane can be used by any test.
"""

from together_operator.devenv.controlplane import ControlPlane, ControlPlaneError
from together_operator.devenv.toolchain import ToolchainError, ensure_binaries

__all__ = ["ControlPlane", "ControlPlaneError", "ToolchainError", "ensure_binaries"]

"""`together-operator dev up` / `dev down` as a person uses them from a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import use_existing_cluster
from tests.support import child_pids, pid_alive, pids_whose_cmdline_contains
from together_operator.devenv.toolchain import KUBECTL, resolve_binary

pytestmark = pytest.mark.skipif(
    use_existing_cluster(), reason="`dev up` starts the local control plane"
)


def test_dev_up_then_kubectl_then_dev_down_leaves_nothing(tmp_path: Path) -> None:
    state_dir = tmp_path / "dev"
    kubectl = resolve_binary(KUBECTL)
    venv_bin = Path(sys.executable).parent  # where `together-operator` is installed
    env = dict(
        os.environ,
        TOGETHER_OPERATOR_DEV_DIR=str(state_dir),
        KUBECTL=str(kubectl),
        PATH=f"{venv_bin}{os.pathsep}{os.environ['PATH']}",
    )
    script = """
        set -eu
        eval "$(together-operator dev up)"
        "$KUBECTL" get --raw /readyz
        echo
        echo "kubeconfig=$KUBECONFIG"
        curl -sf -H "Authorization: Bearer $TOGETHER_API_KEY" \
            "$TOGETHER_BASE_URL/v1/compute/regions" | head -c 12
        echo
        "$KUBECTL" get crd gpuclusters.compute.together.ai -o name
    """
    supervisor, components = 0, []
    try:
        up = subprocess.run(
            ["bash", "-c", script],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert up.returncode == 0, up.stderr
        lines = up.stdout.splitlines()
        assert lines[0] == "ok"
        assert (
            lines[1] == f"kubeconfig={state_dir / 'control-plane' / 'users' / 'admin.kubeconfig'}"
        )
        assert lines[2] == '{"regions": '  # the simulator answers with the exported key
        assert (
            lines[3]
            == "customresourcedefinition.apiextensions.k8s.io/gpuclusters.compute.together.ai"
        )
        supervisor = int((state_dir / "supervisor.pid").read_text())
        components = child_pids(supervisor)
        assert len(components) == 4  # etcd, kube-apiserver, simulator, operator
        # Progress went to stderr: on stdout it would have broken the `eval` above.
        assert "starting etcd" in up.stderr
    finally:
        down = subprocess.run(
            ["together-operator", "dev", "down"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert pids_whose_cmdline_contains(str(state_dir)) == []
    assert [pid for pid in [supervisor, *components] if pid_alive(pid)] == []
    assert not (state_dir / "env.sh").exists()

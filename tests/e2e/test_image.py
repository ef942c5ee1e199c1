"""The image `dev up --in-cluster` built from the Dockerfile, run for real."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from tests.deploy.test_image import DOCKERFILE, IMAGE_USER, dockerfile_stages
from tests.e2e.conftest import NodeStack, image_tag
from together_operator.devenv.incluster import OPERATOR_REPOSITORY
from together_operator.devenv.node.images import STAND_IN_LABEL, Buildah


def buildah(*args: str) -> str:
    tool = Buildah.for_cache(Path("/dev/null"))
    completed = subprocess.run(
        ["buildah", *args],
        env=tool.environment(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout


def run_in_image(*command: str, user: str = IMAGE_USER) -> str:
    """``command`` in a container of the operator's image, as ``user``, with the image's
    environment (no USER variable: a container gets none)."""
    image = f"{OPERATOR_REPOSITORY}:{image_tag()}"
    container = buildah("from", "--pull=never", image).strip()
    try:
        return buildah("run", "--network=none", "--user", user, container, "--", *command)
    finally:
        buildah("rm", container)


def test_image_user_has_a_name_for_kopf(node_stack: NodeStack) -> None:
    """kopf's peering identity calls getpass.getuser(); for a UID without a passwd entry and
    no USER variable that raised KeyError('getpwuid(): uid not found: 65532') and the Pod
    crash-looped."""
    out = run_in_image("python", "-c", "import getpass, os; print(getpass.getuser(), os.getuid())")
    assert out.split() == ["together-operator", "65532"]


def test_image_runs_the_operator_from_its_venv(node_stack: NodeStack) -> None:
    """The final stage's PATH leads to the venv's entry point (and the venv has no pip)."""
    out = run_in_image(
        "sh", "-c", "command -v together-operator; python -c 'import pip' 2>&1 || true"
    )
    assert out.splitlines()[0] == "/opt/venv/bin/together-operator"
    assert "No module named 'pip'" in out


def test_image_config_is_the_dockerfiles(node_stack: NodeStack) -> None:
    final = dockerfile_stages(DOCKERFILE.read_text())[-1]
    image = f"{OPERATOR_REPOSITORY}:{image_tag()}"
    config = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    assert config["User"] == final.last("USER")
    assert config["Entrypoint"] == json.loads(final.last("ENTRYPOINT"))
    assert config["Cmd"] == json.loads(final.last("CMD"))
    assert {"8080/tcp", "8081/tcp"} <= set(config["ExposedPorts"])


def test_base_image_stand_in_is_announced(node_stack: NodeStack) -> None:
    """Where the FROM image could not be pulled, the output of `dev up` says a stand-in was
    used, and only the stand-in carries the stand-in label."""
    base = dockerfile_stages(DOCKERFILE.read_text())[-1].base
    labels = json.loads(buildah("inspect", "--type", "image", base))["OCIv1"]["config"]["Labels"]
    progress = (node_stack.state_dir / "dev-up.progress").read_text()
    if labels and STAND_IN_LABEL in labels:
        # First build: "... cannot be pulled here ... building a stand-in"; later: "using the
        # stand-in built from Debian ...".
        assert re.search(rf"base image {re.escape(base)}(:| cannot be pulled).*stand-in", progress)
    else:
        assert f"base image {base}: found in buildah's storage" in progress
    image = f"{OPERATOR_REPOSITORY}:{image_tag()}"
    own = json.loads(buildah("inspect", "--type", "image", image))["OCIv1"]["config"]
    assert f"building {image} from {DOCKERFILE}" in progress
    assert own["User"] == IMAGE_USER

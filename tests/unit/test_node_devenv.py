"""The node's pieces that need no root: images' names, the record, cleanup's finders, the
system package check, the dev install's one change to deploy/, and grouped builds."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.support import wait_for
from together_operator.devenv import system, toolchain
from together_operator.devenv.incluster import deploy_image_tag, pointed_at
from together_operator.devenv.node import cleanup
from together_operator.devenv.node.images import dockerfile_base_images, normalized_name, pause_tag
from together_operator.devenv.node.record import NodeRecord, process_start_time
from together_operator.devenv.stack import StackOptions

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("reference", "normalized"),
    [
        ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
        ("python", "docker.io/library/python:latest"),
        ("bitnami/kubectl:1.30", "docker.io/bitnami/kubectl:1.30"),
        ("registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10.2"),
        ("localhost:5000/x:1", "localhost:5000/x:1"),
    ],
)
def test_image_names_are_normalized_as_containerd_does(reference: str, normalized: str) -> None:
    assert normalized_name(reference) == normalized


def test_base_images_of_the_projects_dockerfile() -> None:
    assert dockerfile_base_images((REPO / "Dockerfile").read_text()) == [
        "python:3.11-slim-bookworm"
    ]


def test_base_images_skip_stages_and_scratch() -> None:
    text = (
        "ARG B=debian:12\nFROM ${B} AS build\nFROM build\nFROM scratch\nFROM --platform=x alpine\n"
    )
    assert dockerfile_base_images(text) == ["debian:12", "alpine"]


def test_pause_tag_comes_from_the_kubernetes_makefile(tmp_path: Path) -> None:
    makefile = tmp_path / "build" / "pause" / "Makefile"
    makefile.parent.mkdir(parents=True)
    makefile.write_text("REGISTRY ?= x\nTAG ?= 3.10.2\nREV = 1\n")
    assert pause_tag(tmp_path) == "3.10.2"


def test_record_round_trips_and_knows_a_reused_pid(tmp_path: Path) -> None:
    record = NodeRecord(tmp_path / "record.json", sysctls={"vm/overcommit_memory": "0"})
    record.addresses.append(("10.200.0.1/32", "lo"))
    record.note_process("self", os.getpid())
    loaded = NodeRecord.load(record.path)
    assert loaded == record
    assert loaded.processes[0].start_time == process_start_time(os.getpid())
    record.discard()
    assert NodeRecord.load(record.path) is None


def test_process_start_time_of_a_finished_process_is_none() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert process_start_time(child.pid) is None


def test_processes_are_found_by_the_marker_on_their_command_line(tmp_path: Path) -> None:
    marker = str(tmp_path / "containerd.sock")
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", marker])
    try:
        # Between fork and exec the child still shows the parent's command line: wait.
        wait_for(
            lambda: cleanup.pids_with_markers([marker]) == [child.pid],
            timeout=10,
            interval=0.05,
            what="the child to show its command line",
        )
    finally:
        child.kill()
        child.wait()
    assert cleanup.pids_with_markers([marker]) == []


def test_cgroups_are_read_and_removed_deepest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cleanup, "CGROUP_MOUNT", tmp_path)
    pods = tmp_path / "memory" / "together-node" / "kubepods" / "pod1"
    pods.mkdir(parents=True)
    (pods / "cgroup.procs").write_text("101\n102\n")
    (tmp_path / "pids" / "together-node").mkdir(parents=True)
    (tmp_path / "pids" / "together-node" / "cgroup.procs").write_text("103\n")
    assert cleanup.cgroup_pids("/together-node") == [101, 102, 103]
    (pods / "cgroup.procs").unlink()  # a real cgroup's files go with its directory
    (tmp_path / "pids" / "together-node" / "cgroup.procs").unlink()
    cleanup.remove_cgroups("/together-node", timeout=1)
    assert list(tmp_path.glob("*/together-node")) == []


def test_container_log_links_into_the_state_dir_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    links = tmp_path / "containers"
    links.mkdir()
    monkeypatch.setattr(cleanup, "CONTAINER_LOG_LINKS", links)
    (links / "ours.log").symlink_to("/state/node/kubelet/pod-logs/x/0.log")
    (links / "theirs.log").symlink_to("/var/log/pods/y/0.log")
    cleanup.remove_container_log_links(["/state/node"])
    assert sorted(p.name for p in links.iterdir()) == ["theirs.log"]


def test_mountinfo_escapes_are_decoded() -> None:
    assert cleanup._unescape(r"/state/with\040space") == "/state/with space"


def test_missing_packages_without_root_is_a_clear_error() -> None:
    requirements = (system.Requirement("not-a-real-package", "/nonexistent/tool"),)
    with pytest.raises(system.SystemPackagesError, match=r"apt-get install .*not-a-real-package"):
        system.ensure_system_packages(lambda _: None, requirements, is_root=False)


def test_missing_packages_as_root_are_installed_with_apt(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    requirements = (system.Requirement("some-package", str(tool)),)
    calls: list[list[str]] = []

    def apt(argv: list[str]) -> None:
        calls.append(argv)
        tool.write_text("")  # the package "installs" the program

    system.ensure_system_packages(lambda _: None, requirements, is_root=True, runner=apt)
    assert calls == [
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "--no-install-recommends", "some-package"],
    ]


def test_dev_install_only_points_the_operator_at_the_simulator() -> None:
    rendered = yaml.safe_dump_all(
        [
            {"kind": "Namespace", "metadata": {"name": "together-operator-system"}},
            {
                "kind": "Deployment",
                "metadata": {"name": "together-operator"},
                "spec": {"template": {"spec": {"containers": [{"name": "operator", "env": []}]}}},
            },
        ]
    )
    namespace, deployment = yaml.safe_load_all(pointed_at(rendered, "http://10.200.0.1:1234"))
    assert namespace == {"kind": "Namespace", "metadata": {"name": "together-operator-system"}}
    assert deployment["spec"]["template"]["spec"]["containers"][0]["env"] == [
        {"name": "TOGETHER_BASE_URL", "value": "http://10.200.0.1:1234"}
    ]


def test_dev_image_tag_is_the_one_deploy_installs() -> None:
    kustomization = yaml.safe_load((REPO / "deploy" / "kustomization.yaml").read_text())
    assert deploy_image_tag(REPO) == kustomization["images"][0]["newTag"]


def test_stack_options_survive_the_supervisors_command_line() -> None:
    options = StackOptions(speed=30.0, with_operator=False, in_cluster=True)
    assert StackOptions.parse(options.argv()) == options
    assert StackOptions.parse([]) == StackOptions()


def test_tools_of_one_module_build_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(toolchain, "find_binary", lambda tool: None)
    groups: list[tuple[str, ...]] = []

    def build(tools: tuple[toolchain.GoTool, ...], progress: object) -> dict[str, Path]:
        groups.append(tuple(t.name for t in tools))
        return {t.name: Path("/cache") / t.name for t in tools}

    monkeypatch.setattr(toolchain, "build_group_and_cache", build)
    found = toolchain.ensure_binaries(toolchain.NODE_TOOLS, progress=lambda _: None)
    assert sorted(groups) == [
        ("coredns",),
        ("kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy"),
    ]
    assert list(found) == [tool.name for tool in toolchain.NODE_TOOLS]

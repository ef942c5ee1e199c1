"""Where the control-plane binaries come from, and how the cache survives races and failures."""

from __future__ import annotations

import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from together_operator.devenv import toolchain
from together_operator.devenv.toolchain import (
    ETCD,
    KUBE_APISERVER,
    GoTool,
    ToolchainError,
    build_and_cache,
    cached_binary_path,
    find_binary,
    kubernetes_staging_replacements,
    wrapper_gomod,
)


def make_executable(path: Path, content: str = "#!/bin/sh\nexit 0\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No binaries anywhere: empty PATH entries, an empty cache, no asset variables."""
    for variable in ("KUBEBUILDER_ASSETS", ETCD.env_var, KUBE_APISERVER.env_var):
        monkeypatch.delenv(variable, raising=False)
    empty_bin = tmp_path / "empty-bin"
    empty_bin.mkdir()
    monkeypatch.setenv("PATH", str(empty_bin))
    monkeypatch.setenv("TOGETHER_OPERATOR_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_explicit_asset_variable_wins_over_everything(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = make_executable(isolated / "explicit" / "etcd")
    make_executable(isolated / "assets" / "etcd")
    make_executable(cached_binary_path(ETCD))
    monkeypatch.setenv("TEST_ASSET_ETCD", str(explicit))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(isolated / "assets"))
    assert find_binary(ETCD) == explicit


def test_explicit_asset_variable_pointing_nowhere_is_a_clear_error(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_ASSET_KUBE_APISERVER", str(isolated / "missing"))
    with pytest.raises(ToolchainError, match=r"TEST_ASSET_KUBE_APISERVER=.*not an executable"):
        find_binary(KUBE_APISERVER)


def test_kubebuilder_assets_then_path_then_cache(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cached = make_executable(cached_binary_path(ETCD))
    assert find_binary(ETCD) == cached

    on_path = make_executable(isolated / "path-bin" / "etcd")
    monkeypatch.setenv("PATH", str(on_path.parent))
    assert find_binary(ETCD) == on_path

    assets = make_executable(isolated / "assets" / "etcd")
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets.parent))
    assert find_binary(ETCD) == assets


def test_nothing_found_means_build(isolated: Path) -> None:
    assert find_binary(ETCD) is None


def test_missing_go_says_what_to_install(isolated: Path) -> None:
    with pytest.raises(ToolchainError, match=r"no `go`.*KUBEBUILDER_ASSETS"):
        toolchain.resolve_binary(ETCD, progress=lambda _: None)


FAKE = GoTool("fake-tool", "example.com/fake", "v1.2.3", "example.com/fake/cmd")


def _slow_counting_builder(tool: GoTool, output: Path, log_path: Path) -> None:
    with (output.parent.parent / "builds").open("a") as counter:
        counter.write("built\n")
    time.sleep(0.5)  # long enough for the other process to be waiting on the lock
    make_executable(output)


def _build_in_child(cache: str, results: str) -> None:
    os.environ["TOGETHER_OPERATOR_CACHE"] = cache
    path = build_and_cache(FAKE, lambda _: None, builder=_slow_counting_builder)
    with open(results, "a") as out:
        out.write(f"{path}\n")


def test_racing_processes_build_once_and_share_the_result(isolated: Path) -> None:
    cache = isolated / "cache"
    results = isolated / "results"
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(target=_build_in_child, args=(str(cache), str(results))) for _ in range(3)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=30)
        assert child.exitcode == 0
    target = cached_binary_path(FAKE)
    assert (target.parent / "builds").read_text() == "built\n"
    assert results.read_text().splitlines() == [str(target)] * 3


def test_failed_build_leaves_no_half_written_binary(isolated: Path) -> None:
    def broken_builder(tool: GoTool, output: Path, log_path: Path) -> None:
        output.write_text("#!/bin/sh\n# truncated")
        raise ToolchainError("go build failed")

    with pytest.raises(ToolchainError, match="go build failed"):
        build_and_cache(FAKE, lambda _: None, builder=broken_builder)
    slot = cached_binary_path(FAKE)
    assert not slot.exists()
    assert list(slot.parent.iterdir()) == []  # the scratch directory is gone too


KUBERNETES_GOMOD_EXCERPT = """
module k8s.io/kubernetes

require (
\tk8s.io/api v0.0.0
\tgithub.com/spf13/cobra v1.10.0
)

replace (
\tk8s.io/api => ./staging/src/k8s.io/api
\tk8s.io/client-go => ./staging/src/k8s.io/client-go
\tgithub.com/example/fork => github.com/example/fork v1.0.0
)
"""


def test_staging_modules_map_to_their_published_twins() -> None:
    assert kubernetes_staging_replacements(KUBERNETES_GOMOD_EXCERPT, "v1.36.3") == {
        "k8s.io/api": "v0.36.3",
        "k8s.io/client-go": "v0.36.3",
    }


def test_wrapper_module_requires_the_tool_and_replaces_staging() -> None:
    gomod = wrapper_gomod(KUBE_APISERVER, {"k8s.io/api": "v0.36.3"})
    assert f"require k8s.io/kubernetes {toolchain.KUBERNETES_VERSION}" in gomod
    assert "\tk8s.io/api => k8s.io/api v0.36.3" in gomod


def test_pinned_versions_meet_the_floor() -> None:
    minor = int(toolchain.KUBERNETES_VERSION.split(".")[1])
    assert minor >= 34
    assert toolchain.ETCD_VERSION.startswith("v3.6.")

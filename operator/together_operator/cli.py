"""Entry point `together-operator`: run | simulator | dev | crd (see the brief's CLI contract)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from together_operator import __version__


def _progress(message: str) -> None:
    click.echo(message, err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="together-operator")
def main() -> None:
    """Manage Together AI GPU clusters from Kubernetes."""


@main.group()
def dev() -> None:
    """The local stack: a real etcd + kube-apiserver on 127.0.0.1, in the background."""


_STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the stack keeps its files and logs "
    "[default: $TOGETHER_OPERATOR_DEV_DIR or ~/.local/state/together-operator/dev].",
)


@dev.command("up")
@_STATE_DIR
def dev_up(state_dir: Path | None) -> None:
    """Start the local stack; prints `export` lines for `eval "$(together-operator dev up)"`."""
    from together_operator.devenv import stack

    try:
        click.echo(stack.up(state_dir or stack.default_state_dir(), _progress), nl=False)
    except (stack.DevStackError, RuntimeError) as error:
        raise click.ClickException(str(error)) from error


@dev.command("down")
@_STATE_DIR
def dev_down(state_dir: Path | None) -> None:
    """Stop everything `dev up` started."""
    from together_operator.devenv import stack

    stack.down(state_dir or stack.default_state_dir(), _progress)


@dev.command("tools")
def dev_tools() -> None:
    """Find or build etcd, kube-apiserver and kubectl; print where each one is."""
    from together_operator.devenv.toolchain import ToolchainError, ensure_binaries

    try:
        for name, path in ensure_binaries(progress=_progress).items():
            click.echo(f"{name}\t{path}")
    except ToolchainError as error:
        raise click.ClickException(str(error)) from error


if __name__ == "__main__":
    sys.exit(main())

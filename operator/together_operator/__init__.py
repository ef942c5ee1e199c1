"""Kubernetes operator that manages Together AI GPU clusters declaratively."""

from importlib.metadata import PackageNotFoundError, version

try:
    # One version source: pyproject.toml (the installed distribution's metadata).
    __version__ = version("together-operator")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0.0.0+unknown"

"""Kubernetes operator that manages Together AI GPU clusters declaratively."""

__version__ = "0.1.0"

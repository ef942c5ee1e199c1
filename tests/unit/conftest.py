"""Fixtures of the unit tests that more than one file uses."""

from tests.unit.reconciler_harness import harness, harness_ignoring_updates, sim

__all__ = ["harness", "harness_ignoring_updates", "sim"]

"""Prints the contract fuzz test's figures at the end of the session, so they can be quoted."""

from __future__ import annotations

import json

import pytest

from tests.contract.test_contract_fuzz import FIGURES


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for figures in FIGURES:
        terminalreporter.write_sep("-", "contract fuzzing")
        terminalreporter.write_line(json.dumps(figures, sort_keys=True))

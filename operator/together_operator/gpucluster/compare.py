"""How the operator compares what the spec asks with what Together reports.

Only what the spec sets is compared (a field the spec leaves out is Together's to choose), and
proto3's zero values (false, "", 0, empty, the NONE enum) count as unset, because Together's
servers omit them in answers.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


def _is_unset(value: Any) -> bool:
    return value in (None, False, "", "NONE", {}, [])


def differs(wanted: Any, observed: Any) -> bool:
    """Whether Together's value differs from the spec's, comparing only what the spec sets."""
    if isinstance(wanted, dict):
        seen = observed if isinstance(observed, dict) else {}
        return any(differs(value, seen.get(key)) for key, value in wanted.items())
    if _is_unset(wanted):
        return not _is_unset(observed)
    return bool(wanted != observed)


def as_json(value: Any) -> Any:
    """A model as the JSON it is sent as (unset fields left out); anything else as is."""
    return (
        value.model_dump(mode="json", exclude_none=True) if isinstance(value, BaseModel) else value
    )

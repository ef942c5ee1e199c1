"""The base of every wire model, and the one rule for serialising requests.

Serialise with `model_dump(mode="json", exclude_none=True)`: the contract has no nullable
fields, so an unset optional field must be left out rather than sent as `null`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    """Base of every wire model: unknown fields are ignored, names are the wire names."""

    # hide_input_in_errors: a validation error must never quote a body (it may hold a
    # kube_config) into a log line or an exception message.
    model_config = ConfigDict(extra="ignore", hide_input_in_errors=True)

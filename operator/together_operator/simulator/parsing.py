"""Reading requests as strictly as the contract types them, so that a wrong type is a 400
naming the field and never a coercion, a crash or a 500.

JSON bodies: at most `MAX_DEPTH` levels deep; no `null` for a field of the contract (it has no
nullable fields); no coercion (`"8"` is not an integer, `1` and `"yes"` are not booleans);
integers within int32 (Together's API is protobuf-backed); date-times in RFC 3339 with an
offset, inside protobuf Timestamp's range once in UTC. Fields the contract does not know are
ignored, as the real service ignores them. Query parameters: integers and enums likewise.
"""

from __future__ import annotations

import json
import re
import types
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Final, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from together_operator.simulator.errors import InvalidRequest

MAX_DEPTH: Final = 32
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1
# RFC 3339 `date-time` as its grammar (and JSON Schema) has it: a full date, `T` (or `t`), a
# full time with optional fraction, and a mandatory offset.
_RFC3339: Final = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})", re.ASCII
)

Model = TypeVar("Model", bound=BaseModel)
_Container = dict[Any, Any] | list[Any]
Enum = TypeVar("Enum", bound=StrEnum)


def read_json(raw: bytes) -> object:
    """Decode a request body; anything that is not plain, shallow-enough JSON is a 400."""
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("the request body is not valid JSON") from None
    except RecursionError:
        raise InvalidRequest(f"the request body is nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(body)
    return body


def _reject_constant(name: str) -> object:
    # Python's decoder accepts NaN and Infinity; JSON does not.
    raise ValueError(f"{name} is not JSON")


def _check_depth(body: object) -> None:
    level: list[_Container] = [body] if isinstance(body, dict | list) else []
    for _ in range(MAX_DEPTH):
        children: list[_Container] = []
        for container in level:
            values = container.values() if isinstance(container, dict) else container
            children.extend(v for v in values if isinstance(v, dict | list))
        if not children:
            return
        level = children
    raise InvalidRequest(f"the request body is nested deeper than {MAX_DEPTH} levels")


def parse(model: type[Model], body: object) -> Model:
    """`body` (decoded JSON) as `model`, checked strictly; the first bad field is named in a
    400. Date-times come back in UTC."""
    if not isinstance(body, dict):
        raise InvalidRequest(f"the request body must be a JSON object ({model.__name__})")
    _check_fields(model, body, "")
    try:
        parsed = model.model_validate_json(json.dumps(body), strict=True)
    except ValidationError as error:
        first = error.errors(include_input=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "(body)"
        if first["type"] == "missing":
            raise InvalidRequest(f"invalid {model.__name__}: `{field}` is required") from None
        shown = _shown(body, first["loc"])
        raise InvalidRequest(
            f"invalid {model.__name__}: `{field}`: {first['msg']} (got {shown})"
        ) from None
    _to_utc(parsed, "")
    return parsed


def _shown(body: object, location: Sequence[int | str]) -> str:
    value: Any = body
    for part in location:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return "?"
    return repr(value)[:80]


def _field_type(annotation: Any) -> Any:
    """`X` for `X | None`; the annotation itself otherwise."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [member for member in get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return members[0]
    return annotation


def _check_fields(model: type[BaseModel], body: dict[str, Any], prefix: str) -> None:
    for name, field in model.model_fields.items():
        key = field.alias or name
        if key in body:
            _check_value(_field_type(field.annotation), body[key], f"{prefix}{key}")


def _check_value(kind: Any, value: object, where: str) -> None:
    if value is None:
        raise InvalidRequest(f"`{where}` must not be null: omit the field to leave it unset")
    if isinstance(kind, type) and issubclass(kind, BaseModel) and isinstance(value, dict):
        _check_fields(kind, value, f"{where}.")
    elif get_origin(kind) is list and isinstance(value, list):
        (item,) = get_args(kind)
        for index, element in enumerate(value):
            _check_value(_field_type(item), element, f"{where}[{index}]")
    elif kind is int and isinstance(value, int) and not isinstance(value, bool):
        check_int32(where, value)
    elif kind is datetime and isinstance(value, str) and not _RFC3339.fullmatch(value):
        raise InvalidRequest(
            f"`{where}` must be an RFC 3339 date-time with an offset, "
            f"e.g. 2026-03-01T00:00:00Z (got {value[:40]!r})"
        )


def check_int32(where: str, value: int) -> None:
    """`value` fits a protobuf int32."""
    if not INT32_MIN <= value <= INT32_MAX:
        raise InvalidRequest(f"`{where}` is out of range for a 32-bit integer (got {value})")


def _to_utc(model: BaseModel, prefix: str) -> None:
    """Every date-time in `model`, in UTC; one outside protobuf Timestamp's range (years 1 to
    9999 in UTC) is a 400, as it is for a protobuf-backed server."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, datetime):
            try:
                setattr(model, name, value.astimezone(UTC))
            except OverflowError:
                raise InvalidRequest(
                    f"`{prefix}{name}` is outside the representable range "
                    "(0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z)"
                ) from None
        for index, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, BaseModel):
                suffix = f"[{index}]" if isinstance(value, list) else ""
                _to_utc(item, f"{prefix}{name}{suffix}.")


# --- query parameters ------------------------------------------------------------------------


def query_int(query: Mapping[str, str], name: str, *, default: int, minimum: int = 0) -> int:
    """An integer query parameter (`default` when absent)."""
    text = query.get(name)
    if text is None or text == "":
        return default
    if not re.fullmatch(r"[+-]?\d{1,12}", text, re.ASCII):
        raise InvalidRequest(f"query parameter `{name}` must be an integer (got {text[:40]!r})")
    value = int(text)
    check_int32(name, value)
    if value < minimum:
        raise InvalidRequest(f"query parameter `{name}` must be at least {minimum} (got {value})")
    return value


def query_enum(query: Mapping[str, str], name: str, kind: type[Enum]) -> Enum | None:
    """An enum query parameter, or None when absent."""
    text = query.get(name)
    if text is None or text == "":
        return None
    return _enum_value(name, text, kind)


def query_enums(values: Sequence[str], name: str, kind: type[Enum]) -> frozenset[Enum]:
    """A repeated enum query parameter (`name=A&name=B`); empty when absent."""
    return frozenset(_enum_value(name, text, kind) for text in values if text != "")


def _enum_value(name: str, text: str, kind: type[Enum]) -> Enum:
    try:
        return kind(text)
    except ValueError:
        known = ", ".join(member.value for member in kind)
        raise InvalidRequest(
            f"query parameter `{name}` {text[:40]!r} is not one of {known}"
        ) from None

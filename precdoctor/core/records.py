"""Typed result records: JSON encoding and validated decoding for dataclasses.

Every result precdoctor writes (comparisons, evaluations, runs) is a dataclass
deriving from ``Record``. ``to_json`` gives plain JSON values; ``from_json``
rebuilds the dataclass and refuses, with one line naming the field, anything
that does not fit its type hints: unknown keys, missing required keys, wrong
types. Reading a run file back is therefore also where bad run files are
refused, and a renamed field fails loudly instead of reading as a default.
Integers are counts, sizes, indices or ids, so negative ones are refused too; a field that
is a net change (``Signed``) may be negative.
A record may define ``validate(where)`` for what its types allow but its
meaning does not (negative counts, paths where a file name belongs); decoding
calls it on every record it builds.

JSON has no infinities or NaN; non-finite floats are written as the strings
"inf", "-inf" and "nan", so a record survives a round trip exactly.
"""
from __future__ import annotations

import dataclasses
from enum import Enum
import math
import types
import typing
from functools import cache
from typing import Any, Literal, Union

from .errors import BadInput

SKIP = {"json": False}  # field(metadata=SKIP): kept in memory, never written


class Signed(int):
    """The type hint of an integer that may be negative: a net change (nodes a rewrite adds minus those it removes)."""
_NONFINITE = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode(value: Any) -> Any:
    """Plain JSON value of a record, list, dict, number or string."""
    if isinstance(value, Record):
        return value.to_json()
    if isinstance(value, Enum):  # a status (status.py): its word
        return value.value
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [encode(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value)]
    if hasattr(value, "item"):  # numpy scalars
        return encode(value.item())
    if hasattr(value, "tolist"):  # numpy arrays
        return encode(value.tolist())
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


class Record:
    """Base of the result dataclasses (see the module docstring)."""

    def to_json(self) -> dict:
        return {f.name: encode(getattr(self, f.name)) for f in dataclasses.fields(self) if f.metadata.get("json", True)}

    @classmethod
    def from_json(cls, data: Any, where: str = ""):
        return _decode(cls, data, where or cls.__name__)


@cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _fail(where: str, want: str, got: Any) -> BadInput:
    shown = repr(got)
    return BadInput(f"{where}: expected {want}, found {shown if len(shown) <= 40 else shown[:37] + '...'}")


def _decode_record(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise _fail(where, "an object", data)
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.metadata.get("json", True)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadInput(f"{where}: unknown field {unknown[0]!r}")
    kwargs = {}
    for name, f in fields.items():
        if name in data:
            kwargs[name] = _decode(hints[name], data[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise BadInput(f"{where}: missing field {name!r}")
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate(where)
    return obj


def _decode(tp: Any, data: Any, where: str):
    if isinstance(tp, type) and issubclass(tp, Record):
        return _decode_record(tp, data, where)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return data
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return tp(data)
        except ValueError:
            raise _fail(where, " or ".join(repr(m.value) for m in tp), data) from None
    if origin in (Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _decode(a, data, where)
            except BadInput as exc:
                errors.append(exc)
        raise errors[0] if len(errors) == 1 else _fail(where, " or ".join(_name(a) for a in args), data)
    if origin is Literal:
        if data not in args:
            raise _fail(where, " or ".join(repr(a) for a in args), data)
        return data
    if origin in (list, tuple):
        if not isinstance(data, list):
            raise _fail(where, "a list", data)
        item = args[0] if args else Any
        out = [_decode(item, v, f"{where}[{k}]") for k, v in enumerate(data)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(data, dict):
            raise _fail(where, "an object", data)
        item = args[1] if len(args) > 1 else Any
        return {k: _decode(item, v, f"{where}[{k!r}]") for k, v in data.items()}
    if origin in (frozenset, set):
        if not isinstance(data, list):
            raise _fail(where, "a list", data)
        return frozenset(_decode(args[0], v, f"{where}[{k}]") for k, v in enumerate(data))
    return _scalar(tp, data, where)


def _scalar(tp: Any, data: Any, where: str):
    if tp is float:
        if isinstance(data, str) and data in _NONFINITE:
            return _NONFINITE[data]
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return float(data)
        raise _fail(where, "a number", data)
    if tp is Signed:
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        raise _fail(where, "an integer", data)
    if tp is int:  # every other integer a record holds is a count, a size, an index or an id: never negative
        if isinstance(data, int) and not isinstance(data, bool) and data >= 0:
            return data
        raise _fail(where, "an integer (0 or more)", data)
    if tp is bool:
        if isinstance(data, bool):
            return data
        raise _fail(where, "true or false", data)
    if tp is str:
        if isinstance(data, str):
            return data
        raise _fail(where, "a string", data)
    if tp is type(None):
        if data is None:
            return None
        raise _fail(where, "null", data)
    raise TypeError(f"{where}: no decoder for {tp!r}")


def _name(tp: Any) -> str:
    return {float: "a number", int: "an integer", str: "a string", bool: "true or false"}.get(tp, getattr(tp, "__name__", str(tp)))

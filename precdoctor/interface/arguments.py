"""The Python API's arguments checked as the command line checks its options, before any work: each wrong type is one
``BadInput`` line that names the argument, what it must be and what it got (never an AttributeError from inside).

Paths are ``str`` or ``os.PathLike`` (bytes are refused: a folder named ``b'/abs/out'`` is no one's intent); where a
list is expected, a lone string (or path, or feed dict) is one item, never read character by character; ``None``
where a list is expected is the empty list.
"""
from __future__ import annotations

import numbers
import os
from typing import Any

from ..core.errors import BadInput


def _got(value: Any) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def path(value: Any, name: str, optional: bool = False) -> str | None:
    """A path argument as ``str``; ``None`` when ``optional`` and not given."""
    if value is None and optional:
        return None
    if type(value).__name__ == "ModelProto":
        raise BadInput(f"{name} must be a path to an .onnx file, not an onnx ModelProto: save it with "
                       f"onnx.save(model, 'model.onnx') (external data for models past 2 GB) and pass the path")
    if isinstance(value, (bytes, bytearray)):
        raise BadInput(f"{name} must be a path as str or os.PathLike, not bytes ({_got(value)}): decode it first")
    if not isinstance(value, (str, os.PathLike)):
        raise BadInput(f"{name} must be a path (str or os.PathLike), not {_got(value)}")
    text = os.fspath(value)
    if isinstance(text, bytes):
        raise BadInput(f"{name} must be a path as str or os.PathLike, not a bytes path ({_got(value)})")
    if not text:
        raise BadInput(f"{name} must not be an empty path")
    return text


def _many(value: Any, name: str, lone: tuple[type, ...]) -> tuple:
    if value is None:
        return ()
    if isinstance(value, lone):
        return (value,)
    if isinstance(value, (bytes, bytearray)):
        raise BadInput(f"{name} must be a list, not {_got(value)}")
    if isinstance(value, (list, tuple)) or (not isinstance(value, (dict, str)) and hasattr(value, "__iter__")):
        return tuple(value)
    raise BadInput(f"{name} must be a list, not {_got(value)}")


def paths(value: Any, name: str) -> tuple[str, ...]:
    """A list of paths (a lone path is one item)."""
    return tuple(path(v, f"{name}[{k}]") for k, v in enumerate(_many(value, name, (str, os.PathLike))))


def texts(value: Any, name: str) -> tuple[str, ...]:
    """A list of strings (pin selectors, criteria): a lone string is one item."""
    out = _many(value, name, (str,))
    bad = next((v for v in out if not isinstance(v, str)), None)
    if bad is not None or any(isinstance(v, str) and not v for v in out):
        raise BadInput(f"{name} must be a list of non-empty strings, not one holding {_got(bad)}")
    return out


def inputs(value: Any, name: str = "inputs") -> tuple[tuple[str, ...], tuple[dict, ...]]:
    """Input samples: paths (.npz, Polygraphy JSON) and feed dicts {input name: array}; a lone one is one item."""
    files, arrays = [], []
    for k, v in enumerate(_many(value, name, (str, os.PathLike, dict))):
        if isinstance(v, dict):
            bad = next((key for key in v if not isinstance(key, str)), None)
            if bad is not None:
                raise BadInput(f"{name}[{k}] must map input names (str) to arrays, not hold the key {_got(bad)}")
            arrays.append(v)
        else:
            files.append(path(v, f"{name}[{k}]"))
    if files and arrays:
        raise BadInput(f"{name} must be all paths or all feed dicts, not a mix")
    return tuple(files), tuple(arrays)


def input_shapes(value: Any, name: str = "input_shapes") -> tuple[str, ...]:
    """Shapes for seeded random data: a dict {input name: [d0, d1, ...]} or ``NAME:[D,...]`` strings."""
    if isinstance(value, dict):
        out = []
        for key, dims in value.items():
            if not isinstance(key, str) or isinstance(dims, (str, bytes)) or not hasattr(dims, "__iter__"):
                raise BadInput(f"{name} must map input names to lists of dimensions, not {_got(key)}: {_got(dims)}")
            dims = list(dims)
            if not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims):
                raise BadInput(f"{name}[{key!r}] must be a list of integers, not {_got(dims)}")
            out.append(f"{key}:[{','.join(str(int(d)) for d in dims)}]")
        return tuple(out)
    items = _many(value, name, (str,))
    if not all(isinstance(v, str) for v in items):
        raise BadInput(f"{name} must be a dict {{input name: [d0, d1, ...]}} or 'NAME:[D,...]' strings, not {_got(value)}")
    return items


def integer(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise BadInput(f"{name} must be an integer, not {_got(value)}")
    if minimum is not None and value < minimum:
        raise BadInput(f"{name} must be {minimum} or more, not {value}")
    return int(value)


def flag(value: Any, name: str) -> bool:
    if not isinstance(value, bool) and type(value).__name__ != "bool_":
        raise BadInput(f"{name} must be True or False, not {_got(value)}")
    return bool(value)


def text(value: Any, name: str, optional: bool = False) -> str | None:
    """A string (its value is the parameters' to check: precision, fix, backend...)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{name} must be a string, not {_got(value)}")
    return value


def instance(value: Any, name: str, cls: type, how: str, optional: bool = True):
    """``value`` when it is a ``cls`` (``None``: not given, when ``optional``); ``how`` says how to make one."""
    if value is None and optional:
        return None
    if not isinstance(value, cls):
        raise BadInput(f"{name} must be {cls.__name__} ({how}), not {_got(value)}")
    return value

"""Writing results: atomic, JSON-safe, and with unwritable places reported as bad input.

A half-written artifact must never look valid, so every file is written to a
temporary name in its folder and renamed into place only when complete.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np

from .errors import BadInput


def _clean(x):
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    return x


def ensure_dir(path: str | Path) -> Path:
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"cannot create output folder {p}: {exc.strerror or exc}") from None
    if not os.access(p, os.W_OK):
        raise BadInput(f"output folder {p} is not writable")
    return p


def write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    ensure_dir(path.parent if str(path.parent) else ".")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def dump_json(path: str | Path, data) -> Path:
    return write_text(path, json.dumps(_clean(data), indent=1) + "\n")


def jsonable(data):
    return _clean(data)


def save_model(model, path: str | Path) -> Path:
    """Save an ONNX model atomically; past protobuf's 2 GB the weights go to PATH.data beside it."""
    import onnx

    from .graph import inline_bytes

    path = Path(path)
    if inline_bytes(model) < 1_900_000_000:
        return write_bytes(path, model.SerializeToString())
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save(model, str(tmp), save_as_external_data=True, location=path.name + ".data")
        os.replace(tmp, path)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    return path

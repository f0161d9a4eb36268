"""Writing results: atomic, JSON-safe, and with unwritable places reported as bad input.

A half-written artifact must never look valid, so every file is written to a
temporary name in its folder and renamed into place only when complete.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from .errors import BadInput
from .limits import INLINE_LIMIT
from .records import encode


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | Path | None) -> None:
    """Refuse, before any work, an output folder that cannot be made or written."""
    if path is None:
        return
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise BadInput(f"cannot create output folder {p}: a file of that name exists")
    base = _existing_ancestor(p)
    if not base.is_dir():
        raise BadInput(f"cannot create output folder {p}: {base} is not a folder")
    if not os.access(base, os.W_OK):
        raise BadInput(f"cannot create output folder {p}: {base} is not writable")


def check_output_file(path: str | Path | None) -> None:
    """Refuse, before any work, an output file that cannot be written."""
    if path is None:
        return
    p = Path(path)
    if p.is_dir():
        raise BadInput(f"cannot write {p}: it is a folder")
    check_output_dir(p.parent if str(p.parent) else ".")


def read_json(path: str | Path, what: str):
    """The JSON value in a user's file; a missing, unreadable, non-UTF-8 or non-JSON file is one BadInput line."""
    path = Path(path)
    if path.is_dir():
        raise BadInput(f"{what} {path} is a folder")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{what} not found: {path}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path} is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} {path} is not JSON: {exc}") from None


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


def json_text(data) -> str:
    """A record, or plain data, as the JSON text precdoctor writes (non-finite floats as strings)."""
    return json.dumps(encode(data), indent=1, ensure_ascii=False) + "\n"


def dump_json(path: str | Path, data) -> Path:
    return write_text(path, json_text(data))


def save_model(model, path: str | Path) -> Path:
    """Save an ONNX model atomically; past protobuf's 2 GB the weights go to PATH.data beside it."""
    import onnx

    from .graph import inline_bytes

    path = Path(path)
    if inline_bytes(model) < INLINE_LIMIT:
        return write_bytes(path, model.SerializeToString())
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        onnx.save(model, str(tmp), save_as_external_data=True, location=path.name + ".data")
        os.replace(tmp, path)
    except OSError as exc:
        raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None
    return path

"""Writing one file (atomic, JSON-safe, special paths respected) and reading the files users give.

Output paths a user names (``--json``, ``-o``):
- ``-`` is stdout (so is any path that is this process's stdout, ``/dev/stdout`` included);
- FIFOs, devices, sockets and paths under /dev or /proc are written in place, never replaced
  (``--json /dev/null`` stays a device, ``--json /dev/stderr`` goes to stderr);
- a symlink is written through: the file it points to is replaced atomically, the link stays;
- any other file is written to a temporary name in its folder and renamed into place when complete,
  so a half-written file never looks valid.
Refusing unwritable places before any work, and sets of files moved into an output folder together,
are destinations.py's.
"""
from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
from pathlib import Path

from .errors import BadInput
from .records import encode

STDOUT = "-"
IN_PLACE_ROOTS = ("/dev/", "/proc/")  # devices and descriptors: written into, never renamed over


def is_stdout(path) -> bool:
    """``-``, or a path naming the very file, pipe or terminal this process's stdout writes to."""
    if path is None:
        return False
    if str(path) == STDOUT:
        return True
    try:
        return os.path.samestat(os.stat(path), os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


def in_place(path: Path) -> bool:
    """Written into rather than replaced: a FIFO, a device, a socket, or anything under /dev or /proc."""
    if str(path.absolute()).startswith(IN_PLACE_ROOTS):
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def plain_path(path: str | Path) -> Path:
    p = Path(path)
    if "\0" in str(p):
        raise BadInput(f"output path {str(p)!r} holds a NUL byte")
    return p


def regular_file(path: str | Path, what: str) -> Path:
    """``path`` as a file to read, or one BadInput line: missing, a folder, or not a regular file (a FIFO with
    no writer would block the run forever, a device never ends)."""
    p = Path(path)
    if "\0" in str(p):
        raise BadInput(f"{what} path {str(p)!r} holds a NUL byte")
    try:
        mode = os.stat(p).st_mode
    except FileNotFoundError:
        raise BadInput(f"{what} not found: {p}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(mode):
        raise BadInput(f"{what} {p} is a folder")
    if not stat.S_ISREG(mode):
        raise BadInput(f"{what} {p} is not a regular file (a FIFO, device or socket); give a file")
    return p


def inside_folder(folder: str | Path, name: str | Path, what: str) -> Path:
    """``folder/name``, a file a command reads from a run folder, refused in one BadInput line when it resolves
    outside ``folder`` (a symlink out of it, of the file or of a folder on the way): a tampered folder must not
    make a command read, judge or overwrite what lies elsewhere."""
    root = Path(os.path.realpath(folder))
    path = Path(folder) / name
    if "\0" in str(path):
        raise BadInput(f"{what} path {str(path)!r} holds a NUL byte")
    real = Path(os.path.realpath(path))
    if real != root and root not in real.parents:
        raise BadInput(f"{what} {path} resolves outside {folder} (to {real}); refusing to read it")
    return path


def write_error(path: str | Path, exc: OSError, what: str = "") -> BadInput:
    """A failed write, said in words: a full disk (ENOSPC, or the short write numpy's ``tofile`` reports as
    "N requested and M written", with no errno) names the folder and what is free there, and how to move
    temporary files elsewhere."""
    import errno

    folder = Path(path).parent
    short = exc.errno is None and "requested and" in str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or short:
        try:
            st = os.statvfs(folder)
            free = f"{st.f_bavail * st.f_frsize / 2**20:.1f} MiB free there"
        except OSError:
            free = "free space unknown"
        why = "no space left on the device (or past a file size limit)" if short else (exc.strerror or "no space left").lower()
        return BadInput(f"cannot write {what or path}: {why} in {folder} ({free}, {exc}); free space there"
                        + (" or set TMPDIR to a larger disk" if str(folder).startswith(tempfile.gettempdir()) else ""))
    return BadInput(f"cannot write {what or path}: {exc.strerror or exc}")


def read_text(path: str | Path, what: str) -> str:
    """A user's text file (JSON, manifest, transcript, vocabulary) as UTF-8 text; a missing, unreadable or
    non-UTF-8 file is one BadInput line."""
    path = regular_file(path, what)
    try:
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BadInput(f"{what} not found: {path}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BadInput(f"{what} {path} is not UTF-8 text (byte {exc.start})") from None


def read_json(path: str | Path, what: str):
    """The JSON value in a user's file; a missing, unreadable, non-UTF-8 or non-JSON file is one BadInput line."""
    text, path = read_text(path, what), Path(path)
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{what} {path} is not JSON: {exc}") from None
    except RecursionError:
        raise BadInput(f"{what} {path} is nested too deeply to be one of precdoctor's files") from None
    except ValueError as exc:  # _no_constant
        raise BadInput(f"{what} {path} is not standard JSON: {exc}") from None


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON value (precdoctor writes non-finite numbers as \"inf\", \"-inf\", \"nan\")")


def ensure_dir(path: str | Path) -> Path:
    p = plain_path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot create output folder {p}: {getattr(exc, 'strerror', None) or exc}") from None
    if not os.access(p, os.W_OK):
        raise BadInput(f"output folder {p} is not writable")
    return p


def _write_in_place(path: Path, data: bytes) -> None:
    with open(path, "wb") as fh:
        fh.write(data)


def _write_stdout(data: bytes) -> None:
    out = sys.stdout
    if out is None:
        raise BadInput("cannot write to stdout ('-'): it is closed")
    out.flush()
    try:
        out.buffer.write(data)
    except AttributeError:  # a text-only stream (a test harness's capture)
        out.write(data.decode("utf-8"))
    out.flush()


def _write_atomic(path: Path, data: bytes) -> None:
    ensure_dir(path.parent if str(path.parent) else ".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` by the policy of the module docstring."""
    try:
        if is_stdout(path):
            _write_stdout(data)
            return Path(str(path))
        path = plain_path(path)
        if in_place(path):
            _write_in_place(path, data)
        else:
            _write_atomic(Path(os.path.realpath(path)) if path.is_symlink() else path, data)
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


def set_aside(path: Path, why: str) -> Path:
    """Move whatever stands at ``path`` (a damaged journal, a folder, a FIFO, a symlink) to a free
    ``NAME.staleK.SUFFIX`` beside it, so a fresh file can take the name; returns where it went."""
    stale, k = path.with_suffix(".stale" + path.suffix), 1
    while stale.exists() or stale.is_symlink():
        stale, k = path.with_suffix(f".stale{k}{path.suffix}"), k + 1
    try:
        os.replace(path, stale)
    except OSError as exc:
        raise BadInput(f"cannot set aside {path} ({why}): {exc.strerror or exc}") from None
    return stale


def plain_file(path: Path) -> bool:
    """A regular file, not a symlink: what precdoctor may read back and append to in its own folders."""
    return path.is_file() and not path.is_symlink()

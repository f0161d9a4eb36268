"""Writing results: atomic, JSON-safe, with special paths respected and unwritable places refused early.

Output paths a user names (``--json``, ``-o``):
- ``-`` is stdout (so is any path that is this process's stdout, ``/dev/stdout`` included);
- FIFOs, devices, sockets and paths under /dev or /proc are written in place, never replaced
  (``--json /dev/null`` stays a device, ``--json /dev/stderr`` goes to stderr);
- a symlink is written through: the file it points to is replaced atomically, the link stays;
- any other file is written to a temporary name in its folder and renamed into place when complete,
  so a half-written file never looks valid.
Files precdoctor names inside an output folder (``--out DIR``) are its own: whatever stood under those
names is replaced, never followed (``Staging`` below moves a whole set into place at the end).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

from .errors import BadInput
from .limits import INLINE_LIMIT
from .records import encode

STDOUT = "-"
IN_PLACE_ROOTS = ("/dev/", "/proc/")  # devices and descriptors: written into, never renamed over
STAGING_PREFIX = ".precdoctor-staging-"


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


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


def _in_place(path: Path) -> bool:
    """Written into rather than replaced: a FIFO, a device, a socket, or anything under /dev or /proc."""
    if str(path.absolute()).startswith(IN_PLACE_ROOTS):
        return True
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _plain_path(path: str | Path) -> Path:
    p = Path(path)
    if "\0" in str(p):
        raise BadInput(f"output path {str(p)!r} holds a NUL byte")
    return p


def check_output_dir(path: str | Path | None) -> None:
    """Refuse, before any work, an output folder that cannot be made or written."""
    if path is None:
        return
    p = _plain_path(path)
    if p.exists() and not p.is_dir():
        raise BadInput(f"cannot create output folder {p}: a file of that name exists")
    base = _existing_ancestor(p)
    if not base.is_dir():
        raise BadInput(f"cannot create output folder {p}: {base} is not a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise BadInput(f"cannot create output folder {p}: {base} is not writable")


def same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def check_output_file(path: str | Path | None, keep: tuple = ()) -> None:
    """Refuse, before any work, an output file that cannot be written, or one that would overwrite
    a file the command reads (``keep``: the model, inputs, the run JSON...)."""
    if path is None:
        return
    if str(path) == STDOUT:
        try:
            os.fstat(sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            raise BadInput("cannot write to stdout ('-'): it is closed") from None
        return
    p = _plain_path(path)
    for k in keep:
        if k is not None and same_file(p, k):
            raise BadInput(f"refusing to write {p}: it is {k}, which this command reads")
    if p.is_dir():
        raise BadInput(f"cannot write {p}: it is a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise BadInput(f"cannot write {p}: permission denied")
    if _in_place(p) or is_stdout(p):
        return
    target = Path(os.path.realpath(p))  # a symlink is written through
    check_output_dir(target.parent)


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


def check_set(outdir: str | Path, names, keep: tuple = ()) -> None:
    """Refuse, before any work, a folder where writing the set ``names`` would replace a file the command reads."""
    for name in names:
        for k in keep:
            if k is not None and same_file(Path(outdir) / name, k):
                raise BadInput(f"refusing to write into {outdir}: its {name} would replace {k}, which this command reads")


def read_json(path: str | Path, what: str):
    """The JSON value in a user's file; a missing, unreadable, non-UTF-8 or non-JSON file is one BadInput line."""
    path = regular_file(path, what)
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise BadInput(f"{what} not found: {path}") from None
    except OSError as exc:
        raise BadInput(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise BadInput(f"{what} {path} is not UTF-8 text") from None
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
    p = _plain_path(path)
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
        path = _plain_path(path)
        if _in_place(path):
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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


class Staging:
    """A set of files written into a hidden folder inside ``outdir`` and moved into place together.

    ``commit`` first removes ``marker`` (the file that says a set is complete, run.json), then removes
    every name in ``owned`` that the new set lacks (no mixing with an earlier run's files), moves the
    new files in, and the marker last. Leaving the ``with`` block any other way (an error, Ctrl-C,
    SIGTERM) removes the staging folder and leaves the previous set untouched. A staging folder left
    by a killed process is removed by the next run in the same folder.
    """

    def __init__(self, outdir: str | Path, owned=(), marker: str | None = None, owned_dirs: dict[str, str] | None = None):
        self.outdir = ensure_dir(outdir)
        self.owned, self.marker = set(owned), marker
        self.owned_dirs = dict(owned_dirs or {})  # folder name -> the file inside that makes it one of ours (replaced whole)
        self._sweep()
        try:
            self.dir = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=self.outdir))
        except OSError as exc:
            raise BadInput(f"cannot write into {self.outdir}: {exc.strerror or exc}") from None

    def _sweep(self) -> None:
        for p in self.outdir.glob(STAGING_PREFIX + "*"):
            pid = p.name[len(STAGING_PREFIX):].split("-")[0]
            if p.is_dir() and not p.is_symlink() and pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> bool:
        shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def commit(self) -> list[Path]:
        """Move the staged files into ``outdir``; returns their final paths."""
        new = sorted(p.name for p in self.dir.iterdir())
        try:
            if self.marker:
                self._remove(self.outdir / self.marker)
            for name in sorted(self.owned - set(new)):
                self._remove(self.outdir / name)
            for name in [n for n in new if n != self.marker] + [n for n in new if n == self.marker]:
                target = self.outdir / name
                if target.is_dir() and not target.is_symlink():
                    if not owned_folder(target, self.owned_dirs):
                        raise BadInput(f"cannot write {target}: a folder of that name is in the way")
                    shutil.rmtree(target)
                os.replace(self.dir / name, target)
        except OSError as exc:
            raise BadInput(f"cannot move the results into {self.outdir}: {exc.strerror or exc}") from None
        return [self.outdir / n for n in new]

    def _remove(self, path: Path) -> None:
        if path.is_dir() and not path.is_symlink():
            if owned_folder(path, self.owned_dirs):
                shutil.rmtree(path)
        elif path.is_symlink() or path.is_file():
            path.unlink()


def owned_folder(path: Path, owned_dirs: dict[str, str]) -> bool:
    """A folder precdoctor wrote under one of its names (it holds the marker file): replaced whole, never merged."""
    marker = owned_dirs.get(path.name)
    return marker is not None and not path.is_symlink() and (path / marker).is_file() and not (path / marker).is_symlink()


def check_owned_dirs(outdir: str | Path, owned_dirs: dict[str, str]) -> None:
    """Refuse, before any work, a folder of one of precdoctor's names that precdoctor did not write."""
    for name in owned_dirs:
        p = Path(outdir) / name
        if p.is_dir() and not p.is_symlink() and not owned_folder(p, owned_dirs):
            raise BadInput(f"refusing to write into {outdir}: its folder {name} is not one precdoctor wrote "
                           f"(no {owned_dirs[name]} inside); move it away")

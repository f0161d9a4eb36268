"""Where a command's results go: output paths refused before any work, and sets of files moved into place together.

A path or folder that cannot be written, or whose writing would replace a file the
command reads, is one BadInput line before anything runs, not an error after minutes
of work. Files precdoctor names inside an output folder (``--out DIR``) are its own:
whatever stood under those names is replaced, never followed (``Staging`` moves a
whole set into place at the end). How one file is written is files.py's.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Self

from .errors import BadInput
from .files import STDOUT, ensure_dir, in_place, is_stdout, plain_path

STAGING_PREFIX = ".precdoctor-staging-"


def _existing_ancestor(p: Path) -> Path:
    p = p.absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def check_output_dir(path: str | Path | None) -> None:
    """Refuse, before any work, an output folder that cannot be made or written."""
    if path is None:
        return
    p = plain_path(path)
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
    p = plain_path(path)
    for k in keep:
        if k is not None and same_file(p, k):
            raise BadInput(f"refusing to write {p}: it is {k}, which this command reads")
    if p.is_dir():
        raise BadInput(f"cannot write {p}: it is a folder")
    if p.exists() and not os.access(p, os.W_OK):
        raise BadInput(f"cannot write {p}: permission denied")
    if in_place(p) or is_stdout(p):
        return
    target = Path(os.path.realpath(p))  # a symlink is written through
    check_output_dir(target.parent)


def check_set(outdir: str | Path, names, keep: tuple = ()) -> None:
    """Refuse, before any work, a folder where writing the set ``names`` would replace a file the command reads."""
    for name in names:
        for k in keep:
            if k is not None and same_file(Path(outdir) / name, k):
                raise BadInput(f"refusing to write into {outdir}: its {name} would replace {k}, which this command reads")


def check_outside_set(path: str | Path | None, outdir: str | Path, names, patterns=()) -> None:
    """Refuse, before any work, an output file (``--json``) that would be one of the files a run keeps in ``outdir``:
    a name of its set or a folder of it (``names``), or a state file it reads back (``patterns``: journals, caches).
    The set would replace it, or it would replace the set's file or the state a rerun resumes from."""
    import fnmatch

    if path is None or str(path) == STDOUT:
        return
    real, root = Path(os.path.realpath(plain_path(path))), Path(os.path.realpath(outdir))
    if root not in real.parents:
        return
    first = real.relative_to(root).parts[0]
    nested = len(real.relative_to(root).parts) > 1
    if first in names or (not nested and any(fnmatch.fnmatchcase(first, pat) for pat in patterns)):
        raise BadInput(f"refusing to write {path}: {first} is the run's own in {outdir}; give a path outside its files")


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

    def __enter__(self) -> Self:
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
    for name, marker in owned_dirs.items():
        p = Path(outdir) / name
        if p.is_dir() and not p.is_symlink() and not owned_folder(p, owned_dirs):
            raise BadInput(f"refusing to write into {outdir}: its folder {name} is not one precdoctor wrote "
                           f"(no {marker} inside); move it away")


LOCK_NAME = ".precdoctor.lock"  # in an output folder: held (flock) by the one run writing there


class FolderLock:
    """One run per output folder at a time: an exclusive ``flock`` on ``DIR/.precdoctor.lock`` for the whole run.

    Two runs writing one folder would interleave their journals and staging (one run's entries under the
    other's header); the second is refused in one line naming the holder (pid, command, since when), which
    the holder writes into the lock file. The kernel releases the lock when the holder exits however it
    exits (SIGKILL included), so a file left by a killed run never blocks a later one; a run that ends
    unlinks it (while still holding it: a newcomer re-checks that the file it locked is still the one under
    the name). A folder this lock created is removed again when the run leaves nothing in it (a run refused
    for its input leaves no folder).
    """

    def __init__(self, outdir: str | Path, command: str):
        self.outdir, self.command = plain_path(outdir), command
        self.fd: int | None = None
        self.created = False

    def __enter__(self) -> Self:
        import fcntl
        import time

        self.created = not self.outdir.exists()
        ensure_dir(self.outdir)
        path = self.outdir / LOCK_NAME
        while True:  # the file locked must still be the one under the name: a holder unlinks it on its way out
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as exc:
                raise BadInput(f"cannot lock output folder {self.outdir}: {path}: {exc.strerror or exc}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 400, 0).decode("utf-8", errors="replace").strip() or "another process"
                os.close(fd)
                raise BadInput(f"output folder {self.outdir} is in use by another precdoctor run "
                               f"({' '.join(holder.split())}); wait for it to finish or give another --out") from None
            try:
                if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
                    break
            except OSError:
                pass
            os.close(fd)
        note = f"pid {os.getpid()}: precdoctor {self.command}, since {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"
        os.ftruncate(fd, 0)
        os.pwrite(fd, note.encode("utf-8", errors="replace")[:400], 0)
        self.fd = fd
        return self

    def __exit__(self, *exc) -> bool:
        if self.fd is None:
            return False
        try:
            os.unlink(self.outdir / LOCK_NAME)  # while still held: a run starting now locks a fresh file
            if self.created and not any(self.outdir.iterdir()):
                self.outdir.rmdir()
        except OSError:
            pass
        finally:
            os.close(self.fd)
            self.fd = None
        return False

"""The journal of a pin search: every evaluation appended and fsync'd, so a killed run resumes.

A header line carries the run's fingerprint (code, model, samples, format,
acceptance, engine); a journal written by a different run is set aside as
``*.stale.jsonl``, as is one whose header cannot be read, and anything under
the journal's name that is not a plain file (a folder, a FIFO, a symlink, which
appending would write through). Entry lines that cannot be read (a line cut
short by a kill, a damaged file) are skipped: the evaluation is simply run again.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..files import plain_file, set_aside
from ..records import Record

log = logging.getLogger("precdoctor")


@dataclass
class Evaluation(Record):
    """One plan judged: its pins, the verdict, the measures behind it, and how long it took."""

    pins: list[str]
    passed: bool
    measures: dict[str, float]
    failed: list[str]
    seconds: float
    resumed: bool = False

    @property
    def key(self) -> tuple[str, ...]:
        return tuple(sorted(self.pins))


def code_digest() -> str:
    """The package's own source: a journal written by other code must not be replayed."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(*parts) -> str:
    """Digest of the parts; a part naming an existing file contributes the file's bytes."""
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, (str, os.PathLike)) and Path(p).is_file():
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:16]


class Journal:
    """See the module docstring; ``path=None`` keeps the entries in memory only."""

    def __init__(self, path: Path | None, fp: str):
        self.path, self.fp = path, fp
        self.entries: dict[tuple[str, ...], Evaluation] = {}
        if path is None:
            return
        if (path.exists() or path.is_symlink()) and not (plain_file(path) and self._replay(path)):
            stale = set_aside(path, "is not a journal of this run")
            log.info(f"journal {path} is not a journal of this run; set aside as {stale.name}")
        if not path.exists():
            try:
                with open(path, "x") as fh:
                    fh.write(json.dumps({"fingerprint": fp, "journal": "precdoctor bisect"}) + "\n")
            except OSError as exc:
                raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None

    def _replay(self, path: Path) -> bool:
        """Load the entries of a journal of this run; False when it belongs to another (or is unreadable)."""
        try:
            lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
            head = json.loads(lines[0]) if lines else {}
        except (OSError, ValueError, RecursionError):
            return False
        if not isinstance(head, dict) or head.get("fingerprint") != self.fp:
            return False
        for line in lines[1:]:
            try:
                ev = Evaluation.from_json(json.loads(line))
            except (ValueError, RecursionError, BadInput):
                continue
            ev.resumed = True
            self.entries[ev.key] = ev
        return True

    def append(self, ev: Evaluation) -> None:
        self.entries[ev.key] = ev
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(ev.to_json()) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

"""The journal of a pin search: every evaluation appended and fsync'd, so a killed run resumes.

A header line carries the run's fingerprint (code, model, samples, format,
acceptance, engine); a journal written by a different run is set aside as
``*.stale.jsonl``, as is one whose header cannot be read, and anything under
the journal's name that is not a plain file. Entry lines that cannot be read
are skipped: the evaluation is simply run again (recordlog.py).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..core.recordlog import RecordLog
from ..core.records import Record


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


class Journal(RecordLog):
    """See the module docstring; ``path=None`` keeps the entries in memory only."""

    RECORD, HEADER, NAME, KEEP_STALE = Evaluation, {"journal": "precdoctor bisect"}, "journal", True

    def key(self, ev: Evaluation) -> tuple[str, ...]:
        return ev.key

    def replayed(self, ev: Evaluation) -> Evaluation:
        ev.resumed = True
        return ev

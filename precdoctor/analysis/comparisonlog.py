"""Plans compared tensor by tensor, and the FP32 ranges, kept across runs: a repeated bisect replays them as it
replays its evaluations (the naive comparison and the range scan are a minute each on the Whisper demo).

Keyed by the same fingerprint as the search's journal (code, model, samples, format, engine, variant:
Job.fingerprint); a file of another run is set aside (recordlog.py). Each line holds one comparison's
record; its graph outputs (the FP32 reference and the candidate per sample, which the search judges
every plan against) are written first, to ``journal.arrays/<journal>/<digest>.npz`` beside the journal, so a line
never names arrays that are not there. A line whose arrays are missing or unreadable is compared again.
The FP32 ranges (one record per format) go to a journal of their own (``RangeLog``).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .comparison import Comparison
from ..core.files import plain_file, set_aside
from .ranges import TensorRange
from ..core.recordlog import RecordLog
from ..core.records import Record

ARRAYS = "journal.arrays"  # the folder of the arrays, beside the journal


@dataclass
class StoredComparison(Record):
    """One plan's comparison; ``outputs``: the graph outputs' names in the order their arrays were saved."""

    key: str
    comparison: Comparison
    outputs: list[str]
    arrays: str  # file name in ARRAYS
    samples: int


class ComparisonLog(RecordLog):
    RECORD, HEADER, NAME = StoredComparison, {"journal": "precdoctor bisect, comparisons"}, "journal"

    def __init__(self, path: Path | None, fp: str):
        super().__init__(path, fp)
        folder = self.folder()
        if folder is not None and not self.entries and folder.is_dir() and not folder.is_symlink():
            for old in folder.glob("*.npz"):  # arrays of a run this journal no longer belongs to
                old.unlink()

    def key(self, entry: StoredComparison) -> str:
        return entry.key

    def folder(self) -> Path | None:
        """Each journal's arrays apart (a rewritten graph's journal is another file)."""
        return self.path.parent / ARRAYS / self.path.stem if self.path is not None else None

    def get(self, key: str) -> Comparison | None:
        """The stored comparison of ``key`` with its graph outputs, or None (not stored, or its arrays unreadable)."""
        entry = self.entries.get(key)
        folder = self.folder()
        if entry is None or folder is None:
            return None
        path = folder / entry.arrays
        if not plain_file(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                pairs = [tuple({o: z[f"{k}.{side}.{j}"] for j, o in enumerate(entry.outputs)} for side in (0, 1))
                         for k in range(entry.samples)]
        except (OSError, ValueError, KeyError, EOFError):
            return None
        c = entry.comparison
        c.pairs = pairs
        return c

    def put(self, key: str, c: Comparison) -> None:
        folder = self.folder()
        if folder is None:
            self.entries[key] = StoredComparison(key, c, [], "", 0)
            return
        for d in (folder.parent, folder):
            if (d.exists() or d.is_symlink()) and (d.is_symlink() or not d.is_dir()):
                set_aside(d, "is not precdoctor's folder of arrays")
            d.mkdir(exist_ok=True)
        outputs = list(c.pairs[0][0]) if c.pairs else []
        name = hashlib.sha256(f"{self.fp}\0{key}".encode()).hexdigest()[:24] + ".npz"
        arrays = {f"{k}.{side}.{j}": np.asarray(pair[side][o]) for k, pair in enumerate(c.pairs) for side in (0, 1)
                  for j, o in enumerate(outputs)}
        tmp = folder / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, folder / name)
        self.append(StoredComparison(key, c, outputs, name, len(c.pairs)))


@dataclass
class StoredRanges(Record):
    """The FP32 range of every float tensor against one format."""

    format: str
    ranges: dict[str, TensorRange]


class RangeLog(RecordLog):
    RECORD, HEADER, NAME = StoredRanges, {"journal": "precdoctor bisect, FP32 ranges"}, "journal"

    def key(self, entry: StoredRanges) -> str:
        return entry.format

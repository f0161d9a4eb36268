"""Append-only files of records under a fingerprint: what a killed or repeated run picks up again.

The first line is a header carrying the fingerprint of everything the entries depend on; each further
line is one record, appended and fsync'd as it is made, stamped with the same fingerprint (``RUN_KEY``):
a line another run wrote into the file (two runs sharing a folder, a file pasted from elsewhere) is not
replayed even under this run's header. A file whose header is not this run's is not
replayed: it is set aside as ``NAME.stale.SUFFIX`` (``KEEP_STALE``) or replaced; anything under the name
that is not a plain file (a folder, a FIFO, a symlink, which appending would write through) is set
aside. Entry lines that cannot be read (a line cut short by a kill, a damaged file) are skipped: that
entry is simply made again.
"""
from __future__ import annotations

import json
import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path

from .errors import BadInput
from .files import plain_file, set_aside

log = logging.getLogger("precdoctor")
RUN_KEY = "run"  # the fingerprint each entry line carries, beside the record's own fields


class RecordLog(ABC):
    """See the module docstring; ``path=None`` keeps the entries in memory only."""

    RECORD: type  # the records.Record of each line
    HEADER: dict  # beside the fingerprint, what the file is
    NAME: str  # in messages
    KEEP_STALE = False

    def __init__(self, path: Path | None, fp: str):
        self.path, self.fp = path, fp
        self.entries: dict = {}
        if path is None or plain_file(path) and self._replay(path):
            return
        if (path.exists() or path.is_symlink()) and (self.KEEP_STALE or not plain_file(path)):
            stale = set_aside(path, f"is not a {self.NAME} of this run")
            log.info(f"{self.NAME} {path} is not a {self.NAME} of this run; set aside as {stale.name}")
        try:
            with open(path, "w") as fh:
                fh.write(json.dumps({"fingerprint": fp, **self.HEADER}) + "\n")
        except OSError as exc:
            raise BadInput(f"cannot write {path}: {exc.strerror or exc}") from None

    @abstractmethod
    def key(self, entry):
        """What identifies an entry: a later entry with the same key replaces it."""

    def replayed(self, entry):
        """An entry read back from the file, as the run uses it."""
        return entry

    def _replay(self, path: Path) -> bool:
        """Load the entries of a file of this run; False when it belongs to another (or is unreadable)."""
        try:
            lines = path.read_bytes().decode("utf-8", errors="replace").split("\n")
            head = json.loads(lines[0])
        except (OSError, ValueError, RecursionError):
            return False
        if not isinstance(head, dict) or head.get("fingerprint") != self.fp:
            return False
        for line in lines[1:]:
            try:
                data = json.loads(line)
                if not isinstance(data, dict) or data.pop(RUN_KEY, None) != self.fp:
                    continue  # another run's entry, or one from before entries were stamped
                entry = self.RECORD.from_json(data)
            except (ValueError, RecursionError, BadInput):
                continue
            self.entries[self.key(entry)] = self.replayed(entry)
        return True

    def append(self, entry) -> None:
        self.entries[self.key(entry)] = entry
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps({RUN_KEY: self.fp, **entry.to_json()}) + "\n")
                fh.flush()
                os.fsync(fh.fileno())

"""Transcripts kept beside the journal, by plan: a resumed or repeated bisect does not transcribe again.

Transcribing the dataset is the slowest part of a task-judged bisect (the
Whisper demo: four configurations of ten clips). Like the journal, the file
starts with a fingerprint of everything a transcript depends on (code, model,
task and its own files, the audio, the engine); a file of another run is
replaced, and lines that cannot be read are ignored.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import BadInput
from ..files import plain_file, set_aside
from ..records import Record


@dataclass
class CachedTranscripts(Record):
    plan: str  # Plan.key()
    config: str
    hyps: list[str]
    seconds: float
    tokens: list[list[int]] | None = None  # decode-loop tasks: each clip's tokens, for token agreement


def audio_digest(audio) -> str:
    h = hashlib.sha256()
    for a in audio:
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


class TranscriptStore:
    """Append-only JSON lines: a header with the fingerprint, then one line per transcribed plan."""

    def __init__(self, path: Path, fp: str):
        self.path, self.fp = path, fp
        self.entries: dict[str, CachedTranscripts] = {}
        lines = path.read_bytes().decode("utf-8", errors="replace").split("\n") if plain_file(path) else []
        if lines and _header(lines[0]) == fp:
            for line in lines[1:]:
                try:
                    e = CachedTranscripts.from_json(json.loads(line))
                except (ValueError, RecursionError, BadInput):  # a damaged line: that plan is transcribed again
                    continue
                self.entries[e.plan] = e
            return
        if (path.exists() or path.is_symlink()) and not plain_file(path):  # never written through, never blocked on
            set_aside(path, "is not a plain file")
        with open(path, "w") as fh:  # another run's file is replaced
            fh.write(json.dumps({"fingerprint": fp, "transcripts": "precdoctor"}) + "\n")

    def get(self, plan_key: str) -> CachedTranscripts | None:
        return self.entries.get(plan_key)

    def put(self, entry: CachedTranscripts) -> None:
        self.entries[entry.plan] = entry
        with open(self.path, "a") as fh:
            fh.write(json.dumps(entry.to_json()) + "\n")
            fh.flush()
            os.fsync(fh.fileno())


def _header(line: str) -> str | None:
    try:
        head = json.loads(line)
    except (ValueError, RecursionError):
        return None
    return head.get("fingerprint") if isinstance(head, dict) else None

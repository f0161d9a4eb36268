"""Transcripts kept beside the journal, by plan: a resumed or repeated bisect does not transcribe again.

Transcribing the dataset is the slowest part of a task-judged bisect (the
Whisper demo: four configurations of ten clips). Like the journal, the file
starts with a fingerprint of everything a transcript depends on (code, model,
task and its own files, the audio, the engine); a file of another run is
replaced, and lines that cannot be read are ignored (recordlog.py).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..core.recordlog import RecordLog
from ..core.records import Record


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


class TranscriptStore(RecordLog):
    """A header with the fingerprint, then one line per transcribed plan; another run's file is replaced."""

    RECORD, HEADER, NAME = CachedTranscripts, {"transcripts": "precdoctor"}, "transcript cache"

    def key(self, entry: CachedTranscripts) -> str:
        return entry.plan

    def get(self, plan_key: str) -> CachedTranscripts | None:
        return self.entries.get(plan_key)

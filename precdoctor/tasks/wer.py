"""WER and CER with jiwer over a documented normalization.

Normalization (default): lower-case, punctuation removed (apostrophes inside
words kept), whitespace collapsed. ``numbers=True`` also spells digits out
("25" -> "twenty five") so FLEURS references with digits can match.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from ..errors import require
from ..records import Record

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def spell(n: int) -> str:
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _ONES[n % 10])
    for unit, word in ((10**9, "billion"), (10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= unit:
            rest = n % unit
            return spell(n // unit) + " " + word + ("" if rest == 0 else " " + spell(rest))
    return str(n)


def normalize(text: str, numbers: bool = False) -> str:
    text = unicodedata.normalize("NFKC", text or "").lower()
    if numbers:
        text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
        text = re.sub(r"\d+", lambda m: f" {spell(int(m.group()))} " if len(m.group()) < 10 else m.group(), text)
    text = re.sub(r"[^\w\s']|_", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return " ".join(text.split())


def normalization(numbers: bool) -> str:
    """What ``normalize`` does, in words (for reports)."""
    return "lower-case, punctuation removed" + (", digits spelled out" if numbers else "")


@dataclass
class Score(Record):
    wer: float
    cer: float
    substitutions: int
    insertions: int
    deletions: int
    words: int
    utterances: int


def score(refs: list[str], hyps: list[str], numbers: bool = False) -> Score:
    jiwer = require("jiwer", "asr", "WER scoring")
    r = [normalize(t, numbers) for t in refs]
    h = [normalize(t, numbers) for t in hyps]
    # jiwer refuses empty references; an empty reference scores its hypothesis as insertions
    pairs = [(a if a else "<empty>", b) for a, b in zip(r, h)]
    r, h = [p[0] for p in pairs], [p[1] for p in pairs]
    w = jiwer.process_words(r, h)
    c = jiwer.cer(r, h)
    words = w.substitutions + w.deletions + w.hits
    return Score(w.wer, float(c), w.substitutions, w.insertions, w.deletions, words, len(refs))


def utterance_wer(ref: str, hyp: str, numbers: bool = False) -> float:
    return score([ref], [hyp], numbers).wer

"""WER and CER with jiwer, over a normalization made of jiwer's own transforms.

Normalization: Unicode NFKC, lower-case, hyphens, slashes and underscores read as spaces
(so "well-known" is two words on both sides), punctuation removed (jiwer's
RemovePunctuation: every Unicode P* character, apostrophes included, so "don't" reads
"dont" on both sides), whitespace collapsed. ``numbers=True`` also spells digits out
("25" -> "twenty five") so FLEURS references with digits can match.

Empty references are scored as jiwer scores them: an empty reference against an empty
hypothesis is no error; against a hypothesis of N words it is N insertions (so a dataset
of only empty references has a WER equal to the inserted word count, not a ratio).
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

from ..core.errors import require
from ..core.records import Record

_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_JOINERS = r"[-\u2010-\u2015/_]"  # characters that join words: read as spaces before punctuation goes


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


def _spell_numbers(text: str) -> str:
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    return re.sub(r"\d+", lambda m: f" {spell(int(m.group()))} " if len(m.group()) < 10 else m.group(), text)


@lru_cache(maxsize=1)
def _transform():
    jiwer = require("jiwer", "asr", "WER scoring")
    return jiwer.Compose([jiwer.ToLowerCase(), jiwer.SubstituteRegexes({_JOINERS: " "}), jiwer.RemovePunctuation(),
                          jiwer.RemoveMultipleSpaces(), jiwer.Strip()])


def normalize(text: str, numbers: bool = False) -> str:
    text = unicodedata.normalize("NFKC", text or "")
    if numbers:
        text = _spell_numbers(text)
    return _transform()(text)


def normalization(numbers: bool) -> str:
    """What ``normalize`` does, in words (for reports)."""
    return ("NFKC, lower-case, hyphens as spaces, punctuation removed (jiwer's transforms)"
            + (", digits spelled out" if numbers else ""))


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
    w = jiwer.process_words(r, h)
    c = jiwer.process_characters(r, h)
    words = w.substitutions + w.deletions + w.hits
    return Score(float(w.wer), float(c.cer), w.substitutions, w.insertions, w.deletions, words, len(refs))


def utterance_wer(ref: str, hyp: str, numbers: bool = False) -> float:
    return score([ref], [hyp], numbers).wer

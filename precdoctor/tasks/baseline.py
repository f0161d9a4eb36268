"""The FP32 baseline gate: before any comparison or search, is the task set up so that FP32 itself transcribes?

A reduced precision can only be blamed for what FP32 gets right. A wrong task setup (a multilingual Whisper
decoded with the English-only prompt, the wrong tokenizer, a wrong blank id) makes FP32's own transcripts
loop, come out empty or miss by several times the reference's words; every plan then "agrees" with a broken
reference. The check looks at the values only (limits.py: the thresholds and why): the FP32 WER against the
references, the share of decodes that loop (their tail one short cycle of tokens or words), the share of
empty transcripts.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..core.limits import (
    BASELINE_EMPTY_SHARE,
    BASELINE_LOOP_SHARE,
    BASELINE_MAX_WER,
    LOOP_PERIOD,
    LOOP_TAIL,
)
from ..core.records import Record

EXAMPLE_CHARS = 80  # of a transcript quoted in the one-line refusal


@dataclass
class Baseline(Record):
    """What FP32's transcripts of the dataset look like, and why they are taken as a broken setup (``problems``)."""

    clips: int
    wer: float | None  # against the references; None when scored against FP32 itself (label-free)
    looping: int  # decodes whose tail repeats one short cycle
    empty: int  # empty transcripts where the reference is not (label-free: any empty transcript)
    example_clip: str = ""
    example: str = ""  # the transcript of a failing clip (or the first)
    problems: list[str] = field(default_factory=list)
    forced: bool = False  # --force: the run went on anyway

    @property
    def broken(self) -> bool:
        return bool(self.problems)

    def summary(self) -> str:
        """One line, shown first in the terminal's and the report's task section."""
        wer = f"WER {100 * self.wer:.2f} % on {self.clips} clip(s)" if self.wer is not None else f"{self.clips} clip(s), label-free"
        if not self.broken:
            return f"FP32 baseline: {wer}; {self.looping} looping and {self.empty} empty decode(s)"
        return (f"FP32 baseline BROKEN ({'; '.join(self.problems)}), went on with --force: {wer}; e.g. clip "
                f"{self.example_clip}: {self.example!r}")


def loops(seq: list) -> bool:
    """The last LOOP_TAIL items repeat a cycle of at most LOOP_PERIOD items."""
    if len(seq) < LOOP_TAIL:
        return False
    tail = seq[-LOOP_TAIL:]
    return any(all(tail[i] == tail[i - p] for i in range(p, LOOP_TAIL)) for p in range(1, LOOP_PERIOD + 1))


def check(ids: list[str], hyps: list[str], refs: list[str | None], wer: float | None,
          tokens: list[list[int]] | None = None, end: int | None = None) -> Baseline:
    """``refs``: each clip's reference (None: label-free); ``tokens``: each clip's decoded tokens, ``end`` the end
    token (a decode loop task), else the words of the transcripts are looked at."""
    n = len(hyps)
    looped = []
    for k, h in enumerate(hyps):
        seq = [t for t in tokens[k] if t != end] if tokens is not None else h.split()
        if loops(seq) or (tokens is not None and loops(h.split())):  # without tokens, seq is the words already
            looped.append(k)
    empty = [k for k, h in enumerate(hyps) if not h.strip() and (refs[k] is None or refs[k].strip())]
    problems = []
    if wer is not None and wer > BASELINE_MAX_WER:
        problems.append(f"FP32 WER {100 * wer:.0f} % (past {100 * BASELINE_MAX_WER:.0f} %)")
    if n and len(looped) / n > BASELINE_LOOP_SHARE:
        problems.append(f"{len(looped)} of {n} FP32 decodes loop on a few tokens")
    if n and len(empty) / n > BASELINE_EMPTY_SHARE:
        problems.append(f"{len(empty)} of {n} FP32 transcripts are empty")
    k = (looped or empty or [0])[0] if n else 0
    example = hyps[k] if n else ""
    return Baseline(n, wer, len(looped), len(empty), ids[k] if n else "",
                    example if len(example) <= EXAMPLE_CHARS else example[:EXAMPLE_CHARS] + " ...", problems)


def refusal(b: Baseline, hint: str = "") -> str:
    """The one line a broken baseline stops the run with."""
    wer = f"FP32 WER {100 * b.wer:.1f} % on {b.clips} clip(s)" if b.wer is not None else f"{b.clips} clip(s), label-free"
    return (f"the task setup is wrong, not the precision: the FP32 baseline is broken ({wer}; {'; '.join(b.problems[-2:] if b.wer is not None and b.wer > BASELINE_MAX_WER else b.problems)}; "
            f"clip {b.example_clip}: {b.example!r}); check {hint or 'the task options, its vocabulary or tokenizer'}; "
            "--force goes on anyway")

"""A plan's decode against FP32's, per clip: where it first departs, the tokens on both sides, the
per-step logit error; and over the clips, the token agreement.

Two measurements, on purpose: the tokens come from each side's own decode (the low-precision
decoder reads its own tokens and its own cache, as it would when deployed), while the logit error
of a step is teacher-forced: the candidate runs on the very inputs FP32's decode gave the decoder at
that step, so the error belongs to that step and not to an earlier departure.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..core.records import Record
from .decoding import agreement, departure

AFTER_TOKENS = 6  # tokens shown on each side from the departure on
BEFORE_CHARS = 60  # characters of the shared text shown before it


@dataclass
class ClipDecode(Record):
    id: str
    steps: int  # FP32's decode: one token per step, the end token included
    steps_candidate: int
    departure: int | None = None  # first step (0-based) whose token differs from FP32's; None: identical
    fp32_id: int | None = None  # the tokens at the departure
    candidate_id: int | None = None
    fp32_token: str | None = None
    candidate_token: str | None = None
    before: str = ""  # the end of the text both decodes share before the departure
    fp32_after: str = ""  # a few tokens from the departure on, each side
    candidate_after: str = ""
    logit_steps: list[int] = field(default_factory=list)  # steps (0-based) whose logits were compared, teacher-forced
    logit_rel_l2: list[float] = field(default_factory=list)
    logit_max_abs: list[float] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        return self.departure is None


@dataclass
class DecodeReport(Record):
    """One configuration's decodes (fp16, fp16+pins, bf16...) against FP32's."""

    config: str
    token_agreement: float  # decoding.agreement: 1.0 exactly when every clip's decode is FP32's
    identical: int  # clips whose decode is FP32's, token for token
    clips: list[ClipDecode]
    logits: str = ""  # how the per-step logit errors were measured; empty: not measured



StepErrors = dict[int, list[tuple[int, float, float]]]  # clip index -> (step, rel-L2, max abs) per compared step


def clip_decode(clip_id: str, ref: list[int], cand: list[int], text: Callable[[list[int]], str],
                errors: list[tuple[int, float, float]] = ()) -> ClipDecode:
    d = departure(ref, cand)
    c = ClipDecode(clip_id, len(ref), len(cand), d, logit_steps=[s for s, _, _ in errors],
                   logit_rel_l2=[r for _, r, _ in errors], logit_max_abs=[m for _, _, m in errors])
    if d is not None:
        c.fp32_id, c.candidate_id = (ref[d] if d < len(ref) else None), (cand[d] if d < len(cand) else None)
        c.fp32_token = None if c.fp32_id is None else text([c.fp32_id])
        c.candidate_token = None if c.candidate_id is None else text([c.candidate_id])
        c.before = text(ref[:d])[-BEFORE_CHARS:]
        c.fp32_after, c.candidate_after = text(ref[d:d + AFTER_TOKENS]), text(cand[d:d + AFTER_TOKENS])
    return c


def decode_report(config: str, ids: list[str], refs: list[list[int]], cands: list[list[int]], text: Callable[[list[int]], str],
                  errors: StepErrors | None = None, how: str = "") -> DecodeReport:
    clips = [clip_decode(i, r, c, text, (errors or {}).get(k, [])) for k, (i, r, c) in enumerate(zip(ids, refs, cands))]
    return DecodeReport(config, agreement(refs, cands), sum(c.identical for c in clips), clips, how if errors else "")

"""precdoctor's acceptance criteria as trtexec's and Polygraphy's accuracy checks, and what neither can check.

trtexec 11.1 (samples/common/sampleUtils.cpp, sampleInference.cpp; field-research.md 1.5) computes one loss
per output tensor with one algorithm, in double, and fails when ``loss >= --accuracyThreshold``; the
threshold, ``--atol`` and ``--rtol`` are parsed as float32. Per sample and output:

- ``finite``: l0 with atol = FLT_MAX, rtol = 1: a finite value never exceeds ``atol + |ref|``, an infinite
  one always does; threshold 1e-12, so one element off fails.
- ``max-abs<=X``: l0 with atol = X (the float32 at or below X), rtol = 0: no element may differ by more.
- ``rel-l2<=X``: l2 is the mean squared error, so ``||c - r|| <= X ||r||`` is ``l2 <= X^2 mean(r^2)``: the
  threshold is computed from the sample's own reference (one trtexec run per output and sample).
- ``cosine>=X``: cos is ``1 - cosine``: threshold 1 - X; plus the l0 check of ``finite`` on the same output, since
  an Inf in the output makes cos's loss NaN, which passes (precdoctor's cosine fails it).
Thresholds are rounded down to float32, so trtexec is at most one float32 step stricter than precdoctor.

Not mapped: NaN passes every trtexec algorithm (``absDiff > tol`` and ``loss >= threshold`` are false for
NaN, ``std::max`` drops it), so the scripts read each sample's exported outputs and fail on a NaN
themselves; at positions where the FP32 reference is itself Inf, l0 cannot tell agreement from
disagreement (a tolerance of inf, or 0 * inf), and l2/cos are not mapped for such an output;
``argmax-agreement`` has no trtexec algorithm and no Polygraphy comparison.

Polygraphy (comparator/compare.py, 0.53) maps exactly: ``simple`` elementwise fails an element that exceeds
both tolerances (or is NaN), so ``max-abs<=X`` is atol X, rtol 0, and ``finite`` is both 1e300;
``l2`` thresholds the absolute L2 norm (X ||r||, per sample); ``cosine_similarity`` the cosine.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...analysis.acceptance import Criterion

FLT_MAX = float(np.finfo(np.float32).max)
L0_THRESHOLD = 1e-12  # l0's loss is (elements off) / N: any element off gives at least 1/N
MIN_THRESHOLD = float(np.finfo(np.float32).tiny)  # trtexec refuses a threshold of 0; a float32 subnormal may not parse
POLYGRAPHY_LOOSE = 1e300  # a tolerance no finite difference reaches (Polygraphy compares in float64)
_UNMAPPED = {"argmax-agreement": "no trtexec algorithm or Polygraphy comparison measures argmax agreement"}


def f32_down(x: float) -> float:
    """The largest float32 at or below ``x`` (a threshold trtexec parses as float32, never looser than ``x``)."""
    v = np.float32(x)
    if float(v) > x:
        v = np.nextafter(v, np.float32(-np.inf), dtype=np.float32)
    return float(v)


def number(x: float) -> str:
    """A float32 value as text that parses back to the same float32 (9 significant digits)."""
    return f"{x:.9g}"


@dataclass
class OutputNeeds:
    """What the criteria ask of one output (a float output of the model)."""

    finite: bool = False
    max_abs: float | None = None
    rel_l2: float | None = None
    cosine: float | None = None

    @property
    def l0(self) -> bool:
        return self.finite or self.max_abs is not None


@dataclass
class Needs:
    outputs: dict[str, OutputNeeds] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)  # "criterion: why"


def needs(criteria: list[Criterion], float_outputs: list[str]) -> Needs:
    """Fold the output criteria into what each float output must satisfy (the tightest of each kind)."""
    out = Needs({o: OutputNeeds() for o in float_outputs})
    for c in criteria:
        if not c.is_output:
            continue
        if c.metric in _UNMAPPED:
            out.unmapped.append(f"{c.text()}: {_UNMAPPED[c.metric]}")
            continue
        for o in ([c.output] if c.output else float_outputs):
            n = out.outputs.get(o)
            if n is None:
                continue
            if c.metric == "finite":
                n.finite = True
            elif c.metric == "max-abs":
                n.max_abs = c.value if n.max_abs is None else min(n.max_abs, c.value)
            elif c.metric == "rel-l2":
                n.rel_l2 = c.value if n.rel_l2 is None else min(n.rel_l2, c.value)
            elif c.metric == "cosine":
                n.cosine = c.value if n.cosine is None else max(n.cosine, c.value)
    return out


@dataclass(frozen=True)
class AccuracyRun:
    """One trtexec accuracy check: one algorithm and threshold over some outputs of one sample."""

    algorithm: str  # l0 | l2 | cos (trtexec's spelling)
    outputs: tuple[str, ...]
    threshold: float
    atol: float | None = None
    rtol: float | None = None
    what: str = ""


def _l0_tolerance(n: OutputNeeds) -> tuple[float, float]:
    return (f32_down(n.max_abs), 0.0) if n.max_abs is not None else (FLT_MAX, 1.0)


def trtexec_runs(nd: Needs, reference: dict[str, np.ndarray]) -> tuple[list[AccuracyRun], list[str]]:
    """The trtexec runs that check one sample, and what they leave unchecked on it ("output: why")."""
    runs: list[AccuracyRun] = []
    notes: list[str] = []
    l0: dict[tuple[float, float], list[str]] = {}
    cos: dict[float, list[str]] = {}
    for o, n in nd.outputs.items():
        r = np.asarray(reference[o], dtype=np.float64)
        finite = bool(np.isfinite(r).all())
        if n.l0 or n.cosine is not None:
            l0.setdefault(_l0_tolerance(n), []).append(o)
            if not finite:
                notes.append(f"{o}: FP32 itself is Inf/NaN at {int((~np.isfinite(r)).sum())} element(s); l0 cannot judge them")
        if (n.rel_l2 is not None or n.cosine is not None) and not finite:
            notes.append(f"{o}: rel-l2/cosine not checked (FP32 itself is Inf/NaN there)")
            continue
        if n.rel_l2 is not None:
            bound = f32_down(n.rel_l2 ** 2 * float(np.mean(r * r))) if r.size else 0.0
            runs.append(AccuracyRun("l2", (o,), max(bound, MIN_THRESHOLD), what=f"rel-l2<={n.rel_l2:g}"))
        if n.cosine is not None:
            cos.setdefault(n.cosine, []).append(o)
    for (atol, rtol), outs in l0.items():
        what = "finite" if atol == FLT_MAX else f"max-abs<={atol:g}"
        runs.insert(0, AccuracyRun("l0", tuple(outs), L0_THRESHOLD, atol, rtol, what))
    for x, outs in cos.items():
        runs.append(AccuracyRun("cos", tuple(outs), max(f32_down(1.0 - x), MIN_THRESHOLD), what=f"cosine>={x:g}"))
    return runs, notes


@dataclass
class PolygraphyCheck:
    """Polygraphy's comparison of one sample: compare functions and their per-output tolerances."""

    funcs: list[str]
    atol: dict[str, float]  # "" = every other output
    rtol: dict[str, float]
    l2: dict[str, float]
    cosine: dict[str, float]


def polygraphy_check(nd: Needs, reference: dict[str, np.ndarray]) -> tuple[PolygraphyCheck, list[str]]:
    chk = PolygraphyCheck(["simple"], {"": POLYGRAPHY_LOOSE}, {"": POLYGRAPHY_LOOSE}, {"": POLYGRAPHY_LOOSE}, {"": -1.0})
    notes = []
    for o, n in nd.outputs.items():
        if n.max_abs is not None:
            chk.atol[o], chk.rtol[o] = n.max_abs, 0.0
        r = np.asarray(reference[o], dtype=np.float64)
        if (n.rel_l2 is not None or n.cosine is not None) and not np.isfinite(r).all():
            notes.append(f"{o}: rel-l2/cosine not checked (FP32 itself is Inf/NaN there)")
            continue
        if n.rel_l2 is not None:
            chk.l2[o] = n.rel_l2 * float(np.linalg.norm(r))
        if n.cosine is not None:
            chk.cosine[o] = n.cosine
    chk.funcs += [f for f, d in (("l2", chk.l2), ("cosine_similarity", chk.cosine)) if len(d) > 1]
    return chk, notes

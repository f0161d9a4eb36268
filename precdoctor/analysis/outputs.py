"""Graph outputs compared with FP32: error norms, silently corrupted positions, exact agreement of ids.

A float output diverges past a relative L2 error, when Inf/NaN appear, or when
some *positions* (all axes but the last: frames, tokens) are off by more than
an absolute tolerance while the output stays finite (silent corruption: the
Whisper LayerNorm overflow leaves 29 of 1500 frames as the bias alone). Non-float
outputs (token ids, masks) agree exactly or not.

Non-finite values FP32 itself computes (a -inf mask, a NaN from a Log of a
negative input) are counted apart: the candidate agrees where it has the very
same value (the same infinity, or NaN), and every other value there is a
mismatch. Whether a NaN in the FP32 output is acceptable is the run's verdict,
not the comparison's (runs.py).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..core.limits import DEFAULT_ATOL, POSITION_ULPS
from ..numerics.metrics import Metrics, metrics
from ..numerics.probes import combine, numpy_stats
from ..core.records import Record


@dataclass
class OutputComparison(Record):
    name: str
    kind: Literal["float", "exact"]
    diverges: bool
    reasons: list[str]
    positions: int
    positions_off: int
    positions_off_per_sample: list[int]
    metrics: Metrics | None = None  # float outputs
    mismatch: int | None = None  # exact outputs: elements that differ
    elements: int = 0
    nan_ref: int = 0  # NaN in the FP32 output itself
    inf_ref: int = 0  # +-Inf in the FP32 output itself
    nonfinite_mismatch: int = 0  # of those, where the candidate does not hold the same value


def position_stats(ref: np.ndarray, cand: np.ndarray, atol: float) -> tuple[int, int, np.ndarray]:
    """Positions (all axes but the last) whose max abs error exceeds atol or that went non-finite."""
    r = np.asarray(ref, np.float32)
    c = np.asarray(cand, np.float32)
    if r.ndim == 0:
        r, c = r.reshape(1, 1), c.reshape(1, 1)
    width = r.shape[-1] if r.shape[-1] else 1
    r2, c2 = r.reshape(-1, width), c.reshape(-1, width)
    with np.errstate(invalid="ignore"):
        err = np.abs(c2 - r2)
        new_bad = ~np.isfinite(c2) & np.isfinite(r2)
        lost = _nonfinite_mismatch(r2, c2)
        off = (np.nan_to_num(err, nan=0.0, posinf=np.inf) > atol).any(axis=1) | new_bad.any(axis=1) | lost.any(axis=1)
    return int(off.sum()), int(off.size), off


def _nonfinite_mismatch(r: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Where FP32 is non-finite and the candidate does not hold the same value (equal infinities and NaN/NaN agree)."""
    with np.errstate(invalid="ignore"):
        return ~np.isfinite(r) & ~((r == c) | (np.isnan(r) & np.isnan(c)))


def _exact(name: str, pairs) -> OutputComparison:
    arrays = [(np.asarray(r[name]), np.asarray(c[name])) for r, c in pairs]
    per = [int(np.sum(r != c)) if r.shape == c.shape else r.size for r, c in arrays]
    total, diff = sum(r.size for r, _ in arrays), sum(per)
    reasons = [f"{diff} of {total} elements differ from FP32"] if diff else []
    return OutputComparison(name, "exact", bool(diff), reasons, total, diff, per, mismatch=diff, elements=total)


def position_atol(pairs, name: str, fmt) -> float:
    """The default tolerance of a position: DEFAULT_ATOL, or POSITION_ULPS roundings at the output's FP32 |max| where
    that is larger (limits.py says why)."""
    top = 0.0
    for ref, _ in pairs:
        r = np.asarray(ref[name], np.float32)
        fin = r[np.isfinite(r)]
        top = max(top, float(np.max(np.abs(fin), initial=0.0)))
    return max(DEFAULT_ATOL, POSITION_ULPS * fmt.unit_roundoff * top)


def _float(name: str, pairs, fmt, rel_l2: float, atol: float | None) -> OutputComparison:
    atol = position_atol(pairs, name, fmt) if atol is None else atol
    raw, off, total, per_sample = None, 0, 0, []
    nan_ref = inf_ref = lost = 0
    shapes = []  # samples whose candidate has another shape than FP32 (a branch taken otherwise): off everywhere, as
    #              the acceptance counts them (acceptance._output_measure: the same rule for shapes)
    for k, (ref, cand) in enumerate(pairs):
        if np.shape(ref[name]) != np.shape(cand[name]):
            shapes.append(f"sample {k}: {list(np.shape(cand[name]))} where FP32 has {list(np.shape(ref[name]))}")
            r = np.asarray(ref[name])
            n = r.size // max(r.shape[-1], 1) if r.ndim else 1  # every position of FP32's is off
            off, total = off + n, total + n
            per_sample.append(n)
            continue
        raw = combine(raw, numpy_stats(ref[name], cand[name], fmt))
        o, t, _ = position_stats(ref[name], cand[name], atol)
        off, total = off + o, total + t
        per_sample.append(o)
        r, c = np.asarray(ref[name], np.float32), np.asarray(cand[name], np.float32)
        nan_ref, inf_ref = nan_ref + int(np.isnan(r).sum()), inf_ref + int(np.isinf(r).sum())
        lost += int(_nonfinite_mismatch(r, c).sum()) if r.shape == c.shape else 0
    if raw is None:  # no sample comparable
        raw = numpy_stats(np.zeros(0, np.float32), np.zeros(0, np.float32), fmt)
    m = metrics(raw, fmt)
    reasons = [f"shape differs from FP32 ({'; '.join(shapes)})"] if shapes else []
    if m.nonfinite_new:
        reasons.append(f"{m.nonfinite_new} non-finite values")
    if lost:
        reasons.append(f"{lost} values FP32 computes as Inf/NaN differ")
    if m.compared and not m.rel_l2 <= rel_l2:
        reasons.append(f"relative L2 error {m.rel_l2:.3g} > {rel_l2}")
    if off:
        reasons.append(f"{off} of {total} positions off by more than {atol:.3g}")
    if reasons and not m.nonfinite_new and not lost and not shapes:
        reasons.append("silent corruption: the output is finite but wrong")
    return OutputComparison(name, "float", bool(reasons), reasons, total, off, per_sample, metrics=m, elements=m.elements,
                            nan_ref=nan_ref, inf_ref=inf_ref, nonfinite_mismatch=lost)


def compare_outputs(pairs: list[tuple[dict, dict]], outputs: list[str], fmt, rel_l2: float, atol: float | None) -> dict[str, OutputComparison]:
    """Every graph output present in the samples' (reference, candidate) dicts."""
    out: dict[str, OutputComparison] = {}
    for name in outputs:
        ref0 = pairs[0][0].get(name)
        if ref0 is None:
            continue
        if np.asarray(ref0).dtype.kind != "f":
            out[name] = _exact(name, pairs)
        else:
            out[name] = _float(name, pairs, fmt, rel_l2, atol)
    return out

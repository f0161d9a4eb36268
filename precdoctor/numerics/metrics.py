"""The error metrics of one tensor against FP32, from the raw statistics its probe summed."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..core.formats import Format
from .probes import IDX
from ..core.records import Record


@dataclass
class Metrics(Record):
    """One tensor's error against FP32, over the elements finite in both (non-finite ones are counted apart).

    With no element finite in both (an all-NaN FP32 reference), the error norms are NaN: undefined,
    never "rel-L2 0, cosine 1"; ``compared`` says over how many elements the norms were taken.
    """

    elements: int
    max_abs: float  # inf when the candidate has new Inf/NaN
    rel_l2: float
    cosine: float
    sqnr_db: float
    nonfinite_ref: int
    nonfinite_cand: int
    nonfinite_new: int  # non-finite in the candidate where FP32 is finite
    ref_absmax: float  # FP32 |max| over finite values
    headroom: float  # the format's largest finite value / FP32 |max|
    overflow: int  # FP32 values past the format's largest finite value
    underflow: int | None  # nonzero FP32 values below half the smallest subnormal (None: not measured)
    # of nonfinite_new: +-inf where FP32 holds a finite value beyond the format's range, of the same sign (saturation;
    # whether it is harmless is decided over the graph: comparison.benign_saturation)
    saturated: int = field(default=0, kw_only=True)
    saturated_pos: int = field(default=0, kw_only=True)  # of those, +inf
    # finite values FP32 holds beyond the range that the candidate holds at the format's extreme, same sign (a clamped
    # constant): not compared, like non-finite ones (limits.CLAMP_BAND)
    clamped: int = field(default=0, kw_only=True)
    # 0 where FP32 holds a value the format keeps nonzero (x / inf = 0); None: not measured (fast probe)
    zeroed: int | None = field(default=None, kw_only=True)

    @property
    def overflow_frac(self) -> float:
        return self.overflow / max(self.elements, 1)

    @property
    def compared(self) -> int:
        """Elements finite in both FP32 and the candidate, clamped ones aside: what the error norms are taken over."""
        return max(self.elements - self.nonfinite_ref - self.nonfinite_new - self.clamped, 0)

    @property
    def finite_error(self) -> float:
        """Relative L2 over the elements finite in both, whatever else is non-finite (0 when nothing was comparable)."""
        return 0.0 if math.isnan(self.rel_l2) else self.rel_l2

    @property
    def error(self) -> float:
        """One number for error growth: inf when Inf/NaN appeared, else relative L2 (0 when nothing was comparable)."""
        return math.inf if self.nonfinite_new else self.finite_error


def metrics(raw: np.ndarray, fmt: Format) -> Metrics:
    sse, ssr, ssc, dot = (float(raw[IDX[k]]) for k in ("sse", "ssr", "ssc", "dot"))
    new = int(raw[IDX["nonfinite_new"]])
    if any(math.isnan(v) for v in (sse, ssr, ssc)):  # not measured (a fast probe of a candidate with Inf/NaN)
        rel = cos = sqnr = math.nan
    else:
        rel = math.sqrt(sse / ssr) if ssr > 0 else (0.0 if sse == 0 else math.inf)
        cos = dot / math.sqrt(ssr * ssc) if ssr > 0 and ssc > 0 else (1.0 if ssr == ssc == 0 else 0.0)
        with np.errstate(divide="ignore"):
            sqnr = math.inf if sse == 0 else (10 * math.log10(ssr / sse) if ssr > 0 else -math.inf)
    absmax = float(raw[IDX["ref_absmax"]])
    under = raw[IDX["n_underflow"]]
    max_abs = math.inf if new else float(raw[IDX["max_abs"]])
    if raw[IDX["n"]] - raw[IDX["nonfinite_ref"]] - new - raw[IDX["n_clamped"]] <= 0:  # nothing finite in both: the norms are undefined
        rel = cos = sqnr = math.nan
        max_abs = math.inf if new else math.nan
    return Metrics(
        elements=int(raw[IDX["n"]]), max_abs=max_abs, rel_l2=rel, cosine=cos,
        sqnr_db=sqnr, nonfinite_ref=int(raw[IDX["nonfinite_ref"]]), nonfinite_cand=int(raw[IDX["nonfinite_cand"]]),
        nonfinite_new=new, ref_absmax=absmax, headroom=fmt.max_finite / absmax if absmax > 0 else math.inf,
        overflow=int(raw[IDX["n_overflow"]]), underflow=None if math.isnan(under) else int(under),
        saturated=int(raw[IDX["n_saturated"]]), saturated_pos=int(raw[IDX["n_saturated_pos"]]), clamped=int(raw[IDX["n_clamped"]]),
        zeroed=None if math.isnan(raw[IDX["n_zeroed"]]) else int(raw[IDX["n_zeroed"]]))

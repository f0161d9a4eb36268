"""Numbers as people read them in the report: with units, no raw floats, percentages that do not wrap."""
from __future__ import annotations

import math

NBSP = "\u00a0"


def num(x, spec: str = ".3g", unit: str = "") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and not math.isfinite(x):
        text = "not a number" if math.isnan(x) else ("infinite" if x > 0 else "minus infinite")
    else:
        text = format(x, spec)
    return f"{text}{NBSP}{unit}" if unit else text


def pct(share: float | None) -> str:
    """A share (0.0123) as a percentage ("1.23 %") whose sign never wraps onto its own line."""
    if share is None or (isinstance(share, float) and math.isnan(share)):
        return "-"
    return f"{100 * share:.3g}{NBSP}%"


def count(n: int | None) -> str:
    return "-" if n is None else f"{n:,}".replace(",", NBSP)


def flops(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, scale in (("TFLOP", 1e12), ("GFLOP", 1e9), ("MFLOP", 1e6), ("kFLOP", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{NBSP}{unit}"
    return f"{n}{NBSP}FLOP"

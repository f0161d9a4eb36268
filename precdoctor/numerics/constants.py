"""How the FP32 constants of a model become FP16/BF16: by clamping or by casting.

The tools that convert a model disagree, and some verdicts turn on it (FIELD.md;
field-research.md 5-6):

- ``cast``: IEEE round-to-nearest, what a Cast node, numpy ``astype`` and torch
  ``.half()`` do. In FP16 1e-10 becomes 0 and 7e4 becomes inf, so a
  ``Clip(min=1e-10)`` before ``Log`` gives -inf.
- ``clamp``: magnitudes below the format's smallest subnormal become that
  subnormal (5.96e-8 in FP16) and finite magnitudes past its largest finite value
  become it (65504), then the value is rounded. TensorRT's weakly typed builder
  converts FP32 weights so, with a warning (TensorRT issue 3101); ONNX Runtime's
  float16 converter clamps to the same bounds and ModelOpt AutoCast to 65504. The
  sign is kept (AutoCast alone makes tiny negatives +5.96e-8); zero, inf and NaN
  are left alone. BF16 uses its own bounds (TensorRT's BF16 conversion was not
  confirmed).

The mixed ONNX precdoctor writes clamps: the safer of the two, whatever the target.
"""
from __future__ import annotations

import numpy as np

from ..core.formats import Format

CONVERSIONS = ("clamp", "cast")
SHIPPED = "clamp"  # how precdoctor's own mixed ONNX converts its constants (mixed.py)


def clamp(a: np.ndarray, fmt: Format) -> np.ndarray:
    """``a`` (float32) with its nonzero magnitudes held inside the format's finite, nonzero range."""
    a = np.asarray(a, dtype=np.float32)
    mag = np.abs(a)
    tiny = (mag > 0) & (mag < fmt.min_subnormal)
    huge = np.isfinite(a) & (mag > fmt.max_finite)
    if not (tiny.any() or huge.any()):
        return a
    bound = np.where(tiny, np.float32(fmt.min_subnormal), np.float32(fmt.max_finite))
    return np.where(tiny | huge, np.copysign(bound, a), a).astype(np.float32)


def convert(a: np.ndarray, fmt: Format, how: str) -> np.ndarray:
    """The values the format holds for constant ``a`` under conversion ``how``, as float32."""
    if how not in CONVERSIONS:
        raise ValueError(f"unknown constant conversion {how!r}; expected one of {CONVERSIONS}")
    return fmt.round(clamp(a, fmt) if how == "clamp" else a)


def lost(a: np.ndarray, fmt: Format, how: str) -> tuple[int, int]:
    """(nonzero values that become 0, finite values that become inf) when ``a`` is converted by ``how``."""
    a = np.asarray(a, dtype=np.float32)
    r = convert(a, fmt, how)
    return int(((a != 0) & (r == 0)).sum()), int((np.isinf(r) & np.isfinite(a)).sum())

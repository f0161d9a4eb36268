"""Reduced-precision number formats: limits and exact rounding."""
from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np
from onnx import TensorProto


@dataclass(frozen=True)
class Format:
    name: str  # "fp16" | "bf16"
    onnx_type: int
    np_type: type
    max_finite: float
    min_subnormal: float
    min_normal: float  # below it values keep fewer significant bits (subnormal)
    unit_roundoff: float  # 2**-(mantissa bits + 1): relative error of one rounding
    trt_name: str  # trtexec spelling
    polygraphy_name: str

    def round(self, x: np.ndarray) -> np.ndarray:
        """Round float32 values to this format and back (IEEE round-to-nearest-even, overflow to inf)."""
        with np.errstate(over="ignore"):
            return np.asarray(x, dtype=np.float32).astype(self.np_type).astype(np.float32)


FP16 = Format("fp16", TensorProto.FLOAT16, np.float16, 65504.0, 2.0**-24, 2.0**-14, 2.0**-11, "fp16", "float16")
BF16 = Format(
    "bf16",
    TensorProto.BFLOAT16,
    ml_dtypes.bfloat16,
    float(ml_dtypes.finfo(ml_dtypes.bfloat16).max),
    float(ml_dtypes.finfo(ml_dtypes.bfloat16).smallest_subnormal),
    float(ml_dtypes.finfo(ml_dtypes.bfloat16).smallest_normal),
    2.0**-8,
    "bf16",
    "bfloat16",
)
FORMATS = {"fp16": FP16, "bf16": BF16}


TF32_DROPPED_BITS = 13  # float32's 23 explicit mantissa bits less TF32's 10


def round_tf32(x: np.ndarray) -> np.ndarray:
    """Round float32 values to TF32 (10 explicit mantissa bits, float32's exponent range), round to nearest even;
    inf and NaN unchanged. What TensorRT and cuBLAS do to the inputs of an FP32 inner product with TF32 on
    (TensorRT's BuilderFlag::kTF32: "rounding the inputs to 10-bit mantissas", the sum kept in FP32)."""
    a = np.ascontiguousarray(x, dtype=np.float32)
    bits = a.view(np.uint32).astype(np.uint64)
    half = np.uint64(1 << (TF32_DROPPED_BITS - 1))
    odd = (bits >> np.uint64(TF32_DROPPED_BITS)) & np.uint64(1)
    rounded = ((bits + half - np.uint64(1) + odd) >> np.uint64(TF32_DROPPED_BITS)) << np.uint64(TF32_DROPPED_BITS)
    out = rounded.astype(np.uint32).view(np.float32)
    return np.where(np.isfinite(a), out, a)


def get_format(name: str) -> Format:
    try:
        return FORMATS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown precision {name!r}; expected fp16 or bf16") from None

"""Rounding a float32 tensor to FP16/BF16 inside an ONNX graph, at any opset.

A Cast to the low type and back reproduces the format exactly (overflow to
inf, subnormals, flush to zero) while the graph stays float32, which ONNX
Runtime then computes faithfully on CPU (FIELD.md: an FP16-typed graph on CPU
is computed in FP32 and hides overflow). BF16 Casts need opset 13; below it,
Veltkamp splitting rounds to bfloat16's 8 significand bits with arithmetic. TF32
(the inputs of an FP32 inner product on an engine with TF32 on) has no ONNX type
at all: Veltkamp splitting rounds to its 11 significand bits.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..core.formats import Format
from ..graph import Namer

VELTKAMP_FACTOR = 65537.0  # 2**16 + 1: splits float32's 24-bit significand into a top 8-bit part (bfloat16)
TF32_FACTOR = 8193.0  # 2**13 + 1: the top 11-bit part (TF32: 10 explicit mantissa bits)
VELTKAMP_LIMIT = 1e33  # x * factor would overflow float32 past this; such values are passed through unrounded


def round_nodes(src: str, dst: str, fmt: Format, opset: int, namer: Namer) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes (and constants) that set ``dst = round_to_fmt(src)``, both float32."""
    if fmt.name == "fp16" or opset >= 13:
        mid = namer(f"{dst}/{fmt.name}")
        return [
            helper.make_node("Cast", [src], [mid], to=fmt.onnx_type, name=namer(f"{dst}/to_{fmt.name}")),
            helper.make_node("Cast", [mid], [dst], to=TensorProto.FLOAT, name=namer(f"{dst}/to_fp32")),
        ], []
    return _veltkamp(src, dst, opset, namer, VELTKAMP_FACTOR)


def tf32_nodes(src: str, dst: str, opset: int, namer: Namer) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes (and constants) that set ``dst = round_to_tf32(src)``, both float32 (formats.round_tf32 in numpy)."""
    return _veltkamp(src, dst, opset, namer, TF32_FACTOR)


def _veltkamp(src: str, dst: str, opset: int, namer: Namer, factor: float) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """hi = c - (c - a) with c = a * (2**s + 1) rounds ``a`` to 24 - s significand bits. ``a`` is ``src`` clamped to
    +-1e33 so that c stays finite; values past the clamp (and inf, NaN) are passed through by a 0/1 mask
    in arithmetic, because ``Where`` does not exist before opset 9 and this path serves opsets 7-12
    (Clip takes its bounds as attributes before opset 11; Min/Max do not broadcast before opset 8)."""
    k, lim, nlim, one = (namer(f"{dst}/vk_{s}") for s in ("factor", "limit", "neg_limit", "one"))
    inits = [numpy_helper.from_array(np.array(v, np.float32), name)
             for v, name in ((factor, k), (VELTKAMP_LIMIT, lim), (-VELTKAMP_LIMIT, nlim), (1.0, one))]
    a, c, t, hi, ab, ok, okf, notf, keep, low = (namer(f"{dst}/vk_{s}") for s in
                                                  ("a", "c", "t", "hi", "abs", "ok", "okf", "notf", "keep", "low"))

    def n(op, ins, out, **kw):
        return helper.make_node(op, ins, [out], name=namer(f"{out}/node"), **kw)

    clip = (n("Clip", [src], a, min=-VELTKAMP_LIMIT, max=VELTKAMP_LIMIT) if opset < 11 else n("Clip", [src, nlim, lim], a))
    nodes = [clip, n("Mul", [a, k], c), n("Sub", [c, a], t), n("Sub", [c, t], hi),
             n("Abs", [src], ab), n("Less", [ab, lim], ok), n("Cast", [ok], okf, to=TensorProto.FLOAT),
             n("Sub", [one, okf], notf), n("Mul", [hi, okf], low), n("Mul", [src, notf], keep),
             helper.make_node("Add", [low, keep], [dst], name=namer(f"{dst}/vk_select"))]
    return nodes, inits

"""Writing nodes into a derived graph at the model's opset: the ops whose signature moved between opsets
(axes and splits from attributes to inputs at 13, Slice bounds at 10) written the one way each opset takes.

Every generated name comes from the graph's ``Namer``; nodes and constants accumulate here and the
caller places them.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .naming import Namer


class Emitter:
    """Nodes and constants for one derived graph (see the module docstring)."""

    def __init__(self, namer: Namer, opset: int, prefix: str):
        self.namer, self.opset, self.prefix = namer, opset, prefix
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def name(self, hint: str) -> str:
        return self.namer(f"{self.prefix}/{hint}")

    def const(self, value, dtype, hint: str) -> str:
        name = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), name))
        return name

    def op(self, op: str, inputs: list[str], hint: str, outputs: list[str] | None = None, n_out: int = 1, **attrs):
        """One node; returns its output name (one output) or the list of them."""
        outs = outputs or [self.name(f"{hint}_{k}" if n_out > 1 else hint) for k in range(n_out)]
        self.nodes.append(helper.make_node(op, inputs, outs, name=self.name(hint + "/node"), **attrs))
        return outs[0] if len(outs) == 1 else outs

    def unsqueeze(self, x: str, axes: list[int], hint: str, out: str | None = None) -> str:
        if self.opset >= 13:
            return self.op("Unsqueeze", [x, self.const(axes, np.int64, hint + "/axes")], hint, [out] if out else None)
        return self.op("Unsqueeze", [x], hint, [out] if out else None, axes=axes)

    def split(self, x: str, sizes: list[int], axis: int, hint: str) -> list[str]:
        if self.opset >= 13:
            out = self.op("Split", [x, self.const(sizes, np.int64, hint + "/sizes")], hint, n_out=len(sizes), axis=axis)
        else:
            out = self.op("Split", [x], hint, n_out=len(sizes), axis=axis, split=sizes)
        return out if isinstance(out, list) else [out]

    def slice(self, x: str, start: int, end: int, axis: int, hint: str) -> str:
        if self.opset >= 10:
            ins = [self.const([v], np.int64, hint + "/" + k) for k, v in (("starts", start), ("ends", end), ("axes", axis))]
            return self.op("Slice", [x, *ins], hint)
        return self.op("Slice", [x], hint, starts=[start], ends=[end], axes=[axis])

    def gather(self, x: str, index: int, axis: int, hint: str) -> str:
        """x[index] along ``axis``, the axis removed."""
        return self.op("Gather", [x, self.const(index, np.int64, hint + "/index")], hint, axis=axis)

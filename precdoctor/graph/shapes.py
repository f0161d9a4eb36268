"""Concrete shapes for one input sample, and what they let us count: element sizes and FLOPs per node."""
from __future__ import annotations

import math

import numpy as np
import onnx

from .view import GraphView, ViewCache


def value_shape(value) -> tuple[int, ...]:
    """The shape of a feed's value: a numpy array, or an ONNX Runtime OrtValue left on its device (a decode loop's
    cache on the GPU), whose ``shape`` is a method."""
    shape = getattr(value, "shape", None)
    return tuple(shape()) if callable(shape) else tuple(np.shape(value))


def with_input_shapes(model: onnx.ModelProto, feed: dict) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have this sample's concrete shapes (cheap when the
    weights are WeightStore references)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name in feed and vi.type.HasField("tensor_type"):
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for d in value_shape(feed[vi.name]):
                shape.dim.add().dim_value = int(d)
    return m


def concrete_shapes(graph: GraphView, feed: dict) -> dict[str, list[int]]:
    """Shapes of tensors, by shape inference with this sample's input shapes (where it can tell)."""
    m = with_input_shapes(graph.model, feed)
    try:
        inferred = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference fails on exotic models: sizes are then unknown, not an error
        return {}
    shapes = {name: list(init.dims) for name, init in graph.initializers.items()}
    shapes.update({k: list(value_shape(v)) for k, v in feed.items()})
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = [d.dim_value for d in tt.shape.dim]
    return shapes


_SIZES: ViewCache[tuple, dict[str, int]] = ViewCache("element counts per input-shape signature")


def concrete_sizes(graph: GraphView, feed: dict) -> dict[str, int]:
    """Element counts of tensors, by shape inference with this sample's input shapes (where it can tell); once per
    input-shape signature and view (a decoder's steps or clips of one length share it; inference reads no values)."""
    key = tuple(sorted((k, value_shape(v)) for k, v in feed.items()))
    # math.prod on Python ints: exact, where int64 would wrap on a hostile shape (limits.MAX_TENSOR_ELEMENTS reads it)
    return _SIZES.get(graph, key, lambda: {k: math.prod(v) for k, v in concrete_shapes(graph, feed).items()})


def peak_activation_elements(graph: GraphView, sizes: dict[str, int]) -> int:
    """The most activation elements alive at once when the graph runs in node order, each tensor freed after its last
    reader (what an engine that reuses buffers, as ONNX Runtime does, holds at its peak); graph outputs live to the end,
    weights are not activations. Tensors of unknown size count 0."""
    last: dict[str, int] = {}
    for k, n in enumerate(graph.nodes):
        for t in n.input:
            last[t] = k
    keep = set(graph.outputs)
    live = peak = sum(sizes.get(t, 0) for t in graph.inputs)
    for k, n in enumerate(graph.nodes):
        live += sum(sizes.get(t, 0) for t in n.output if t)
        peak = max(peak, live)
        live -= sum(sizes.get(t, 0) for t in set(n.input) | set(n.output)
                    if t and t not in keep and t not in graph.initializers and last.get(t, -1) <= k)
    return peak


def node_flops(graph: GraphView, shapes: dict[str, list[int]]) -> dict[str, int]:
    """Floating-point operations per node (multiply-adds count 2), where the shapes are known.
    MatMul/Gemm/Conv by their arithmetic; every other op as one operation per element it reads or writes
    (whichever is more: a reduction reads many)."""
    out = {}
    for n in graph.nodes:
        o = shapes.get(n.output[0]) if n.output else None
        if o is None:
            continue
        elems = int(np.prod(o, dtype=np.int64))
        a = shapes.get(n.input[0]) if n.input else None
        if n.op_type in ("MatMul", "Gemm") and a:
            k = a[-1] if n.op_type == "MatMul" or not any(x.name == "transA" and x.i for x in n.attribute) else a[0]
            out[n.name] = 2 * elems * int(k)
        elif n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1 and shapes.get(n.input[1]):
            w = shapes[n.input[1]]
            out[n.name] = 2 * elems * int(np.prod(w[1:], dtype=np.int64))
        else:
            out[n.name] = max(elems, int(np.prod(a, dtype=np.int64)) if a else 0)
    return out

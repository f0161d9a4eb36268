"""What precdoctor knows about ONNX op types, as sets each used for one decision."""
from __future__ import annotations

import onnx

# Float outputs hold only values already present in the float inputs: if the inputs are
# representable in the low format, so are the outputs, and rounding them again is a no-op.
VALUE_PRESERVING = frozenset({
    "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice",
    "Gather", "GatherElements", "GatherND", "Concat", "Split", "Expand", "Tile",
    "MaxPool", "Relu", "Max", "Min", "ReduceMax", "ReduceMin", "Neg", "Abs",
    "DepthToSpace", "SpaceToDepth", "Where", "Dropout", "Compress",
})

# Output holds exactly its first input's values, reshaped or permuted: same statistics, no probe of its own.
ALIAS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})

# Compute on shapes and indices only: nothing a precision plan could pin.
SHAPE_ONLY = frozenset({"Shape", "Size", "ConstantOfShape", "NonZero", "Range"})

# Normalizations whose internal precision belongs to the engine (emulation profiles decide).
FUSED_NORMS = frozenset({"LayerNormalization", "InstanceNormalization"})

# Inner products and the inputs they multiply: an engine with TF32 on rounds these to TF32 when the op computes in
# FP32 (TensorRT's kTF32: "inner products"; ONNX Runtime CUDA's use_tf32: "float GEMM/MatMul or cuDNN convolution").
# A bias (Gemm's C, Conv's B) is added in FP32. Other ops that may use tensor cores (Einsum, LSTM) are not modelled.
TF32_INPUTS = {"MatMul": (0, 1), "Gemm": (0, 1), "Conv": (0, 1), "ConvTranspose": (0, 1)}

# Attributes that name an output element type, per op.
DTYPE_ATTRS = {"Cast": "to", "RandomNormal": "dtype", "RandomUniform": "dtype", "EyeLike": "dtype",
               "RandomNormalLike": "dtype", "RandomUniformLike": "dtype"}

# Ops that read a small positive constant to keep the next op finite (a floor or epsilon); they amplify small values.
EPSILON_CONSUMERS = frozenset({"Sqrt", "Log", "Div", "Reciprocal", "Pow"})

# Ops whose output stays as small as their inputs (elementwise sums and products, clamps, data movement):
# a flushed small value travels through them to whatever reads it next.
KEEPS_SMALL = frozenset({"Add", "Sub", "Mul", "Clip", "Max", "Min", "Relu", "Abs", "Neg", "Identity", "Reshape", "Flatten",
                         "Squeeze", "Unsqueeze", "Transpose", "Slice", "Gather", "Concat", "Split", "Expand", "Cast"})


def body_graphs(node: onnx.NodeProto) -> list[tuple[str, onnx.GraphProto]]:
    """(attribute name, body) for each body of a control-flow node (If branches, Loop and Scan bodies)."""
    out = []
    for attr in node.attribute:
        if attr.type == onnx.AttributeProto.GRAPH:
            out.append((attr.name, attr.g))
        elif attr.type == onnx.AttributeProto.GRAPHS:
            out.extend((attr.name, g) for g in attr.graphs)
    return out


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    """The bodies of a control-flow node."""
    return [g for _, g in body_graphs(node)]


def is_control_flow(node: onnx.NodeProto) -> bool:
    return bool(subgraphs(node))

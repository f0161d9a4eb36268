"""Loading an ONNX model and the read-only view of its graph that everything else uses.

Node names follow TensorRT's ONNX parser, so a pin written here names the same
layer in a TensorRT engine: an unnamed node becomes ``node_of_<first output>``.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import TensorProto

from .errors import BadInput

FLOAT = TensorProto.FLOAT

# Ops whose float outputs hold only values already present in their float
# inputs: if the inputs are representable in the low format, so are the
# outputs, and rounding them again is a no-op we can skip.
VALUE_PRESERVING_OPS = frozenset(
    {
        "Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Slice",
        "Gather", "GatherElements", "GatherND", "Concat", "Split", "Expand", "Tile",
        "MaxPool", "Relu", "Max", "Min", "ReduceMax", "ReduceMin", "Neg", "Abs",
        "DepthToSpace", "SpaceToDepth", "Where", "Dropout", "Compress",
    }
)


def inline_bytes(model_or_tensor) -> int:
    """Bytes of initializer data held inline; ModelProto.ByteSize() walks everything and takes seconds on big models."""
    inits = [model_or_tensor] if isinstance(model_or_tensor, onnx.TensorProto) else model_or_tensor.graph.initializer
    return sum(len(i.raw_data) + 4 * (len(i.float_data) + len(i.int32_data)) + 8 * (len(i.int64_data) + len(i.double_data))
               for i in inits)


def _check_external_data(model: onnx.ModelProto, base: Path) -> None:
    """Refuse external data that is missing or points outside the model's folder."""
    root = base.resolve()
    for tensor in onnx.external_data_helper._get_all_tensors(model):
        if not onnx.external_data_helper.uses_external_data(tensor):
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        target = (root / location).resolve()
        if os.path.isabs(location) or not str(target).startswith(str(root) + os.sep):
            raise BadInput(
                f"external data of tensor {tensor.name!r} points outside the model's folder "
                f"({location!r}); refusing to read it"
            )
        if not target.is_file():
            raise BadInput(f"external data file {location!r} of tensor {tensor.name!r} is missing")
        need = int(info.get("offset", 0)) + int(info.get("length", 0))
        if need > target.stat().st_size:
            raise BadInput(f"external data file {location!r} is shorter than tensor {tensor.name!r} needs")


def load_model(path: str | os.PathLike) -> onnx.ModelProto:
    """Load, validate and name a model; every failure is a one-line BadInput."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"model file not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise BadInput(f"{path} is not a readable ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'truncated or corrupt'})") from None
    if not model.graph.node:
        raise BadInput(f"{path} is not a readable ONNX model (no graph nodes; truncated or not ONNX?)")
    _check_external_data(model, path.parent)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as exc:  # onnx raises assorted types for broken external data
        raise BadInput(f"cannot read external data of {path}: {exc}") from None
    try:
        if inline_bytes(model) < 1_900_000_000:
            onnx.checker.check_model(model)
        else:
            onnx.checker.check_model(str(path))
    except Exception as exc:  # ValidationError, or errors of the custom-domain kind
        raise BadInput(f"{path} is not a valid ONNX model: {str(exc).strip().splitlines()[0]}") from None
    name_nodes(model)
    return model


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every node a unique, deterministic name (TensorRT's convention for unnamed ones)."""
    seen: dict[str, int] = {}
    for node in model.graph.node:
        base = node.name or f"node_of_{node.output[0] if node.output else node.op_type}"
        name = base
        while name in seen:
            seen[base] += 1
            name = f"{base}_{seen[base]}"
        seen.setdefault(name, 0)
        node.name = name


def subgraph_inputs(node: onnx.NodeProto) -> set[str]:
    """Outer-scope names a control-flow node's subgraphs read (implicit inputs)."""
    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            defined = {i.name for i in g.input} | {i.name for i in g.initializer}
            for n in g.node:
                defined.update(n.output)
            for n in g.node:
                names.update(i for i in n.input if i and i not in defined)
                names.update(subgraph_inputs(n) - defined)
            names.update(o.name for o in g.output if o.name not in defined)
    return names


class WeightStore:
    """The graph's large initializers, written once to a private temp folder as ONNX external data.

    Every model precdoctor derives from a graph (emulation, paired probes,
    plans on the GPU) then carries references instead of copying hundreds of
    MB through protobuf on each build and serialization, and ONNX Runtime
    reads the weights from these files. Rounded copies for a low-precision
    format are written on first use, once per tensor and format.
    """

    MIN_BYTES = 4096
    ALIGN = 4096  # page-aligned offsets let ONNX Runtime map the file instead of copying it

    def __init__(self):
        import tempfile
        import weakref

        self._tmp = tempfile.TemporaryDirectory(prefix="precdoctor-weights-")
        self.dir = self._tmp.name
        self.arrays: dict[str, np.ndarray] = {}  # name -> values, for the ones moved out
        self._refs: dict[tuple[str, str], onnx.TensorProto] = {}
        self._finalizer = weakref.finalize(self, self._tmp.cleanup)

    def _append(self, file: str, name: str, arr: np.ndarray, data_type: int) -> onnx.TensorProto:
        path = os.path.join(self.dir, file)
        with open(path, "ab") as fh:
            offset = fh.tell()
            pad = (-offset) % self.ALIGN
            fh.write(b"\0" * pad)
            offset += pad
            np.ascontiguousarray(arr).tofile(fh)  # no intermediate bytes copy
        t = onnx.TensorProto(name=name, data_type=data_type, dims=list(arr.shape), data_location=onnx.TensorProto.EXTERNAL)
        for k, v in (("location", file), ("offset", str(offset)), ("length", str(arr.nbytes))):
            t.external_data.add(key=k, value=v)
        return t

    def externalize(self, model: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        for k, init in enumerate(model.graph.initializer):
            if init.data_location == onnx.TensorProto.EXTERNAL or inline_bytes(init) < self.MIN_BYTES:
                continue
            arr = numpy_helper.to_array(init)
            self.arrays[init.name] = arr
            model.graph.initializer[k].CopyFrom(self._append("weights.bin", init.name, arr, init.data_type))

    def rounded(self, name: str, fmt, new_name: str) -> onnx.TensorProto | None:
        """An external reference to ``fmt.round(name)`` (float32), or None if ``name`` is not stored here."""
        if name not in self.arrays:
            return None
        key = (name, fmt.name)
        if key not in self._refs:
            self._refs[key] = self._append(f"weights.{fmt.name}.bin", new_name, fmt.round(self.arrays[name]), onnx.TensorProto.FLOAT)
        ref = onnx.TensorProto()
        ref.CopyFrom(self._refs[key])
        ref.name = new_name
        return ref


@dataclass
class GraphView:
    """Topologically ordered nodes with producer/consumer maps and tensor types."""

    model: onnx.ModelProto
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: defaultdict(list))
    elem_type: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    _by_name: dict[str, onnx.NodeProto] = field(default_factory=dict, repr=False)
    store: WeightStore | None = field(default=None, repr=False)
    derived: dict = field(default_factory=dict, repr=False)  # facts computed once per view (the view never changes)

    @property
    def weights_dir(self) -> str | None:
        return self.store.dir if self.store else None

    def array(self, name: str) -> np.ndarray:
        """The value of an initializer, wherever it is kept."""
        from onnx import numpy_helper

        if self.store and name in self.store.arrays:
            return self.store.arrays[name]
        return numpy_helper.to_array(self.initializers[name])

    def model_with_data(self) -> onnx.ModelProto:
        """A copy of the model with every initializer inline (to hand to other tools)."""
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        for k, init in enumerate(m.graph.initializer):
            m.graph.initializer[k].CopyFrom(self.initializer_with_data(init.name))
        return m

    def initializer_with_data(self, name: str) -> onnx.TensorProto:
        """The initializer with its data inline, for models written out as artifacts."""
        from onnx import numpy_helper

        if self.store and name in self.store.arrays:
            return numpy_helper.from_array(self.store.arrays[name], name)
        return self.initializers[name]

    @property
    def opset(self) -> int:
        for o in self.model.opset_import:
            if o.domain in ("", "ai.onnx"):
                return o.version
        return 1

    def node(self, name: str) -> onnx.NodeProto:
        return self._by_name[name]

    def is_float(self, tensor: str) -> bool:
        return self.elem_type.get(tensor) == FLOAT

    def float_outputs(self, node: onnx.NodeProto) -> list[str]:
        return [o for o in node.output if o and self.is_float(o)]

    def float_tensors(self) -> list[str]:
        """Every float32 tensor a node produces, in topological order."""
        return [t for n in self.nodes for t in self.float_outputs(n)]


def _toposort(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            needs = set(node.input) | subgraph_inputs(node)
            if needs <= available:
                ordered.append(node)
                available.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            missing = sorted((set(rest[0].input) | subgraph_inputs(rest[0])) - available)
            raise BadInput(f"graph has a cycle or an undefined tensor: node {rest[0].name!r} needs {missing}")
        pending = rest
    return ordered


def infer_types(model: onnx.ModelProto) -> tuple[dict[str, int], dict[str, int]]:
    """Element type and rank of every tensor ONNX shape inference can type."""
    types: dict[str, int] = {}
    ranks: dict[str, int] = {}
    for init in model.graph.initializer:
        types[init.name] = init.data_type
        ranks[init.name] = len(init.dims)
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # large or exotic models: fall back to what the file declares
        inferred = model
    g = inferred.graph
    for vi in list(g.input) + list(g.value_info) + list(g.output):
        tt = vi.type.tensor_type
        if vi.type.HasField("tensor_type") and tt.elem_type:
            types[vi.name] = tt.elem_type
            if tt.HasField("shape"):
                ranks[vi.name] = len(tt.shape.dim)
    return types, ranks


def view(model: onnx.ModelProto, externalize: bool = True) -> GraphView:
    """The read-only view of a loaded model; large initializers move to a WeightStore (the model is changed)."""
    store = None
    if externalize and any(inline_bytes(i) >= WeightStore.MIN_BYTES for i in model.graph.initializer):
        store = WeightStore()
        store.externalize(model)
    g = model.graph
    v = GraphView(model=model, store=store)
    v.nodes = _toposort(g)
    v.initializers = {i.name: i for i in g.initializer}
    init_names = set(v.initializers)
    v.inputs = [i.name for i in g.input if i.name not in init_names]
    v.outputs = [o.name for o in g.output]
    v.elem_type, v.ranks = infer_types(model)
    for node in v.nodes:
        for o in node.output:
            if o:
                v.producer[o] = node
        for i in node.input:
            if i:
                v.consumers[i].append(node)
        for i in subgraph_inputs(node):
            v.consumers[i].append(node)
    v._by_name = {n.name: n for n in v.nodes}
    return v


def _const_scalar(graph: GraphView, name: str):
    from onnx import numpy_helper

    init = graph.initializers.get(name)
    if init is not None and int(np.prod(init.dims)) == 1:
        return float(graph.array(name).reshape(-1)[0])
    node = graph.producer.get(name)
    if node is not None and node.op_type == "Constant":
        for a in node.attribute:
            if a.name == "value":
                arr = numpy_helper.to_array(a.t)
                if arr.size == 1:
                    return float(arr.reshape(-1)[0])
    return None


def layernorm_patterns(graph: GraphView) -> list[dict]:
    """Decomposed LayerNorms: ReduceMean -> Sub -> Pow(2)|Mul(x,x) -> ReduceMean -> Add(eps) -> Sqrt -> Div
    [-> Mul(gamma) -> Add(beta)], the chain opset < 17 exporters write and ORT's LayerNormFusion fuses."""
    if "layernorm_patterns" not in graph.derived:
        graph.derived["layernorm_patterns"] = _find_layernorm_patterns(graph)
    return graph.derived["layernorm_patterns"]


def _find_layernorm_patterns(graph: GraphView) -> list[dict]:
    found = []

    def only(t, op):
        cs = graph.consumers.get(t, [])
        return [c for c in cs if c.op_type == op]

    for sq in graph.nodes:
        if not (sq.op_type == "Pow" and _const_scalar(graph, sq.input[1]) == 2.0 or sq.op_type == "Mul" and sq.input[0] == sq.input[1]):
            continue
        sub = graph.producer.get(sq.input[0])
        if sub is None or sub.op_type != "Sub":
            continue
        mean = graph.producer.get(sub.input[1])
        var = only(sq.output[0], "ReduceMean")
        if mean is None or mean.op_type != "ReduceMean" or mean.input[0] != sub.input[0] or not var:
            continue
        add = only(var[0].output[0], "Add")
        sqrt = only(add[0].output[0], "Sqrt") if add else []
        div = [d for d in only(sqrt[0].output[0], "Div") if d.input[0] == sub.output[0]] if sqrt else []
        if not div:
            continue
        chain = [mean, sub, sq, var[0], add[0], sqrt[0], div[0]]
        tail = div[0]
        mul = only(tail.output[0], "Mul")
        if len(graph.consumers.get(tail.output[0], [])) == 1 and mul:
            chain.append(mul[0])
            tail = mul[0]
            bias = only(tail.output[0], "Add")
            if len(graph.consumers.get(tail.output[0], [])) == 1 and bias:
                chain.append(bias[0])
                tail = bias[0]
        found.append({"nodes": [n.name for n in chain], "square": sq.name, "variance": var[0].name, "mean": mean.name,
                      "square_tensor": sq.output[0], "output": tail.output[0], "input": sub.input[0]})
    return found


ALIAS_OPS = frozenset({"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Identity"})


def aliases(graph: GraphView, tensors: list[str]) -> dict[str, str]:
    """Tensors holding exactly the values of another probed tensor (reshaped or permuted): their
    statistics are that tensor's, so they need no probe of their own. Maps alias -> root."""
    wanted = set(tensors)
    out: dict[str, str] = {}
    for node in graph.nodes:
        if node.op_type not in ALIAS_OPS or not node.output or node.output[0] not in wanted:
            continue
        src = node.input[0]
        root = out.get(src, src)
        if root in wanted and root in graph.producer:
            out[node.output[0]] = root
    return out


def with_input_shapes(model: onnx.ModelProto, feed: dict) -> onnx.ModelProto:
    """A copy of ``model`` whose graph inputs have this sample's concrete shapes (cheap when the
    weights are WeightStore references)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for vi in m.graph.input:
        if vi.name in feed and vi.type.HasField("tensor_type"):
            shape = vi.type.tensor_type.shape
            del shape.dim[:]
            for d in np.shape(feed[vi.name]):
                shape.dim.add().dim_value = int(d)
    return m


def concrete_shapes(graph: GraphView, feed: dict) -> dict[str, list[int]]:
    """Shapes of tensors, by shape inference with this sample's input shapes (where it can tell)."""
    m = with_input_shapes(graph.model, feed)
    try:
        inferred = onnx.shape_inference.infer_shapes(m, check_type=False, strict_mode=False, data_prop=True)
    except Exception:
        return {}
    shapes = {name: list(init.dims) for name, init in graph.initializers.items()}
    shapes.update({k: list(np.shape(v)) for k, v in feed.items()})
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shapes[vi.name] = [d.dim_value for d in tt.shape.dim]
    return shapes


def concrete_sizes(graph: GraphView, feed: dict) -> dict[str, int]:
    """Element counts of tensors, by shape inference with this sample's input shapes (where it can tell)."""
    return {k: int(np.prod(v, dtype=np.int64)) for k, v in concrete_shapes(graph, feed).items()}


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

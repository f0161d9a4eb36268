"""The read-only view of a loaded model that everything else works on.

Topologically ordered nodes, producer and consumer maps (a control-flow node
consumes the outer-scope tensors its bodies read), element types and ranks
from shape inference, and the weight store holding the large initializers.
The view never changes once built; facts computed from it once (schema limits,
patterns, element counts, flat graphs) are each declared by the module that
computes them as a typed ``ViewCache`` and live as long as the view.
"""
from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Generic, Hashable, TypeVar

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..core.errors import BadInput
from .bodies import Bodies, index_bodies, subgraph_inputs, walk_graphs
from .weights import WeightStore, inline_bytes

FLOAT = TensorProto.FLOAT
log = logging.getLogger("precdoctor")
K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ViewCache(Generic[K, V]):
    """One fact computed once per view and key, declared (and typed: ``ViewCache[str, Limits]``) by the module that
    computes it. Its values live as long as the view; a read computes what is missing, so no read depends on which
    module asked first."""

    def __init__(self, what: str):
        self.what = what

    def get(self, view: GraphView, key: K, make: Callable[[], V]) -> V:
        values = view._cached.setdefault(self, {})
        if key not in values:
            values[key] = make()
        return values[key]

    def __repr__(self) -> str:
        return f"ViewCache({self.what!r})"


@dataclass
class GraphView:
    """See the module docstring."""

    model: onnx.ModelProto
    nodes: list[onnx.NodeProto] = field(default_factory=list)
    producer: dict[str, onnx.NodeProto] = field(default_factory=dict)
    consumers: dict[str, list[onnx.NodeProto]] = field(default_factory=lambda: defaultdict(list))
    elem_type: dict[str, int] = field(default_factory=dict)
    ranks: dict[str, int] = field(default_factory=dict)
    initializers: dict[str, onnx.TensorProto] = field(default_factory=dict)
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    store: WeightStore | None = field(default=None, repr=False)  # sessions reading it hold it too (backends/ort.py)
    bodies: Bodies = field(default_factory=Bodies, repr=False)  # nodes inside If/Loop/Scan bodies
    decisions: list[str] = field(default_factory=list)  # flat analysis graphs: tensors that decided a branch or trip count
    _cached: dict[ViewCache, dict] = field(default_factory=dict, repr=False)  # each ViewCache's values (ViewCache.get)
    _by_name: dict[str, onnx.NodeProto] = field(default_factory=dict, repr=False)

    @property
    def opset(self) -> int:
        for o in self.model.opset_import:
            if o.domain in ("", "ai.onnx"):
                return o.version
        return 1

    def has_node(self, name: str) -> bool:
        """A node of the graph or of a control-flow body (names are unique across both)."""
        return name in self._by_name or name in self.bodies.nodes

    def node(self, name: str) -> onnx.NodeProto:
        return self._by_name[name] if name in self._by_name else self.bodies.nodes[name]

    def producer_of(self, tensor: str) -> onnx.NodeProto | None:
        """The node making ``tensor``, in the graph or in a body."""
        return self.producer.get(tensor) or self.bodies.producer.get(tensor)

    def readers(self, tensor: str) -> list[onnx.NodeProto]:
        """Nodes reading ``tensor``, in the graph (control-flow nodes whose bodies read it included) or in a body."""
        return list(self.consumers.get(tensor, [])) + list(self.bodies.consumers.get(tensor, []))

    def all_nodes(self) -> list[onnx.NodeProto]:
        """Top-level nodes in topological order, each control-flow node followed by its body nodes."""
        out = []
        for n in self.nodes:
            out.append(n)
            if n.name in self.bodies.parent.values():
                out.extend(self.bodies.nodes[b] for b in self.bodies.inside(n.name))
        return out

    def is_float(self, tensor: str) -> bool:
        return self.elem_type.get(tensor) == FLOAT

    def float_outputs(self, node: onnx.NodeProto) -> list[str]:
        return [o for o in node.output if o and self.is_float(o)]

    def float_tensors(self) -> list[str]:
        """Every float32 tensor a node produces, in topological order."""
        return [t for n in self.nodes for t in self.float_outputs(n)]

    def float_initializers(self) -> list[str]:
        return [n for n, i in self.initializers.items() if i.data_type == FLOAT]

    def array(self, name: str) -> np.ndarray:
        """The value of an initializer, wherever it is kept."""
        if self.store and name in self.store.arrays:
            return self.store.arrays[name]
        return numpy_helper.to_array(self.initializers[name])

    def initializer_with_data(self, name: str) -> onnx.TensorProto:
        """The initializer with its data inline, for models written out as artifacts."""
        if self.store and name in self.store.arrays:
            return numpy_helper.from_array(self.store.arrays[name], name)
        return self.initializers[name]

    def model_with_data(self) -> onnx.ModelProto:
        """A copy of the model with every initializer inline (to hand to other tools)."""
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        for k, init in enumerate(m.graph.initializer):
            m.graph.initializer[k].CopyFrom(self.initializer_with_data(init.name))
        return m


def toposort(graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[onnx.NodeProto] = []
    while pending:
        rest = []
        for node in pending:
            if set(node.input) | subgraph_inputs(node) <= available:
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
    declared = [onnx.TypeProto() for _ in model.graph.output]
    for d, o in zip(declared, model.graph.output):  # infer the outputs' shapes instead of trusting them
        d.CopyFrom(o.type)
        o.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
    except Exception:  # noqa: BLE001 - large or exotic models: fall back to what the file declares
        inferred = model
    _fit_output_shapes(model, declared, inferred)
    for g in walk_graphs(inferred.graph):  # body tensors too: names are unique across the model
        for init in g.initializer:
            types.setdefault(init.name, init.data_type)
            ranks.setdefault(init.name, len(init.dims))
        for vi in list(g.input) + list(g.value_info) + list(g.output):
            tt = vi.type.tensor_type
            if vi.type.HasField("tensor_type") and tt.elem_type:
                types[vi.name] = tt.elem_type
                if tt.HasField("shape"):
                    ranks[vi.name] = len(tt.shape.dim)
    return types, ranks


def _fit_output_shapes(model: onnx.ModelProto, declared: list[onnx.TypeProto], inferred: onnx.ModelProto) -> None:
    """Restore the declared output types, except dimensions the graph provably computes otherwise (a
    wrong declaration makes every derived graph fail strict shape checks): those take the inferred value."""
    found = {o.name: o.type.tensor_type.shape for o in inferred.graph.output if o.type.tensor_type.HasField("shape")}
    for o, d in zip(model.graph.output, declared):
        o.type.CopyFrom(d)
        got = found.get(o.name)
        dims = o.type.tensor_type.shape.dim
        if got is None or not o.type.tensor_type.HasField("shape") or len(got.dim) != len(dims):
            continue
        wrong = [(k, a.dim_value, b.dim_value) for k, (a, b) in enumerate(zip(dims, got.dim))
                 if a.HasField("dim_value") and b.HasField("dim_value") and a.dim_value != b.dim_value]
        for k, _, value in wrong:
            dims[k].dim_value = value
        if wrong:
            log.warning(f"output {o.name} is declared with dimension(s) " + ", ".join(f"{k}={a}" for k, a, _ in wrong)
                        + " but the graph computes " + ", ".join(f"{k}={b}" for k, _, b in wrong) + ": corrected in memory")


def view(model: onnx.ModelProto, copy: bool = True, store: WeightStore | None = None) -> GraphView:
    """The view of a loaded model. Large initializers move to a WeightStore (``store``, when a model derived
    from another view shares its weights); ``copy=False`` lets that change the model given (for a model
    nobody else holds, as ``open_model`` does)."""
    if copy:
        m = onnx.ModelProto()
        m.CopyFrom(model)
        model = m
    if store is None and any(inline_bytes(i) >= WeightStore.MIN_BYTES for i in model.graph.initializer):
        store = WeightStore()
    if store is not None:
        store.externalize(model)
    g = model.graph
    v = GraphView(model=model, store=store)
    v.nodes = toposort(g)
    v.initializers = {i.name: i for i in g.initializer}
    v.inputs = [i.name for i in g.input if i.name not in v.initializers]
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
    v.bodies = index_bodies(v.nodes)
    return v

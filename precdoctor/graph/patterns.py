"""Subgraph patterns that decide numerics: decomposed LayerNorm chains, and tensors that alias another."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.ops import ALIAS
from ..core.records import Record
from .attributes import const_scalar
from .view import GraphView, ViewCache


@dataclass
class LayerNormPattern(Record):
    """ReduceMean -> Sub -> Pow(2)|Mul(x,x) -> ReduceMean -> Add(eps) -> Sqrt -> Div [-> Mul(gamma) -> Add(beta)]:
    the chain opset < 17 exporters write, which TensorRT builds op by op and ORT's LayerNormFusion fuses."""

    nodes: list[str]
    mean: str
    square: str
    variance: str
    square_tensor: str
    input: str
    output: str


_LAYERNORMS: ViewCache[tuple, list[LayerNormPattern]] = ViewCache("decomposed LayerNorms")


def layernorm_patterns(graph: GraphView) -> list[LayerNormPattern]:
    """Every decomposed LayerNorm of the graph (computed once per view)."""
    return _LAYERNORMS.get(graph, (), lambda: _find_layernorm_patterns(graph))


def is_square(graph: GraphView, node) -> bool:
    return (node.op_type == "Pow" and const_scalar(graph, node.input[1]) == 2.0
            or node.op_type == "Mul" and node.input[0] == node.input[1])


def _find_layernorm_patterns(graph: GraphView) -> list[LayerNormPattern]:
    def only(t, op):
        return [c for c in graph.consumers.get(t, []) if c.op_type == op]

    def sole(t, op):  # the one consumer of t, if it is an `op`
        cs = graph.consumers.get(t, [])
        return cs[0] if len(cs) == 1 and cs[0].op_type == op else None

    found = []
    for sq in graph.nodes:
        if not is_square(graph, sq):
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
        for op in ("Mul", "Add"):  # gamma, then beta
            nxt = sole(tail.output[0], op)
            if nxt is None:
                break
            chain.append(nxt)
            tail = nxt
        found.append(LayerNormPattern([n.name for n in chain], mean.name, sq.name, var[0].name, sq.output[0],
                                      sub.input[0], tail.output[0]))
    return found


def aliases(graph: GraphView, tensors: list[str]) -> dict[str, str]:
    """Tensors holding exactly the values of another probed tensor (reshaped or permuted): their
    statistics are that tensor's, so they need no probe of their own. Maps alias -> root."""
    wanted = set(tensors)
    out: dict[str, str] = {}
    for node in graph.nodes:
        if node.op_type not in ALIAS or not node.output or node.output[0] not in wanted:
            continue
        src = node.input[0]
        root = out.get(src, src)
        if root in wanted and root in graph.producer:
            out[node.output[0]] = root
    return out

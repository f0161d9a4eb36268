"""What a rewrite is, and how one is applied to a copy of the graph.

A ``Rewrite`` (the record a run keeps) replaces a matched subgraph by one
that computes the same function in real arithmetic but stays in the range
of FP16/BF16. A ``Candidate`` pairs the record with the edit that makes it.
Edits go through one ``Editor`` per derived graph: nodes dropped, added or
changed, tensors renamed, initializers added; generated names from the
graph's ``Namer`` so they never collide with the model's. Tensors that keep
their FP32 values keep their names (``kept``, compared for equivalence);
tensors that now hold a scaled value get new names (``scaled``).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..core.formats import Format
from ..graph import GraphView, Namer, attrs, const_scalar, derived_model
from ..graph.view import view
from ..core.limits import CONSTANT_DISTORTION
from ..analysis.ranges import TensorRange
from ..core.records import Record

HEADROOM = 4.0  # activations may grow this much past the largest seen on the samples before a rescaled op overflows again
POW2_STEP = 14  # 2^+-14 are normal numbers in FP16 and BF16: a larger power of two is applied as several Muls
FP32_TOLERANCE = 1e-5  # an exact rewrite must match the FP32 model within this max relative error (max |diff| / max |ref|)
FAMILIES = {
    "norm-scale": "decomposed LayerNorm / RMSNorm: scale before squaring",
    "layernorm-fusion": "decomposed LayerNorm fused into LayerNormalization",
    "softmax": "softmax without max subtraction",
    "activation": "Exp-based sigmoid / tanh / softplus",
    "floor": "a floor or epsilon that vanishes in the format",
    "residual-scale": "residual stream rescaled before its normalizations",
}


@dataclass
class ScaledTensor(Record):
    """A tensor whose values the rewrite keeps, scaled: ``holds`` = ``tensor`` * ``factor``."""

    tensor: str
    holds: str
    factor: float


@dataclass
class Rewrite(Record):
    """One rewrite of a matched subgraph (see the module docstring)."""

    id: str  # family:anchor[:parameter], stable across runs (journals key on it)
    family: str
    anchor: str  # the localized culprit it was matched on
    nodes: list[str]  # the matched subgraph (the model's nodes; ``before`` shows them)
    summary: str
    exact: bool  # exact in real arithmetic; False: a constant changed, judged by the acceptance and the task metric
    kept: list[str]  # tensors whose FP32 values it keeps
    scaled: list[ScaledTensor] = field(default_factory=list)
    before: list[str] = field(default_factory=list)  # the matched subgraph, one node a line
    after: list[str] = field(default_factory=list)  # what replaces it
    absorbed: list[str] = field(default_factory=list)  # tensors it makes whose Inf a floor takes by design (log 0 = -inf)
    added: list[str] = field(default_factory=list)  # nodes it adds (names in the rewritten model)
    removed: list[str] = field(default_factory=list)  # nodes of the model it removes
    note: str = ""  # the numerics: headroom, what depends on the engine, the constant changed
    params: dict[str, float] = field(default_factory=dict)


@dataclass
class Candidate:
    record: Rewrite
    apply: Callable[[Editor], None]
    touches: frozenset[str] = frozenset()  # nodes it drops or changes: candidates touching the same node exclude each other
    alternative: Candidate | None = None  # another rewrite of the same culprit, verified and reported beside it

    @property
    def id(self) -> str:
        return self.record.id


@dataclass
class Context:
    """What a matcher needs: the graph, the format, FP32 ranges per tensor on the samples, the localized culprits."""

    graph: GraphView
    fmt: Format
    ranges: dict[str, TensorRange]
    culprits: set[str]
    primitive_norms: bool = False  # the engine builds fused normalizations from low-precision primitives (profile strict)
    constants: str = "cast"  # how the engine converts FP32 constants (constants.py: cast or clamp)
    refused: dict[str, str] = field(default_factory=dict)  # candidate id -> why a family matched but does not offer it

    def holds(self, value: float) -> float:
        """What the low format holds for the constant ``value``, converted as the engine converts constants."""
        from ..numerics.constants import convert

        return float(convert(np.array([value], np.float32), self.fmt, self.constants)[0])

    def held(self, value) -> np.ndarray:
        """Elementwise: does the format hold ``value`` (0 stays 0; anything else nonzero, finite where it is, within
        CONSTANT_DISTORTION) under the engine's conversion?"""
        from ..numerics.constants import convert

        a = np.asarray(value, np.float32)
        got = convert(a.reshape(-1), self.fmt, self.constants).reshape(a.shape)
        with np.errstate(invalid="ignore", divide="ignore"):
            off = np.abs(got.astype(np.float64) - a) <= CONSTANT_DISTORTION * np.abs(a.astype(np.float64))
        return (a == 0) & (got == 0) | ~np.isfinite(a) & (got == a) | np.isfinite(a) & (a != 0) & (got != 0) & np.isfinite(got) & off

    def unheld(self, created: dict[str, np.ndarray], sources: dict[str, np.ndarray | None]) -> list[str]:
        """The constants a rewrite created that the format does not hold where what they replace was held (a rescaled
        epsilon that a Cast makes 0 where the model's own epsilon survived), as lines."""
        out = []
        for name, arr in created.items():
            if arr.dtype.kind != "f":
                continue
            lost = ~self.held(arr)
            src = sources.get(name)
            if src is not None and np.size(src) in (1, arr.size):  # only where the model's own constant was held
                lost &= self.held(src).reshape(-1)[0] if np.size(src) == 1 else self.held(src).reshape(arr.shape)
            if lost.any():
                v = float(arr.reshape(-1)[np.argmax(lost.reshape(-1))])
                out.append(f"{name} = {v:.3g} is {self.holds(v):.3g} in {self.fmt.name} ({self.constants})"
                           + (f" ({int(lost.sum())} of {arr.size} values)" if arr.size > 1 else ""))
        return out

    def max_of(self, tensor: str) -> float | None:
        r = self.ranges.get(tensor)
        return None if r is None else r.absmax


def pow2_exponent(limit: float, value: float) -> int:
    """The largest k with value * 2**k <= limit (value > 0)."""
    return math.floor(math.log2(limit / value))


def node_line(node: onnx.NodeProto, scalar: Callable[[str], float | None]) -> str:
    """One node as a line: ``out = Op(in, 0.5, ..., attr=value)``; scalar constants by value."""
    args = [f"{v:.6g}" if i and (v := scalar(i)) is not None else (i or "-") for i in node.input]
    extra = "".join(f", {k}={v.decode() if isinstance(v, bytes) else v}" for k, v in sorted(attrs(node).items())
                    if isinstance(v, (int, float, bytes, list)))
    return f"{', '.join(node.output)} = {node.op_type}({', '.join(args)}{extra})"


def describe(graph: GraphView, names: list[str]) -> list[str]:
    """The model's nodes ``names`` as lines."""
    return [node_line(graph.node(n), lambda t: const_scalar(graph, t)) for n in names]


class Editor:
    """A rewritten copy of a graph's top level (see the module docstring)."""

    def __init__(self, graph: GraphView):
        self.graph = graph
        self.namer = Namer.for_model(graph.model, mark="")
        self.nodes: dict[str, onnx.NodeProto] = {}
        for n in graph.nodes:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            self.nodes[n.name] = c
        self.inits: list[onnx.TensorProto] = []
        self.added: list[str] = []  # names of nodes added, in order (a rewrite's ``after``)
        self.arrays: dict[str, np.ndarray] = {}  # values of the initializers added
        self.sources: dict[str, np.ndarray | None] = {}  # what each replaces (a rescaled constant's original), if anything

    def node(self, name: str) -> onnx.NodeProto:
        return self.nodes[name]

    def drop(self, *names: str) -> None:
        for n in names:
            self.nodes.pop(n, None)

    def const(self, value, hint: str, dtype=np.float32, source=None) -> str:
        """A new initializer; ``source``: the model's constant it rescales (judged against how that one was held)."""
        name = self.namer(hint)
        arr = np.asarray(value, dtype)
        self.inits.append(numpy_helper.from_array(arr, name))
        self.arrays[name] = arr
        self.sources[name] = None if source is None else np.asarray(source, np.float32)
        return name

    def tensor(self, hint: str) -> str:
        return self.namer(hint)

    def op(self, op_type: str, inputs: list[str], hint: str, output: str | None = None, **attrs) -> str:
        """A new node; its output is ``output`` (a name the caller owns) or a fresh name from ``hint``."""
        name = self.namer(hint)
        out = output or self.namer(f"{hint}_output_0")
        self.nodes[name] = helper.make_node(op_type, inputs, [out], name=name, **attrs)
        self.added.append(name)
        return out

    def pow2(self, x: str, k: int, hint: str, output: str | None = None) -> str:
        """x * 2^k, by Muls whose constants the low format holds exactly (POW2_STEP)."""
        steps = [POW2_STEP if k > 0 else -POW2_STEP] * (abs(k) // POW2_STEP) + ([k % POW2_STEP if k > 0 else -(-k % POW2_STEP)]
                                                                                 if abs(k) % POW2_STEP else [])
        for j, e in enumerate(steps):
            x = self.op("Mul", [x, self.const(2.0 ** e, f"{hint}_2^{e}")], hint, output=output if j == len(steps) - 1 else None)
        return x

    def rename(self, old: str, new: str) -> None:
        """Tensor ``old`` is called ``new`` from now on, wherever it is made or read."""
        for n in self.nodes.values():
            for k, o in enumerate(n.output):
                if o == old:
                    n.output[k] = new
            for k, i in enumerate(n.input):
                if i == old:
                    n.input[k] = new

    def rewire(self, node: str, old: str, new: str) -> None:
        """``node`` reads ``new`` where it read ``old``."""
        n = self.nodes[node]
        for k, i in enumerate(n.input):
            if i == old:
                n.input[k] = new

    def model(self) -> onnx.ModelProto:
        nodes = list(self.nodes.values())
        used = {i for n in nodes for i in n.input}
        inits = [i for i in self.graph.model.graph.initializer if i.name in used] + [i for i in self.inits if i.name in used]
        return derived_model(self.graph.model, nodes, inits, producer="precdoctor-rewrite", sort=True)

    def scalar(self, name: str) -> float | None:
        if name in self.arrays:
            return float(self.arrays[name].reshape(-1)[0]) if self.arrays[name].size == 1 else None
        return const_scalar(self.graph, name)


def created_constants(graph: GraphView, candidate: Candidate) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | None]]:
    """The initializers ``candidate`` adds when applied alone to ``graph``, and what each rescales."""
    ed = Editor(graph)
    candidate.apply(ed)
    return ed.arrays, ed.sources


def apply_all(graph: GraphView, candidates: list[Candidate]) -> GraphView:
    """``graph`` with every candidate applied; each record's ``after`` (what is left of its subgraph and the
    nodes it added, in order) filled in on the way."""
    ed = Editor(graph)
    added: dict[str, list[str]] = {}
    for c in candidates:
        start = len(ed.added)
        c.apply(ed)
        added[c.id] = ed.added[start:]
    model = ed.model()
    pos = {n.name: k for k, n in enumerate(model.graph.node)}
    for c in candidates:
        names = sorted((n for n in set(c.record.nodes) | set(added[c.id]) if n in pos), key=pos.__getitem__)
        c.record.after = [node_line(ed.nodes[n], ed.scalar) for n in names]
        c.record.added, c.record.removed = added[c.id], [n for n in c.record.nodes if n not in pos]
    return view(model, copy=False, store=graph.store)

"""The emulation with the plan as an input: one model for every plan of a search, switched at run time.

emulation.py writes one graph per plan; a search evaluates tens of plans, and
building a model and an ONNX Runtime session for each costs several times the
inference itself on a large model (issue 20). This module writes the graph once
per (model, format, options) with every rounding point switched by a boolean
vector fed with the inputs, so that each evaluation is an inference pass.

What the per-plan graph computes, edge by edge (emulation.py): a low node reads
an FP32 value rounded at its border and rounds what it makes; a pinned node
reads the value as its producer left it. Rounding is idempotent, so for a
tensor ``t`` made raw by node ``n``, with ``r = round(raw)``:

    a low consumer reads ``r`` (n low: the value is r already; n pinned: its border rounds raw),
    a pinned consumer reads ``r`` if n is low, else ``raw``,

so every edge n -> c reads ``low[n] or low[c] ? r : raw``: one Cast pair per
tensor and one select per edge, the condition a scalar computed on the host
from the plan (``Gate``). Initializers read by a low node are converted as the
target converts constants (a copy), graph inputs and body formal inputs are
never low themselves, the outputs of a control-flow node are its bodies' (never
rounded: readers round them), ort-fused chains add "unless the chain is fused",
a pinned TF32 inner product reads the TF32 rounding instead of ``raw``. Nodes
whose low form is another computation (a Constant converted, a fused norm
decomposed by the strict profile, an LSTM/GRU/RNN stepped as a Scan) are
emitted both ways and selected. Gates whose value no plan can change (every node
in them forced FP32 by the schema) are folded away.

The select is an If whose branches pass a value through (exact, and cheaper than
ONNX Runtime's Where, which loses the sign of a selected -0), so every opset is gated.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .constants import convert
from .emulation import IR_INITIALIZERS_APART, EmulationOptions, _Rewriter, _Scope
from ..core.formats import Format, round_tf32
from ..graph import FLOAT, GraphView, derived_model, layernorm_patterns
from ..graph.bodies import body_graphs
from .decompose import decompose
from ..core.ops import FUSED_NORMS, TF32_INPUTS, VALUE_PRESERVING, is_control_flow
from ..planning.plan import Plan
from .recurrent import RECURRENT
from .rounding import tf32_nodes
from .schema import fp32_nodes

PLAN_INPUT = "precdoctor_plan"  # the name hint of the plan vector input


@dataclass(frozen=True)
class Gate:
    """True for a plan when any node of ``any_low`` computes in the low format, unless one of the ``fused``
    chains (ort-fused: decomposed LayerNorms ORT fuses into one FP32 op) has no FP32 node."""

    any_low: frozenset[str]
    fused: tuple[frozenset[str], ...] = ()

    def value(self, fp32: set[str]) -> bool:
        if any(not (chain & fp32) for chain in self.fused):
            return False
        return any(n not in fp32 for n in self.any_low)

    def folded(self, forced: set[str]) -> Gate | None:
        """This gate over the plans of a search (``forced``: nodes FP32 in every plan), or None when always False."""
        live = frozenset(n for n in self.any_low if n not in forced)
        if not live:
            return None
        return Gate(live, tuple(sorted((c for c in self.fused if not (c & forced)), key=sorted)))

    def joined(self, node: str) -> Gate:
        return Gate(self.any_low | {node}, self.fused)


@dataclass
class GatedEmulation:
    """The model, its plan vector's input name, and what each element of the vector stands for."""

    model: onnx.ModelProto
    input: str
    gates: list[Gate]
    graph: GraphView
    fmt: Format

    weights: list[FedWeight] = field(default_factory=list)
    options: EmulationOptions = field(default_factory=EmulationOptions)
    _arrays: dict = field(default_factory=dict, repr=False)  # (initializer, form) -> its array, made on first use

    def vector(self, plan: Plan) -> np.ndarray:
        """The plan as the model reads it."""
        if plan.format.name != self.fmt.name:
            raise ValueError(f"a {plan.format.name} plan fed to the {self.fmt.name} emulation")
        fp32 = fp32_nodes(self.graph, plan)
        return np.array([g.value(fp32) for g in self.gates], dtype=bool)

    def feeds(self, plan: Plan) -> dict[str, np.ndarray]:
        """Everything the plan adds to a sample's feed: its vector, and each selected weight as the plan reads it."""
        fp32 = fp32_nodes(self.graph, plan)
        out = {self.input: np.array([g.value(fp32) for g in self.gates], dtype=bool)}
        for w in self.weights:
            out[w.input] = self._array(w.initializer, "low" if w.gate.value(fp32) else ("tf32" if w.tf32 else "fp32"))
        return out

    def _array(self, name: str, form: str) -> np.ndarray:
        if (name, form) not in self._arrays:
            a = self.graph.array(name)
            if form == "low":
                a = convert(a, self.fmt, self.options.constants)
            elif form == "tf32":
                a = round_tf32(a)
            self._arrays[(name, form)] = np.ascontiguousarray(a, dtype=np.float32)
        return self._arrays[(name, form)]


@dataclass(frozen=True)
class FedWeight:
    """An initializer whose reading differs between plans, fed as an input (zero-copy on the CPU) in the form the
    plan's gate picks: converted as the target converts constants, or as it is (TF32-rounded for a TF32 inner product)."""

    input: str
    initializer: str
    gate: Gate
    tf32: bool


@dataclass
class _Src:
    """A float value as the gated graph holds it: its raw form, its rounded form (made on first use), the gate
    under which the plan's value is the rounded one (None: never), and the scope that makes it."""

    raw: str
    scope: _Scope
    gate: Gate | None = None
    rounded: str | None = None
    low: str | None = None  # what a low reader takes, when it is not ``rounded`` (a converted initializer)
    tf32: str | None = None
    edges: dict = field(default_factory=dict)  # (gate, tf32) -> the selected value's name


class _Gater(_Rewriter):
    """State of one gated rewrite (see gated_model); the per-plan rewriter lends its rounding helpers."""

    def __init__(self, graph: GraphView, fmt: Format, options: EmulationOptions):
        super().__init__(graph, Plan(fmt.name), set(), options, dict(graph.elem_type))
        self.forced = fp32_nodes(graph, Plan(fmt.name))
        self.top = _Scope()
        self.src: dict[str, _Src] = {t: _Src(t, self.top) for t in graph.inputs}
        self.weights: list[FedWeight] = []
        self.gates: dict[Gate, str] = {}
        self.plan_input = self.namer(PLAN_INPUT)
        self.chains: dict[str, tuple[frozenset[str], ...]] = {}  # ort-fused: tensor inside chains -> the chains
        if options.profile == "ort-fused":
            for pat in layernorm_patterns(graph):
                chain = frozenset(pat.nodes)
                for n in pat.nodes:
                    for o in graph.node(n).output:
                        if o != pat.output:
                            self.chains[o] = self.chains.get(o, ()) + (chain,)
        self.needed = set(graph.outputs)  # names that must hold the plan's value under their own name
        for node in graph.all_nodes():
            for _, body in body_graphs(node):
                self.needed.update(o.name for o in body.output)
            if is_control_flow(node):
                self.needed.update(i for i in node.input if i)

    # --- gates and selected values

    def scalar(self, gate: Gate | None) -> str | None:
        """The scalar boolean a gate is in the graph, or None when no plan of the search can make it True."""
        g = gate.folded(self.forced) if gate is not None else None
        if g is None:
            return None
        if g not in self.gates:
            self.gates[g] = self.namer(f"{PLAN_INPUT}/{len(self.gates)}")
        return self.gates[g]

    def source(self, t: str, scope: _Scope) -> _Src:
        if t not in self.src:  # a graph input or initializer, seen first here
            self.src[t] = _Src(t, self.top)
        return self.src[t]

    def rounded(self, s: _Src) -> str:
        if s.low is not None:
            return s.low
        if s.rounded is None:
            s.rounded = self.namer(f"{s.raw}/{self.fmt.name}")
            self._round(s.raw, s.rounded, s.scope)
        return s.rounded

    def low_version(self, t: str, scope: _Scope) -> str:
        """What a low node reads for ``t``."""
        if t in self.graph.initializers:
            return self._init_copy(t, f"{self.fmt.name}.{self.options.constants}",
                                   lambda a: convert(a, self.fmt, self.options.constants))
        return self.rounded(self.source(t, scope))

    def fp32_version(self, t: str, scope: _Scope, tf32: bool) -> str:
        """What a pinned node reads for ``t`` when its producer left it FP32 (TF32-rounded for a TF32 inner product)."""
        s = self.source(t, scope)
        if not tf32:
            return s.raw
        if t in self.graph.initializers:
            return self._init_copy(t, "tf32", round_tf32)
        if s.tf32 is None:
            s.tf32 = self.namer(f"{s.raw}/tf32")
            nodes, inits = tf32_nodes(s.raw, s.tf32, self.graph.opset, self.namer)
            s.scope.nodes.extend(nodes)
            self.inits.extend(inits)
        return s.tf32

    def edge(self, t: str, scope: _Scope, gate: Gate | None, tf32: bool = False) -> str:
        """``t`` as read under ``gate``: its low version where the gate holds, else its FP32 one."""
        s = self.source(t, scope)
        g = self.scalar(gate)
        if g is None:
            return self.fp32_version(t, scope, tf32)
        key = (g, tf32)
        if key not in s.edges and t in self.graph.initializers:  # a weight: fed in the plan's form, no copy in the graph
            name = self.namer(f"{t}/fed")
            self.weights.append(FedWeight(name, t, gate.folded(self.forced), tf32))
            s.edges[key] = name
        if key not in s.edges:
            lo, hi = self.low_version(t, scope), self.fp32_version(t, scope, tf32)
            out = self.namer(f"{s.raw}/gated")
            s.scope.nodes.append(self.select(g, lo, hi, out))
            s.edges[key] = out
        return s.edges[key]

    def select(self, gate: str, low: str, fp32: str, out: str) -> onnx.NodeProto:
        """``out = low if gate else fp32``, bit for bit: an If whose branches pass a value through. ONNX Runtime's
        Where turns a -0 it takes from its second input into +0 (its merge tests values for non-zero), and a
        zero's sign decides 1/x; the If costs less than the Where too (measured: bench/gating_select.py)."""
        def branch(src: str, tag: str) -> onnx.GraphProto:
            name = self.namer(f"{out}/{tag}")
            return helper.make_graph([helper.make_node("Identity", [src], [name], name=self.namer(f"{name}/id"))], name, [],
                                     [helper.make_tensor_value_info(name, FLOAT, None)])

        return helper.make_node("If", [gate], [out], name=self.namer(f"{out}/select"),
                                then_branch=branch(low, "low"), else_branch=branch(fp32, "fp32"))

    def value(self, t: str, scope: _Scope) -> str:
        """``t`` as the plan computes it (what a pinned node, a kept-FP32 input or a control-flow node reads)."""
        return self.edge(t, scope, self.source(t, scope).gate)

    def is_float(self, t: str) -> bool:
        return bool(t) and self.types.get(t) == FLOAT

    # --- nodes

    def rewrite(self, nodes, scope: _Scope) -> None:
        for node in nodes:
            if is_control_flow(node):
                self.gated_control_flow(node, scope)
            elif node.name not in self.forced and (form := self._dual_form(node)) is not None:
                self.dual(node, scope, form)
            else:
                self.single(node, scope)

    def _dual_form(self, node: onnx.NodeProto):
        """How a node computes when low, where that is another computation than its FP32 form, else None."""
        if node.op_type in ("Constant", "ConstantOfShape"):
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == FLOAT:
                    arr = numpy_helper.to_array(a.t)
                    if not np.array_equal(convert(arr, self.fmt, self.options.constants).view(np.uint32), arr.view(np.uint32)):
                        return "constant"
            return None
        if self.options.profile == "strict" and node.op_type in FUSED_NORMS \
                and decompose(node, self.graph.ranks, self.graph.opset, self._probe_namer()) is not None:
            return "decomposed"
        if node.op_type in RECURRENT:  # stepped as a Scan; or one op, whose ORT kernel treats constant weights apart
            return "recurrent"  # (a zero's sign differed when its weights were selected, not constants)
        return None

    def _probe_namer(self):
        from ..graph import Namer

        return Namer(set(self.namer.taken))  # a trial decomposition must not take names

    def single(self, node: onnx.NodeProto, scope: _Scope) -> None:
        """A node whose low form is its FP32 form with rounded inputs: each input selected per edge."""
        keep = self.lim.fp32_inputs.get(node.name, set())
        tf32 = set(TF32_INPUTS.get(node.op_type, ())) if self.options.tf32 else set()
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for k, i in enumerate(node.input):
            if not self.is_float(i):
                continue
            s = self.source(i, scope)
            if k in keep:
                new.input[k] = self.value(i, scope)
            else:
                gate = (s.gate or Gate(frozenset())).joined(node.name)
                if i in self.chains:
                    gate = Gate(gate.any_low, self.chains[i])
                new.input[k] = self.edge(i, scope, gate, k in tf32)
        outs = []
        for k, o in enumerate(node.output):
            if not self.is_float(o):
                continue
            if node.op_type in VALUE_PRESERVING and o not in self.chains:
                gate = None  # a low value-preserving op's output is in the format already: its value is its raw form
            else:
                gate = Gate(frozenset({node.name}), self.chains.get(o, ()))
            outs.append((k, o, gate))
        self._outputs(new, outs, scope)

    def _outputs(self, new: onnx.NodeProto, outs, scope: _Scope, dual=None) -> None:
        """Emit ``new`` with its float outputs under raw names where the plan's value needs its own name."""
        post = []
        for k, o, gate in outs:
            raw = o
            if o in self.needed and self.scalar(gate) is not None:
                raw = self.namer(f"{o}/raw")
                new.output[k] = raw
                post.append(o)
            self.src[o] = _Src(raw, scope, gate)
        scope.nodes.append(new)
        for o in post:
            s = self.src[o]
            scope.nodes.append(self.select(self.scalar(s.gate), self.rounded(s), s.raw, o))
            s.edges[(self.scalar(s.gate), False)] = o

    def dual(self, node: onnx.NodeProto, scope: _Scope, form: str) -> None:
        """A node computed both ways, the plan selecting: the FP32 form reads the plan's values, the low form
        the low versions of its inputs and rounds as the per-plan rewrite does."""
        keep = self.lim.fp32_inputs.get(node.name, set())
        fp = onnx.NodeProto()
        fp.CopyFrom(node)
        lo = onnx.NodeProto()
        lo.CopyFrom(node)
        lo.name = self.namer(f"{node.name}/low")
        low_inputs = set()
        for k, i in enumerate(node.input):
            if self.is_float(i):
                fp.input[k] = self.value(i, scope)
                lo.input[k] = self.value(i, scope) if k in keep else self.low_version(i, scope)
                low_inputs.add(lo.input[k])
        pairs = []
        for k, o in enumerate(node.output):
            if self.is_float(o):
                fp.output[k], lo.output[k] = self.namer(f"{o}/fp32"), self.namer(f"{o}/low")
                self.types[lo.output[k]] = FLOAT
                pairs.append((o, fp.output[k], lo.output[k]))
        low_scope = _Scope()
        low_scope.low.update(low_inputs)
        if form == "decomposed":
            sub_nodes, sub_inits = decompose(node, self.graph.ranks, self.graph.opset, self.namer)
            rename = {i: lo.input[k] for k, i in enumerate(node.input) if i} | {o: lo.output[k] for k, o in enumerate(node.output) if o}
            self.inits.extend(sub_inits)
            self.types.update({o: FLOAT for sn in sub_nodes for o in sn.output})
            self.types.update({i.name: i.data_type for i in sub_inits})
            for sn in sub_nodes:
                for j, i in enumerate(sn.input):
                    sn.input[j] = rename.get(i, i)
                for j, o in enumerate(sn.output):
                    sn.output[j] = rename.get(o, o)
                self.types.update({o: FLOAT for o in sn.output})
                self.primitive(sn, low_scope, set())
        else:
            self.primitive(lo, low_scope, keep)
        scope.nodes.append(fp)
        scope.nodes.extend(low_scope.nodes)
        g = self.scalar(Gate(frozenset({node.name})))
        for o, f, low in pairs:
            if g is None:  # never low in this search
                self.src[o] = _Src(f, scope)
                continue
            raw, rounded = (o if o in self.needed else self.namer(f"{o}/raw")), self.namer(f"{o}/{self.fmt.name}")
            f_rounded = self.namer(f"{f}/{self.fmt.name}")
            self._round(f, f_rounded, scope)
            scope.nodes += [self.select(g, low, f, raw), self.select(g, low, f_rounded, rounded)]
            s = self.src[o] = _Src(raw, scope, Gate(frozenset({node.name})), rounded=rounded)
            s.edges[(g, False)] = raw  # selected already: low -> the low form, pinned -> FP32

    def gated_control_flow(self, node: onnx.NodeProto, scope: _Scope) -> None:
        """Bodies gated like the graph; the node reads the plan's values, its outputs are its bodies' (never rounded)."""
        new = onnx.NodeProto()
        new.CopyFrom(node)
        for k, i in enumerate(node.input):
            if self.is_float(i):
                new.input[k] = self.value(i, scope)
        for (_, body), (_, out) in zip(body_graphs(node), body_graphs(new)):
            inner = _Scope(scope)
            # the body's inputs and its own initializers live in its scope: what rounds or selects them is made there
            # (a merged decoder's weights may be initializers of its If branches, invisible to the outer graph)
            for name in [fi.name for fi in body.input] + [t.name for t in body.initializer]:
                self.src[name] = _Src(name, inner)
            self.rewrite(body.node, inner)
            del out.node[:]
            out.node.extend(inner.nodes)
        for o in node.output:
            if self.is_float(o):
                self.src[o] = _Src(o, scope)
        scope.nodes.append(new)


def gated_model(graph: GraphView, fmt: Format, options: EmulationOptions | None = None) -> GatedEmulation:
    """The emulation of every plan in ``fmt`` as one model reading the plan (see the module docstring)."""
    options = options or EmulationOptions()
    options.check()
    gw = _Gater(graph, fmt, options)
    top = gw.top
    gw.rewrite(graph.nodes, top)
    gates = list(gw.gates)
    heads, inits = [], []
    for k, name in enumerate(gw.gates.values()):
        idx = gw.namer(f"{name}/index")
        inits.append(numpy_helper.from_array(np.array(k, np.int64), idx))
        heads.append(helper.make_node("Gather", [gw.plan_input, idx], [name], name=gw.namer(f"{name}/gather"), axis=0))
    plan_vi = helper.make_tensor_value_info(gw.plan_input, TensorProto.BOOL, [len(gates)])
    fed = [helper.make_tensor_value_info(w.input, FLOAT, list(graph.initializers[w.initializer].dims)) for w in gw.weights]
    model = derived_model(graph.model, heads + top.nodes, list(graph.model.graph.initializer) + gw.inits + inits,
                          inputs=list(graph.model.graph.input) + [plan_vi] + fed, producer="precdoctor-gated-emulation")
    model.ir_version = max(model.ir_version, IR_INITIALIZERS_APART)
    return GatedEmulation(model, gw.plan_input, gates, graph, fmt, gw.weights, options)


"""Control flow made flat for analysis: If inlined for the branch FP32 takes, Loop and Scan unrolled.

Comparing and scanning look at tensors one by one, in topological order, and
name the first node where Inf/NaN is born or the error jumps. Inside a body
that order runs over iterations: the 40th step's state overflows while the
first 39 did not. So each sample is analysed on a flat graph in which every
If is replaced by the nodes of the branch its FP32 run takes, and every Loop
and Scan by one copy of its body per iteration the FP32 run makes, wired
state to state; nested bodies are flattened level by level (one FP32 run per
level tells the branches and trip counts of the next). Each copy of a body
node maps back to that node (``node_base``; its tensors by ``tensor_base``):
statistics of its instances add up, as statistics of samples do, and an
origin found among instances is reported as the body node. Helper nodes only
move values (branch outputs, per-step slices, stacking) and compute in FP32,
as the control-flow node's boundary does in the emulation and in the mixed
ONNX; with that, the emulation of a flat graph computes bit for bit what the
emulation of the model's bodies computes (the tests check it).

Samples whose runs take the same branches and trip counts share one flat
graph. A body whose unrolled copies would take the flat graph past
``FLAT_NODE_LIMIT`` nodes stays a control-flow node: still emulated (rounded
inside) but not compared tensor by tensor, and ``Coverage`` says so.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, numpy_helper

from .backends import ort
from .graph import GraphView, Namer, derived_model, view
from .graph.view import toposort
from .graph.bodies import body_graphs
from .graph.emit import Emitter
from .limits import FLAT_NODE_LIMIT
from .ops import is_control_flow
from .records import Record


@dataclass
class Coverage(Record):
    """How one control-flow node of the model was analysed."""

    node: str
    op: str
    analysed: bool  # its body tensors compared (scanned) one by one
    detail: str


@dataclass
class Flat:
    """One flat graph and the samples whose FP32 runs it stands for (see the module docstring)."""

    view: GraphView
    samples: list[int]
    node_base: dict[str, str]  # flat node -> model node (the control-flow node, for helpers)
    tensor_base: dict[str, str]  # flat tensor -> the model tensor it is an instance of
    helpers: set[str]  # flat nodes that only move values
    private: set[str]  # values of helpers that stand for no model tensor (slices, stacking parts)
    decisions: list[str]  # flat tensors that decide a branch or a trip count
    done: dict[str, str] = field(default_factory=dict)  # model control-flow node -> how it was flattened
    kept: dict[str, str] = field(default_factory=dict)  # model control-flow node -> why it stayed as it is

    def base_node(self, name: str) -> str:
        return self.node_base.get(name, name)

    def base_tensor(self, name: str) -> str | None:
        """The model tensor a flat tensor stands for; None for a helper's private value."""
        return None if name in self.private else self.tensor_base.get(name, name)


def _body_size(g: onnx.GraphProto) -> int:
    return sum(1 + sum(_body_size(b) for _, b in body_graphs(n)) for n in g.node)


def _attr(node: onnx.NodeProto, name: str, default=None):
    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), default)


class _Flattening:
    """One flat graph under construction (see the module docstring)."""

    def __init__(self, graph: GraphView):
        self.graph = graph
        self.nodes: list[onnx.NodeProto] = list(graph.model.graph.node)
        self.inits: list[onnx.TensorProto] = []
        self.namer = Namer.for_model(graph.model)
        self.node_base: dict[str, str] = {}
        self.tensor_base: dict[str, str] = {}
        self.helpers: set[str] = set()
        self.private: set[str] = set()
        self.decisions: list[str] = []
        self.done: dict[str, list[str]] = defaultdict(list)
        self.kept: dict[str, str] = {}

    def fork(self) -> "_Flattening":
        c = _Flattening.__new__(_Flattening)
        for k, v in self.__dict__.items():
            setattr(c, k, copy.copy(v) if isinstance(v, (list, dict, set)) else v)
        c.done = defaultdict(list, {k: list(v) for k, v in self.done.items()})
        c.namer = Namer(set(self.namer.taken), self.namer.mark)
        return c

    def base_node(self, name: str) -> str:
        return self.node_base.get(name, name)

    def model(self, nodes=None, extra_inits=(), outputs=None) -> onnx.ModelProto:
        """The flat model (or these nodes over its initializers), nodes in topological order."""
        m = derived_model(self.graph.model, nodes or self.nodes, list(self.graph.model.graph.initializer) + self.inits
                          + list(extra_inits), outputs=outputs, producer="precdoctor-flat")
        ordered = toposort(m.graph)
        del m.graph.node[:]
        m.graph.node.extend(ordered)
        return m

    def pending(self) -> list[onnx.NodeProto]:
        return [n for n in self.nodes if is_control_flow(n) and self.base_node(n.name) not in self.kept]

    # ------------------------------------------------------------------ copies of a body

    def instantiate(self, body: onnx.GraphProto, rename: dict[str, str]) -> tuple[list[onnx.NodeProto], dict[str, str]]:
        """Copies of a body's nodes, every name the body defines made fresh (nested bodies included);
        ``rename`` maps formal inputs (and outer names that moved) to the values they take."""
        rename = dict(rename)
        for init in body.initializer:
            t = onnx.TensorProto()
            t.CopyFrom(init)
            t.name = rename[init.name] = self.namer(init.name)
            self.inits.append(t)
        out = []
        for node in body.node:
            c = onnx.NodeProto()
            c.CopyFrom(node)
            c.name = self.namer(node.name)
            self.node_base[c.name] = self.base_node(node.name)
            for k, i in enumerate(node.input):
                c.input[k] = rename.get(i, i)
            for (_, src), (_, dst) in zip(body_graphs(node), body_graphs(c)):
                self._copy_body(src, dst, rename)
            for k, o in enumerate(node.output):
                if o:
                    c.output[k] = rename[o] = self.namer(o)
                    self.tensor_base[c.output[k]] = self.tensor_base.get(o, o)
            out.append(c)
        return out, rename

    def _copy_body(self, src: onnx.GraphProto, dst: onnx.GraphProto, outer: dict[str, str]) -> None:
        """A nested body inside a copied node: its names made fresh, its references to the outer scope renamed."""
        local = dict(outer)
        for k, i in enumerate(src.input):
            dst.input[k].name = local[i.name] = self.namer(i.name)
            self.tensor_base[dst.input[k].name] = self.tensor_base.get(i.name, i.name)
        nodes, local = self.instantiate(src, local)
        del dst.node[:]
        dst.node.extend(nodes)
        del dst.initializer[:]
        for k, o in enumerate(src.output):
            dst.output[k].name = local.get(o.name, o.name)

    # ------------------------------------------------------------------ one control-flow node made flat

    def expand(self, node: onnx.NodeProto, decision) -> list[onnx.NodeProto]:
        e = Emitter(self.namer, self.graph.opset, self.base_node(node.name) + "/flat")
        if node.op_type == "If":
            nodes = self._if(node, bool(decision), e)
        elif node.op_type == "Scan":
            nodes = self._loop(node, int(decision), e, scan=True)
        else:
            nodes = self._loop(node, int(decision), e, scan=False)
        cf_outputs = set(node.output)
        for n in e.nodes:
            self.helpers.add(n.name)
            self.node_base[n.name] = self.base_node(node.name)
            self.private.update(o for o in n.output if o not in cf_outputs)
        self.inits.extend(e.inits)
        return nodes + e.nodes

    def _if(self, node: onnx.NodeProto, cond: bool, e: Emitter) -> list[onnx.NodeProto]:
        body = _attr(node, "then_branch" if cond else "else_branch")
        nodes, rename = self.instantiate(body, {})
        for k, o in enumerate(node.output):
            if o:
                e.op("Identity", [rename.get(body.output[k].name, body.output[k].name)], f"out{k}", [o])
        self.decisions.append(node.input[0])
        self.done[self.base_node(node.name)].append(f"{'then' if cond else 'else'} branch")
        return nodes

    def _loop(self, node: onnx.NodeProto, steps: int, e: Emitter, scan: bool) -> list[onnx.NodeProto]:
        """Scan over ``steps`` slices, or ``steps`` iterations of a Loop, state wired from copy to copy."""
        body = _attr(node, "body")
        if scan:
            m = int(_attr(node, "num_scan_inputs"))
            n_state = len(node.input) - m
            state = list(node.input[:n_state])
            axes_in = list(_attr(node, "scan_input_axes", [0] * m))
            dirs_in = list(_attr(node, "scan_input_directions", [0] * m))
        else:
            n_state = len(node.input) - 2
            state = list(node.input[2:])
            cond = node.input[1] or e.const(True, np.bool_, "cond_true")
        n_out = len(body.output) - n_state - (0 if scan else 1)
        stacked: list[list[str]] = [[] for _ in range(n_out)]
        nodes: list[onnx.NodeProto] = []
        for t in range(steps):
            if scan:
                rename = {bi.name: s for bi, s in zip(body.input[:n_state], state)}
                for j, bi in enumerate(body.input[n_state:]):
                    at = t if not dirs_in[j] else steps - 1 - t
                    rename[bi.name] = e.gather(node.input[n_state + j], at, int(axes_in[j]), f"in{j}_t{t}")
                outs = body.output
            else:
                rename = {body.input[0].name: e.const(t, np.int64, f"iter{t}"), body.input[1].name: cond}
                rename.update({bi.name: s for bi, s in zip(body.input[2:], state)})
                outs = body.output[1:]
            copy, rename = self.instantiate(body, rename)
            nodes += copy
            if not scan:
                cond = rename.get(body.output[0].name, body.output[0].name)
                if cond in {o for c in copy for o in c.output}:
                    self.decisions.append(cond)
            vals = [rename.get(o.name, o.name) for o in outs]
            state = vals[:n_state]
            for k, v in enumerate(vals[n_state:]):
                stacked[k].append(v)
        for k, s in enumerate(state):
            e.op("Identity", [s], f"state{k}", [node.output[k]])
        out_axes = list(_attr(node, "scan_output_axes", [0] * n_out)) if scan else [0] * n_out
        out_dirs = list(_attr(node, "scan_output_directions", [0] * n_out)) if scan else [0] * n_out
        for k, parts in enumerate(stacked):
            if not node.output[n_state + k]:
                continue
            parts = parts[::-1] if out_dirs[k] else parts
            ax = int(out_axes[k])
            ups = [e.unsqueeze(p, [ax], f"out{k}_t{t}") for t, p in enumerate(parts)]
            e.op("Concat", ups, f"out{k}", [node.output[n_state + k]], axis=ax)
        self.done[self.base_node(node.name)].append(f"{steps} {'steps' if scan else 'iterations'}")
        return nodes


# ---------------------------------------------------------------------- the FP32 runs that decide


def _instrumented(fl: _Flattening, pending: list[onnx.NodeProto]) -> tuple[onnx.ModelProto, list[str]]:
    """The current flat model, outputting what decides each pending node: If's condition, the shape of
    Scan's first scan input, and a Loop's iteration counter stacked as an extra scan output."""
    e = Emitter(fl.namer, fl.graph.opset, "decide")
    nodes, outs, types = [], [], []
    for n in fl.nodes:
        if n not in pending:
            nodes.append(n)
            continue
        if n.op_type == "If":
            nodes.append(n)
            outs.append(e.op("Identity", [n.input[0]], "cond"))
            types.append(onnx.TensorProto.BOOL)
        elif n.op_type == "Scan":
            nodes.append(n)
            m = int(_attr(n, "num_scan_inputs"))
            outs.append(e.op("Shape", [n.input[len(n.input) - m]], "scan_shape"))
            types.append(onnx.TensorProto.INT64)
        else:
            c = onnx.NodeProto()
            c.CopyFrom(n)
            body = next(g for _, g in body_graphs(c))
            count = fl.namer("decide/iteration")
            body.node.append(helper.make_node("Identity", [body.input[0].name], [count], name=count))
            body.output.append(helper.make_tensor_value_info(count, onnx.TensorProto.INT64, []))
            outs.append(fl.namer("decide/iterations"))
            types.append(onnx.TensorProto.INT64)
            c.output.append(outs[-1])
            nodes.append(c)
    model = fl.model(nodes + e.nodes, e.inits, [helper.make_tensor_value_info(o, t, None) for o, t in zip(outs, types)])
    return model, outs


def _decisions(fl: _Flattening, pending: list[onnx.NodeProto], feeds: list[dict]) -> list[tuple]:
    model, outs = _instrumented(fl, pending)
    sess = ort.session(model, graph_opt="none", weights_dir=fl.graph.weights_dir)
    found = []
    for feed in feeds:
        res = ort.run(sess, feed, outs)
        row = []
        for n, o in zip(pending, outs):
            v = res[o]
            if n.op_type == "If":
                row.append(bool(np.asarray(v).reshape(-1)[0]))
            elif n.op_type == "Scan":
                axis = int(list(_attr(n, "scan_input_axes", [0]))[0])
                row.append(int(v[axis]))
            else:
                row.append(int(np.asarray(v).shape[0]))
        found.append(tuple(row))
    return found


def _level(fl: _Flattening, pending: list[onnx.NodeProto], decision: tuple) -> _Flattening:
    new = fl.fork()
    todo = dict(zip((n.name for n in pending), decision))
    nodes: list[onnx.NodeProto] = []
    size = len(fl.nodes)
    for n in fl.nodes:
        if n.name not in todo:
            nodes.append(n)
            continue
        d = todo[n.name]
        copies = 1 if n.op_type == "If" else d
        body = _attr(n, "then_branch" if d is True else ("else_branch" if n.op_type == "If" else "body"))
        grow = _body_size(body) * copies
        base = new.base_node(n.name)
        if n.op_type != "If" and d == 0:
            new.kept[base] = "it runs 0 iterations on this input"
        elif size + grow > FLAT_NODE_LIMIT:
            new.kept[base] = (f"{copies} x {_body_size(body)} body nodes would pass the limit of {FLAT_NODE_LIMIT} nodes "
                              "of a flat graph")
        if base in new.kept:
            nodes.append(n)
            continue
        size += grow
        nodes += new.expand(n, d)
    new.nodes = nodes
    return new


def flatten(graph: GraphView, feeds: list[dict]) -> list[Flat]:
    """Flat graphs for the samples (see the module docstring), each with the sample indices it serves."""
    groups = [(_Flattening(graph), list(range(len(feeds))))]
    finished = []
    while groups:
        fl, members = groups.pop(0)
        pending = fl.pending()
        if not pending:
            finished.append((fl, members))
            continue
        by: dict[tuple, list[int]] = defaultdict(list)
        for i, d in zip(members, _decisions(fl, pending, [feeds[i] for i in members])):
            by[d].append(i)
        groups += [(_level(fl, pending, d), idx) for d, idx in by.items()]
    return [_finish(graph, fl, members) for fl, members in sorted(finished, key=lambda f: f[1][0])]


def _finish(graph: GraphView, fl: _Flattening, members: list[int]) -> Flat:
    v = view(fl.model(), copy=False, store=graph.store)
    v.decisions = list(dict.fromkeys(fl.decisions))
    done = {k: ", ".join(sorted(set(d))) for k, d in fl.done.items()}
    return Flat(v, members, fl.node_base, fl.tensor_base, fl.helpers, fl.private, fl.decisions, done, dict(fl.kept))

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

import hashlib
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper

from ..backends import ort
from ..core.errors import BadInput
from ..graph import GraphView, ViewCache, attr, view
from ..graph.bodies import body_graphs
from ..graph.emit import Emitter
from ..graph.unroll import FlatBuilder, body_size
from ..core.limits import FLAT_NODE_LIMIT
from ..core.records import Record


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
    done: dict[str, str] = field(default_factory=dict)  # model control-flow node -> how it was flattened
    kept: dict[str, str] = field(default_factory=dict)  # model control-flow node -> why it stayed as it is

    def base_node(self, name: str) -> str:
        return self.node_base.get(name, name)

    def base_tensor(self, name: str) -> str | None:
        """The model tensor a flat tensor stands for; None for a helper's private value."""
        return None if name in self.private else self.tensor_base.get(name, name)


# ---------------------------------------------------------------------- the FP32 runs that decide


def _instrumented(fl: FlatBuilder, pending: list[onnx.NodeProto]) -> tuple[onnx.ModelProto, list[str]]:
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
            m = int(attr(n, "num_scan_inputs"))
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


def _decisions(fl: FlatBuilder, pending: list[onnx.NodeProto], feeds: list[dict]) -> list[tuple]:
    model, outs = _instrumented(fl, pending)
    sess = ort.session(model, graph_opt="none", weights=fl.graph.store)
    found = []
    for feed in feeds:
        res = ort.run(sess, feed, outs)
        row = []
        for n, o in zip(pending, outs):
            v = res[o]
            if n.op_type == "If":
                row.append(bool(np.asarray(v).reshape(-1)[0]))
            elif n.op_type == "Scan":
                axis = int(list(attr(n, "scan_input_axes", [0]))[0])
                row.append(int(v[axis]))
            else:
                row.append(int(np.asarray(v).shape[0]))
        found.append(tuple(row))
    return found


def _level(fl: FlatBuilder, pending: list[onnx.NodeProto], decision: tuple) -> FlatBuilder:
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
        body = attr(n, "then_branch" if d is True else ("else_branch" if n.op_type == "If" else "body"))
        grow = body_size(body) * copies
        base = new.base_node(n.name)
        if n.op_type != "If" and d == 0:
            new.kept[base] = "it runs 0 iterations on this input"
        elif size + grow > FLAT_NODE_LIMIT:
            new.kept[base] = (f"{copies} x {body_size(body)} body nodes would pass the limit of {FLAT_NODE_LIMIT} nodes "
                              "of a flat graph")
        if base in new.kept:
            nodes.append(n)
            continue
        size += grow
        nodes += new.expand(n, d)
    new.nodes = nodes
    return new


_FLATS: ViewCache[str, list[Flat]] = ViewCache("flat graphs per set of samples")


def flatten(graph: GraphView, feeds: list[dict]) -> list[Flat]:
    """Flat graphs for the samples (see the module docstring), each with the sample indices it serves.

    They depend on the graph and the samples only (FP32 decides every branch and trip count), so they are made
    once per view and sample arrays: every plan a search compares, and the range scan, use the same flat graphs
    (and their views' own caches). Keyed by the samples' contents (names, types, shapes, bytes)."""
    return _FLATS.get(graph, _feeds_digest(feeds), lambda: _flatten(graph, feeds))


def _feeds_digest(feeds: list[dict]) -> str:
    h = hashlib.sha256()
    for f in feeds:
        for k in sorted(f):
            a = np.ascontiguousarray(f[k])
            h.update(f"{len(f)}|{k}|{a.dtype.str}|{a.shape}|".encode())
            h.update(a.tobytes())
    return h.hexdigest()


def _flatten(graph: GraphView, feeds: list[dict]) -> list[Flat]:
    groups = [(FlatBuilder(graph), list(range(len(feeds))))]
    finished = []
    while groups:
        fl, members = groups.pop(0)
        pending = fl.pending()
        if not pending:
            finished.append((fl, members))
            continue
        try:
            decided = _decisions(fl, pending, [feeds[i] for i in members])
        except BadInput as exc:  # the instrumented FP32 run failed: these nodes stay whole, and say why
            fl.kept.update({fl.base_node(n.name): f"the FP32 run that tells its branch or trip count failed ({exc})" for n in pending})
            groups.append((fl, members))
            continue
        by: dict[tuple, list[int]] = defaultdict(list)
        for i, d in zip(members, decided):
            by[d].append(i)
        groups += [(_level(fl, pending, d), idx) for d, idx in by.items()]
    return [_finish(graph, fl, members) for fl, members in sorted(finished, key=lambda f: f[1][0])]


def _finish(graph: GraphView, fl: FlatBuilder, members: list[int]) -> Flat:
    v = view(fl.model(), copy=False, store=graph.store)
    v.decisions = list(dict.fromkeys(fl.decisions))
    done = {k: ", ".join(sorted(set(d))) for k, d in fl.done.items()}
    return Flat(v, members, fl.node_base, fl.tensor_base, fl.helpers, fl.private, done, dict(fl.kept))

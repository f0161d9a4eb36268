"""The flat graph of a model with control flow, built one control-flow node at a time (see flatten.py).

``FlatBuilder`` replaces an If by copies of the nodes of one branch, and a Loop
or Scan by one copy of its body per iteration, state wired from copy to copy;
every name a copy defines is fresh (nested bodies included), and each copy
remembers the model node and tensor it stands for. Helper nodes (branch
outputs, per-step slices, stacking) only move values and are listed apart.
"""
from __future__ import annotations

import copy
from collections import defaultdict

import numpy as np
import onnx

from ..core.ops import is_control_flow
from .assemble import derived_model
from .attributes import attr
from .bodies import body_graphs
from .emit import Emitter
from .naming import Namer
from .view import GraphView


def body_size(g: onnx.GraphProto) -> int:
    return sum(1 + sum(body_size(b) for _, b in body_graphs(n)) for n in g.node)


class FlatBuilder:
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

    def fork(self) -> "FlatBuilder":
        c = FlatBuilder.__new__(FlatBuilder)
        for k, v in self.__dict__.items():
            setattr(c, k, copy.copy(v) if isinstance(v, (list, dict, set)) else v)
        c.done = defaultdict(list, {k: list(v) for k, v in self.done.items()})
        c.namer = Namer(set(self.namer.taken), self.namer.mark)
        return c

    def base_node(self, name: str) -> str:
        return self.node_base.get(name, name)

    def model(self, nodes=None, extra_inits=(), outputs=None) -> onnx.ModelProto:
        """The flat model (or these nodes over its initializers), nodes in topological order."""
        return derived_model(self.graph.model, nodes or self.nodes, list(self.graph.model.graph.initializer) + self.inits
                             + list(extra_inits), outputs=outputs, producer="precdoctor-flat", sort=True)

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
        body = attr(node, "then_branch" if cond else "else_branch")
        nodes, rename = self.instantiate(body, {})
        for k, o in enumerate(node.output):
            if o:
                e.op("Identity", [rename.get(body.output[k].name, body.output[k].name)], f"out{k}", [o])
        self.decisions.append(node.input[0])
        self.done[self.base_node(node.name)].append(f"{'then' if cond else 'else'} branch")
        return nodes

    def _loop(self, node: onnx.NodeProto, steps: int, e: Emitter, scan: bool) -> list[onnx.NodeProto]:
        """Scan over ``steps`` slices, or ``steps`` iterations of a Loop, state wired from copy to copy."""
        body = attr(node, "body")
        if scan:
            m = int(attr(node, "num_scan_inputs"))
            n_state = len(node.input) - m
            state = list(node.input[:n_state])
            axes_in = list(attr(node, "scan_input_axes", [0] * m))
            dirs_in = list(attr(node, "scan_input_directions", [0] * m))
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
        out_axes = list(attr(node, "scan_output_axes", [0] * n_out)) if scan else [0] * n_out
        out_dirs = list(attr(node, "scan_output_directions", [0] * n_out)) if scan else [0] * n_out
        for k, parts in enumerate(stacked):
            if not node.output[n_state + k]:
                continue
            parts = parts[::-1] if out_dirs[k] else parts
            ax = int(out_axes[k])
            ups = [e.unsqueeze(p, [ax], f"out{k}_t{t}") for t, p in enumerate(parts)]
            e.op("Concat", ups, f"out{k}", [node.output[n_state + k]], axis=ax)
        self.done[self.base_node(node.name)].append(f"{steps} {'steps' if scan else 'iterations'}")
        return nodes

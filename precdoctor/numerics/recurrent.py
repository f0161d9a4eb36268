"""LSTM, GRU and RNN emulated step by step, at the precision a low-precision engine computes them.

Rounding only an RNN op's outputs assumes the engine runs the whole recurrence
in FP32, which none does: TensorRT's ONNX parser unrolls LSTM/GRU/RNN into a
loop of MatMul, ElementWise and Activation layers whose outputs, the carried
state included, are FP16 in an FP16 build; ONNX Runtime CUDA calls cuDNN with
FP16 data and math precision, so the state is FP16 between steps. On a GPU,
real FP16 GRU error was 10-200x what output rounding predicts. Each op is
therefore rewritten here as a Scan over time per direction whose body rounds
as the engine does (FIELD research, section 4):

- ``steps`` (default): every step op rounded: X W^T, H R^T, their sum, the
  bias add, each gate's activation, each product and sum of the state update,
  the new state. TensorRT's unrolled loop in FP16.
- ``cudnn``: the two GEMM outputs and the new state rounded each step, the gate
  arithmetic between them in FP32 (a fused elementwise kernel).
- ``op``: the op in FP32, its outputs rounded (the optimistic bound; also the
  fallback where a form is not expanded: sequence_lens, opset < 9).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from ..core.formats import Format
from ..graph import Namer, attrs
from ..graph.emit import Emitter
from .rounding import round_nodes

RECURRENT = frozenset({"LSTM", "GRU", "RNN"})
MODES = ("steps", "cudnn", "op")
GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}
DEFAULT_ACTS = {"LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"], "RNN": ["Tanh"]}
_PLAIN_ACTS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softsign": "Softsign", "softplus": "Softplus"}
_ALPHA_ACTS = {"leakyrelu": ("LeakyRelu", 0.01), "thresholdedrelu": ("ThresholdedRelu", 1.0), "elu": ("Elu", 1.0)}


class NotExpanded(Exception):
    """This RNN node is emulated at its outputs only; the message says why."""


@dataclass
class _Step:
    """What one direction's step needs: the emitter of its body, and the precision choices."""

    e: Emitter
    fmt: Format
    mode: str
    acts: list
    clip: float | None

    def rnd(self, x: str, every_op: bool = True) -> str:
        """Round ``x`` where the mode rounds it: ``every_op`` values in ``steps`` mode only, the rest in both."""
        if self.mode == "op" or (every_op and self.mode != "steps"):
            return x
        dst = self.e.name("r")
        nodes, inits = round_nodes(x, dst, self.fmt, self.e.opset, self.e.namer)
        self.e.nodes.extend(nodes)
        self.e.inits.extend(inits)
        return dst

    def op(self, op: str, ins: list[str], hint: str, every_op: bool = True, **kw) -> str:
        return self.rnd(self.e.op(op, ins, hint, **kw), every_op)

    def act(self, k: int, x: str, hint: str, clip: bool = True) -> str:
        """Activation slot ``k`` of ``x``; ``clip`` bounds its input first (the gates' pre-activations: ONNX
        Runtime does not clip the cell state before the output activation)."""
        if self.clip is not None and clip:
            x = self.op("Clip", [x, self.e.const(-self.clip, np.float32, "clip_lo"), self.e.const(self.clip, np.float32, "clip_hi")], hint + "_clip")
        name, alpha, beta = self.acts[k]
        if name == "affine":
            return self.op("Add", [self.e.op("Mul", [x, self.e.const(alpha, np.float32, "alpha")], hint + "_a"),
                                   self.e.const(beta, np.float32, "beta")], hint)
        if name == "scaledtanh":
            inner = self.e.op("Tanh", [self.e.op("Mul", [x, self.e.const(beta, np.float32, "beta")], hint + "_b")], hint + "_t")
            return self.op("Mul", [inner, self.e.const(alpha, np.float32, "alpha")], hint)
        if name == "hardsigmoid":
            return self.op("HardSigmoid", [x], hint, alpha=alpha, beta=beta)
        if name in _ALPHA_ACTS:
            return self.op(_ALPHA_ACTS[name][0], [x], hint, alpha=alpha)
        return self.op(_PLAIN_ACTS[name], [x], hint)


def _activations(node: onnx.NodeProto, a: dict, dirs: int) -> list[list]:
    """Per direction, (name, alpha, beta) for each activation slot."""
    names = [s.decode() if isinstance(s, bytes) else s for s in a.get("activations", [])] or DEFAULT_ACTS[node.op_type] * dirs
    alphas, betas = list(a.get("activation_alpha", [])), list(a.get("activation_beta", []))
    out = []
    for n in names:
        low = n.lower()
        if low not in _PLAIN_ACTS and low not in _ALPHA_ACTS and low not in ("affine", "scaledtanh", "hardsigmoid"):
            raise NotExpanded(f"activation {n} is not expanded")
        takes_alpha = low in _ALPHA_ACTS or low in ("affine", "scaledtanh", "hardsigmoid")
        takes_beta = low in ("affine", "scaledtanh", "hardsigmoid")
        default_alpha = _ALPHA_ACTS.get(low, (None, {"hardsigmoid": 0.2}.get(low, 1.0)))[1]
        alpha = alphas.pop(0) if takes_alpha and alphas else default_alpha
        beta = betas.pop(0) if takes_beta and betas else {"hardsigmoid": 0.5}.get(low, 0.0)
        out.append((low, alpha, beta))
    per = len(out) // dirs
    return [out[d * per:(d + 1) * per] for d in range(dirs)]


def _check(node: onnx.NodeProto, a: dict, opset: int) -> None:
    if opset < 9:
        raise NotExpanded("step-by-step emulation needs opset >= 9 (Scan)")
    if len(node.input) > 4 and node.input[4]:
        raise NotExpanded("sequence_lens is not expanded")
    if node.op_type == "LSTM" and a.get("input_forget", 0):
        raise NotExpanded("input_forget=1 is not expanded")


def expand(node: onnx.NodeProto, fmt: Format, mode: str, opset: int, namer: Namer) -> tuple[list, list]:
    """Nodes and constants computing ``node``'s outputs step by step in ``mode`` (its float inputs already
    rounded by the caller where the plan rounds them); raises NotExpanded with the reason otherwise."""
    a = attrs(node)
    _check(node, a, opset)
    direction = a.get("direction", b"forward")
    direction = direction.decode() if isinstance(direction, bytes) else direction
    dirs = 2 if direction == "bidirectional" else 1
    hidden = int(a["hidden_size"])
    acts = _activations(node, a, dirs)
    e = Emitter(namer, opset, node.name)
    x = node.input[0]
    batch_first = int(a.get("layout", 0)) == 1
    if batch_first:
        x = e.op("Transpose", [x], "x_seq_first", perm=[1, 0, 2])
    inp = lambda k: node.input[k] if len(node.input) > k and node.input[k] else None  # noqa: E731
    h0_all, c0_all = inp(5), inp(6) if node.op_type == "LSTM" else None
    if batch_first:
        h0_all = e.op("Transpose", [h0_all], "h0_dirs_first", perm=[1, 0, 2]) if h0_all else None
        c0_all = e.op("Transpose", [c0_all], "c0_dirs_first", perm=[1, 0, 2]) if c0_all else None
    zeros = None if h0_all and (c0_all or node.op_type != "LSTM") else _zero_state(e, x, hidden)
    results = []
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        init = [e.gather(s, d, 0, f"state0_{k}_d{d}") if s else zeros for k, s in enumerate([h0_all, c0_all][: 2 if node.op_type == "LSTM" else 1])]
        st = _Step(Emitter(namer, opset, f"{node.name}/d{d}"), fmt, mode, acts[d], a.get("clip"))
        st.e.inits = e.inits  # constants go with the outer ones: the body reads them from the outer scope
        results.append(_direction(node, d, reverse, x, init, hidden, e, st, inp))
    _outputs(node, results, dirs, batch_first, e)
    return e.nodes, e.inits


def _zero_state(e: Emitter, x: str, hidden: int) -> str:
    """A [batch, hidden] zero state, batch read off X."""
    batch = e.slice(e.op("Shape", [x], "x_shape"), 1, 2, 0, "batch")
    shape = e.op("Concat", [batch, e.const([hidden], np.int64, "hidden")], "state_shape", axis=0)
    return e.op("ConstantOfShape", [shape], "zero_state", value=helper.make_tensor("zero", onnx.TensorProto.FLOAT, [1], [0.0]))


def _direction(node, d, reverse, x, init, hidden, e: Emitter, st: _Step, inp):
    """One direction: X W^T for every step outside the loop (one GEMM, rounded), then a Scan over its rows."""
    gates = GATES[node.op_type]
    w_t = e.op("Transpose", [e.gather(node.input[1], d, 0, f"W_d{d}")], f"W_d{d}_T", perm=[1, 0])
    r_t = e.op("Transpose", [e.gather(node.input[2], d, 0, f"R_d{d}")], f"R_d{d}_T", perm=[1, 0])
    xw = _Step(e, st.fmt, st.mode, st.acts, None).rnd(e.op("MatMul", [x, w_t], f"XW_d{d}"), every_op=False)
    bias = None
    if inp(3):
        b = e.gather(node.input[3], d, 0, f"B_d{d}")
        wb, rb = e.split(b, [gates * hidden, gates * hidden], 0, f"B_d{d}_split")
        bias = (wb, rb)
    peep = e.gather(inp(7), d, 0, f"P_d{d}") if node.op_type == "LSTM" and inp(7) else None
    body = _body(node, st, hidden, r_t, bias, peep, len(init))
    outs = [e.name(f"{'hc'[k]}_last_d{d}") for k in range(len(init))] + [e.name(f"Y_d{d}")]
    e.nodes.append(helper.make_node("Scan", init + [xw], outs, name=e.name(f"scan_d{d}"), body=body, num_scan_inputs=1,
                                    scan_input_directions=[int(reverse)], scan_output_directions=[int(reverse)]))
    return outs


def _body(node, st: _Step, hidden: int, r_t: str, bias, peep, n_state: int):
    e = st.e
    h = e.name("h_prev")
    c = e.name("c_prev") if n_state == 2 else None
    xw_t = e.name("xw_t")
    if node.op_type == "LSTM":
        h_new, c_new = _lstm_step(st, xw_t, h, c, r_t, bias, peep, hidden)
        outs = [h_new, c_new]
    elif node.op_type == "GRU":
        outs = [_gru_step(st, xw_t, h, r_t, bias, hidden, int(attrs(node).get("linear_before_reset", 0)))]
    else:
        z = _preact(st, xw_t, st.op("MatMul", [h, r_t], "HR", every_op=False), bias, None, "z")
        outs = [st.rnd(st.act(0, z, "H"), every_op=False)]
    y = e.op("Identity", [outs[0]], "y_t")
    state_in = [h] + ([c] if c else [])
    vi = lambda n: helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, [None, None])  # noqa: E731  [batch, hidden]
    return helper.make_graph(e.nodes, e.name("body"), [vi(n) for n in state_in + [xw_t]], [vi(n) for n in outs + [y]])


def _preact(st: _Step, xw: str, hr: str, bias, sl, hint: str) -> str:
    """xw + hr (+ Wb + Rb), each add rounded in ``steps`` mode; ``sl`` picks a gate range of the biases."""
    s = st.op("Add", [xw, hr], hint + "_sum")
    if bias is None:
        return s
    wb, rb = bias
    if sl is not None:
        wb, rb = (st.e.slice(b, sl[0], sl[1], 0, hint + "_b") for b in (wb, rb))
    return st.op("Add", [s, st.op("Add", [wb, rb], hint + "_bias")], hint)


def _lstm_step(st: _Step, xw, h, c, r_t, bias, peep, hidden):
    hr = st.op("MatMul", [h, r_t], "HR", every_op=False)
    z = _preact(st, xw, hr, bias, None, "z")
    zi, zo, zf, zc = st.e.split(z, [hidden] * 4, -1, "gates")  # ONNX order: input, output, forget, cell
    if peep is not None:
        pi, po, pf = st.e.split(peep, [hidden] * 3, 0, "peep")
        zi = st.op("Add", [zi, st.op("Mul", [pi, c], "Pi_c")], "zi_p")
        zf = st.op("Add", [zf, st.op("Mul", [pf, c], "Pf_c")], "zf_p")
    i, f, g = st.act(0, zi, "i"), st.act(0, zf, "f"), st.act(1, zc, "g")
    c_new = st.rnd(st.op("Add", [st.op("Mul", [f, c], "f_c"), st.op("Mul", [i, g], "i_g")], "C"), every_op=False)
    if peep is not None:
        zo = st.op("Add", [zo, st.op("Mul", [po, c_new], "Po_c")], "zo_p")
    o = st.act(0, zo, "o")
    h_new = st.rnd(st.op("Mul", [o, st.act(2, c_new, "hC", clip=False)], "H"), every_op=False)
    return h_new, c_new


def _gru_step(st: _Step, xw, h, r_t, bias, hidden, lbr: int):
    e = st.e
    xz, xr, xh = e.split(xw, [hidden] * 3, -1, "x_gates")
    rz_t, rr_t, rh_t = e.split(r_t, [hidden] * 3, 1, "R_gates")
    rng = lambda k: (k * hidden, (k + 1) * hidden)  # noqa: E731
    z = st.act(0, _preact(st, xz, st.op("MatMul", [h, rz_t], "HRz", every_op=False), bias, rng(0), "zz"), "z")
    r = st.act(0, _preact(st, xr, st.op("MatMul", [h, rr_t], "HRr", every_op=False), bias, rng(1), "zr"), "r")
    if lbr:  # h~ = g(x Wh^T + r * (H Rh^T + Rbh) + Wbh)
        hh = st.op("MatMul", [h, rh_t], "HRh", every_op=False)
        if bias is not None:
            hh = st.op("Add", [hh, e.slice(bias[1], *rng(2), 0, "Rbh")], "HRh_b")
        pre = st.op("Add", [xh, st.op("Mul", [r, hh], "r_HRh")], "zh_sum")
        if bias is not None:
            pre = st.op("Add", [pre, e.slice(bias[0], *rng(2), 0, "Wbh")], "zh")
    else:  # h~ = g(x Wh^T + (r * H) Rh^T + Rbh + Wbh)
        pre = _preact(st, xh, st.op("MatMul", [st.op("Mul", [r, h], "r_H"), rh_t], "rH_Rh", every_op=False), bias, rng(2), "zh")
    cand = st.act(1, pre, "h_cand")
    one = e.const(1.0, np.float32, "one")
    keep = st.op("Mul", [st.op("Sub", [one, z], "one_minus_z"), cand], "zc_h")
    return st.rnd(st.op("Add", [keep, st.op("Mul", [z, h], "z_H")], "H"), every_op=False)


def _outputs(node, results, dirs, batch_first, e: Emitter) -> None:
    """Y [seq, dirs, batch, H] (or batch first), Y_h and Y_c [dirs, batch, H], only those the graph reads."""
    wanted = list(node.output) + [""] * (3 - len(node.output))
    y_parts = [e.unsqueeze(r[-1], [1], f"Y_d{d}_u") for d, r in enumerate(results)]
    sources = [y_parts] + [[e.unsqueeze(r[k], [0], f"{'hc'[k]}_d{d}_u") for d, r in enumerate(results)] for k in range(len(results[0]) - 1)]
    perms = ([2, 0, 1, 3], [1, 0, 2], [1, 0, 2])
    for k, out in enumerate(wanted[:3]):
        if not out or k >= len(sources):
            continue
        axis = 1 if k == 0 else 0
        whole = e.op("Concat", sources[k], f"out{k}", axis=axis) if dirs > 1 or batch_first else None
        if batch_first:
            e.op("Transpose", [whole], f"out{k}_batch_first", [out], perm=perms[k])
        elif whole is not None:
            e.op("Identity", [whole], f"out{k}_id", [out])
        else:
            e.op("Identity", [sources[k][0]], f"out{k}_id", [out])

"""LSTM/GRU/RNN step by step: the expansion computes the ONNX op exactly when nothing is rounded, and rounds as asked."""
import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from precdoctor.backends import ort
from precdoctor.backends.emulate import EmulationBackend
from precdoctor.analysis.controlflow import compare_plan
from precdoctor.numerics.emulation import EmulationOptions, emulation_model
from precdoctor.core.formats import FP16
from precdoctor.graph import Namer, view
from precdoctor.planning.plan import Plan
from precdoctor.numerics.recurrent import expand

GATES = {"LSTM": 4, "GRU": 3, "RNN": 1}


def rnn_model(op, dirs=1, hidden=5, inputs=3, steps=4, batch=2, bias=True, h0=False, c0=False, peep=False, seq_lens=False, **attrs):
    rng = np.random.default_rng(len(attrs) + 10 * dirs + hidden)
    g = GATES[op]
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32) * 0.5, n) for n, s in
             (("W", (dirs, g * hidden, inputs)), ("R", (dirs, g * hidden, hidden)))]
    feed = {"x": rng.standard_normal((steps, batch, inputs)).astype(np.float32)}
    ins = ["x", "W", "R", "B" if bias else "", "lens" if seq_lens else "", "h0" if h0 else ""]
    if bias:
        inits.append(numpy_helper.from_array(rng.standard_normal((dirs, 2 * g * hidden)).astype(np.float32) * 0.5, "B"))
    if seq_lens:
        inits.append(numpy_helper.from_array(np.full(batch, steps, np.int32), "lens"))
    if h0:
        feed["h0"] = rng.standard_normal((dirs, batch, hidden)).astype(np.float32)
    if op == "LSTM":
        ins += ["c0" if c0 else "", "P" if peep else ""]
        if c0:
            feed["c0"] = rng.standard_normal((dirs, batch, hidden)).astype(np.float32)
        if peep:
            inits.append(numpy_helper.from_array(rng.standard_normal((dirs, 3 * hidden)).astype(np.float32) * 0.5, "P"))
    while ins[-1] == "":
        ins.pop()
    outs = ["Y", "Y_h"] + (["Y_c"] if op == "LSTM" else [])
    attrs.setdefault("direction", "bidirectional" if dirs == 2 else "forward")
    node = helper.make_node(op, ins, outs, name="/rnn", hidden_size=hidden, **attrs)
    g_in = [helper.make_tensor_value_info(k, 1, list(v.shape)) for k, v in feed.items()]
    g_out = [helper.make_tensor_value_info(o, 1, [None] * (4 if o == "Y" else 3)) for o in outs]
    m = helper.make_model(helper.make_graph([node], "g", g_in, g_out, inits), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m, feed


CASES = [("LSTM", {}), ("LSTM", {"dirs": 2}), ("LSTM", {"h0": True, "c0": True, "peep": True}),
         ("LSTM", {"clip": 0.5, "direction": "reverse"}),
         ("LSTM", {"activations": ["HardSigmoid", "LeakyRelu", "Softsign"], "activation_alpha": [0.3, 0.2], "activation_beta": [0.4]}),
         ("GRU", {}), ("GRU", {"linear_before_reset": 1, "dirs": 2}), ("GRU", {"h0": True, "bias": False}),
         ("RNN", {"dirs": 2, "h0": True})]


@pytest.mark.parametrize("op,kw", CASES)
def test_expansion_computes_the_onnx_op(op, kw):
    """With nothing rounded the expansion is the ONNX op (ONNX Runtime's kernel) to float32 noise."""
    m, feed = rnn_model(op, **kw)
    node = m.graph.node[0]
    nodes, inits = expand(node, FP16, "op", 17, Namer.for_model(m))
    e = onnx.ModelProto()
    e.CopyFrom(m)
    del e.graph.node[:]
    e.graph.node.extend(nodes)
    e.graph.initializer.extend(inits)
    onnx.checker.check_model(e, full_check=True)
    ref, got = ort.run(ort.session(m, graph_opt="none"), feed), ort.run(ort.session(e, graph_opt="none"), feed)
    for o in ref:
        np.testing.assert_allclose(got[o], ref[o], atol=1e-6, rtol=1e-5)


def test_steps_round_the_state_every_step():
    """Longer sequences: per-step rounding of the state compounds, rounding the op's outputs does not."""
    m, feed = rnn_model("GRU", steps=64, hidden=16, inputs=8)
    g = view(m)
    ref = ort.run(ort.session(m, graph_opt="none"), feed)["Y"]
    err = {}
    for mode in ("op", "cudnn", "steps"):
        emu = emulation_model(g, Plan("fp16"), EmulationOptions(recurrent=mode)).model
        y = ort.run(ort.session(emu, graph_opt="none"), feed)["Y"]
        assert np.array_equal(FP16.round(y), y)  # the outputs hold FP16 values
        err[mode] = np.linalg.norm(y - ref) / np.linalg.norm(ref)
    assert err["steps"] > 1.5 * err["op"] and err["cudnn"] > err["op"]


def test_forms_not_expanded_fall_back_to_output_rounding_and_say_so():
    m, feed = rnn_model("LSTM", seq_lens=True)
    c = compare_plan(view(m), Plan("fp16"), [feed], EmulationBackend())
    assert any("sequence_lens is not expanded; emulated at its outputs only" in n for n in c.notes)
    assert c.verdict == "ok"

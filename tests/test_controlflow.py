"""If/Loop/Scan: bodies emulated and converted, their tensors compared on flat graphs, coverage said, pins on body nodes."""
import numpy as np
import onnx
import pytest
from onnx import TensorProto as T
from onnx import helper, numpy_helper

from helpers import run_cli
from precdoctor.backends import ort
from precdoctor.backends.emulate import EmulationBackend
from precdoctor.analysis.controlflow import compare_plan
from precdoctor.numerics.emulation import emulation_model
from precdoctor.analysis.flatten import flatten
from precdoctor.graph import open_model
from precdoctor.numerics.mixed import check, mixed_model
from precdoctor.planning.plan import Plan, resolve_selectors


def _vi(n, t=T.FLOAT, s=None):
    return helper.make_tensor_value_info(n, t, s)


def _save(m, tmp_path, name="m.onnx"):
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, tmp_path / name)
    return tmp_path / name


def _model(nodes, inputs, outputs, inits):
    m = helper.make_model(helper.make_graph(nodes, "g", inputs, outputs, inits), opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def loop_model():
    """A Loop over the rows of x carrying h = tanh(0.9 h + x_t), doubled on even steps by an If in its body; stacks h."""
    then = helper.make_graph([helper.make_node("Mul", ["h_new", "k2"], ["h_even"], name="/loop/even/Mul")], "even", [], [_vi("h_even", s=[1, 4])])
    other = helper.make_graph([helper.make_node("Identity", ["h_new"], ["h_odd"], name="/loop/odd/Identity")], "odd", [], [_vi("h_odd", s=[1, 4])])
    body = helper.make_graph([
        helper.make_node("Gather", ["x", "i"], ["x_t"], axis=0, name="/loop/Gather"),
        helper.make_node("Mul", ["h", "decay"], ["h_d"], name="/loop/Mul"),
        helper.make_node("Add", ["h_d", "x_t"], ["pre"], name="/loop/Add"),
        helper.make_node("Tanh", ["pre"], ["h_new"], name="/loop/Tanh"),
        helper.make_node("Mod", ["i", "two"], ["parity"], name="/loop/Mod"),
        helper.make_node("Equal", ["parity", "zero"], ["even"], name="/loop/Equal"),
        helper.make_node("If", ["even"], ["h_next"], then_branch=then, else_branch=other, name="/loop/If"),
        helper.make_node("Identity", ["cond"], ["cond_out"], name="/loop/cond"),
        helper.make_node("Identity", ["h_next"], ["y_t"], name="/loop/y"),
    ], "body", [_vi("i", T.INT64, []), _vi("cond", T.BOOL, []), _vi("h", s=[1, 4])],
        [_vi("cond_out", T.BOOL, []), _vi("h_next", s=[1, 4]), _vi("y_t", s=[1, 4])])
    inits = [numpy_helper.from_array(np.array(v, d), n) for n, v, d in
             (("decay", 0.9, np.float32), ("k2", 2.0, np.float32), ("two", 2, np.int64), ("zero", 0, np.int64))]
    nodes = [helper.make_node("Shape", ["x"], ["shape"], name="/shape"),
             helper.make_node("Gather", ["shape", "zero"], ["steps"], axis=0, name="/steps"),
             helper.make_node("Loop", ["steps", "", "h0"], ["h_last", "ys"], body=body, name="/loop/Loop"),
             helper.make_node("Mul", ["ys", "k2"], ["y"], name="/out/Mul")]
    return _model(nodes, [_vi("x", s=["T", 4]), _vi("h0", s=[1, 4])], [_vi("h_last", s=[1, 4]), _vi("y", s=["T", 1, 4])], inits)


LOOP_FEED = {"x": np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32), "h0": np.zeros((1, 4), np.float32)}


def _run(model, feed, outputs=None):
    return ort.run(ort.session(model, graph_opt="none"), feed, outputs)


def test_loop_with_nested_if_flattens_to_the_same_numbers(tmp_path):
    graph = open_model(_save(loop_model(), tmp_path))
    flat = flatten(graph, [LOOP_FEED])[0]
    assert flat.done == {"/loop/Loop": "7 iterations", "/loop/If": "else branch, then branch"}
    ref, got = _run(graph.model, LOOP_FEED), _run(flat.view.model, LOOP_FEED, graph.outputs)
    assert all(np.array_equal(ref[o], got[o]) for o in graph.outputs)
    for prec in ("fp16", "bf16"):  # the flat graph's emulation computes what the emulated bodies compute, bit for bit
        a = _run(emulation_model(graph, Plan(prec)).model, LOOP_FEED, graph.outputs)
        b = _run(emulation_model(flat.view, Plan(prec, frozenset(flat.helpers))).model, LOOP_FEED, graph.outputs)
        assert all(np.array_equal(a[o], b[o]) for o in graph.outputs)
        assert not all(np.array_equal(a[o], ref[o]) for o in graph.outputs)  # and the bodies were rounded
    c = compare_plan(graph, Plan("fp16"), [LOOP_FEED], EmulationBackend())
    assert c.tensor("pre").node == "/loop/Add" and c.tensor("pre").elements == 7 * 4
    assert c.tensor("h_even").elements == 4 * 4  # the then branch ran on steps 0, 2, 4, 6


def test_a_body_past_the_flat_limit_is_said_not_analysed(tmp_path, monkeypatch):
    path = _save(loop_model(), tmp_path)
    monkeypatch.setattr("precdoctor.analysis.flatten.FLAT_NODE_LIMIT", 20)
    np.savez(tmp_path / "x.npz", **LOOP_FEED)
    code, out, _ = run_cli("compare", path, "--inputs", tmp_path / "x.npz")
    assert code == 0 and "NOT ANALYSED: Loop /loop/Loop: body emulated, not compared tensor by tensor" in out
    assert "NOT ANALYSED: If /loop/If: not run on these samples" in out


def test_branch_flip_in_low_precision_is_said_and_outputs_come_from_the_model(tmp_path):
    """cond = sum(x) > 1.00005: FP32 takes the then branch; FP16 rounds sum and threshold to 1.0 and takes else."""
    then = helper.make_graph([helper.make_node("Mul", ["x", "k2"], ["a"], name="/then/Mul")], "t", [], [_vi("a", s=[4])])
    other = helper.make_graph([helper.make_node("Neg", ["x"], ["b"], name="/else/Neg")], "e", [], [_vi("b", s=[4])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="/sum"),
             helper.make_node("Greater", ["s", "thr"], ["c"], name="/gt"),
             helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="/if")]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("k2", 2.0), ("thr", 1.00005))]
    graph = open_model(_save(_model(nodes, [_vi("x", s=[4])], [_vi("y", s=[4])], inits), tmp_path))
    feed = {"x": np.array([1.0001, 0, 0, 0], np.float32)}
    c = compare_plan(graph, Plan("fp16"), [feed], EmulationBackend())
    assert any("takes another branch" in n for n in c.notes)
    real = EmulationBackend().runner(graph, Plan("fp16"))(feed)["y"]
    assert np.array_equal(c.pairs[0][1]["y"], real) and real[0] < 0 and c.verdict == "diverges"


def test_body_node_names_are_unique_and_pins_reach_them(tmp_path):
    same = [helper.make_node("Relu", ["x"], ["t1"], name="/act"), helper.make_node("Relu", ["x"], ["t2"], name="/act")]
    then = helper.make_graph([same[0]], "t", [], [_vi("t1", s=[4])])
    other = helper.make_graph([same[1]], "e", [], [_vi("t2", s=[4])])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other, name="/if"),
             helper.make_node("Relu", ["y"], ["z"], name="/act")]
    graph = open_model(_save(_model(nodes, [_vi("x", s=[4]), _vi("c", T.BOOL, [])], [_vi("z", s=[4])], []), tmp_path))
    names = [n.name for n in graph.all_nodes()]
    assert len(set(names)) == len(names) == 4 and "/act" in names  # the top-level node keeps its name
    assert set(resolve_selectors(graph, ["glob:/act*"])) == {"/act", "/act_1", "/act_2"}


def test_pinning_a_control_flow_node_keeps_its_bodies_fp32(tmp_path):
    graph = open_model(_save(loop_model(), tmp_path))
    c = compare_plan(graph, Plan("fp16", frozenset({"/loop/Loop"})), [LOOP_FEED], EmulationBackend())
    assert c.tensor("pre").rel_l2 == 0 and c.tensor("h_last").rel_l2 == 0 and c.tensor("y").rel_l2 > 0


@pytest.mark.parametrize("pins", [set(), {"/loop/Tanh"}, {"/loop/even/Mul", "/loop/Add"}])
def test_mixed_onnx_converts_bodies(pins, tmp_path):
    """Low body nodes computed in FP16, pinned ones in FP32 with Casts inside the body (outer values included)."""
    graph = open_model(_save(loop_model(), tmp_path))
    m = mixed_model(graph, Plan("fp16", frozenset(pins))).model
    check(m)
    body = next(a.g for n in m.graph.node if n.op_type == "Loop" for a in n.attribute)
    low = {n.name for n in body.node if n.op_type == "Cast" and any(a.i == T.FLOAT16 for a in n.attribute)}
    assert low  # the body computes in FP16
    got = _run(m, LOOP_FEED)
    ref = _run(graph.model, LOOP_FEED)
    assert np.allclose(got["y"], ref["y"], atol=1e-2)


def test_a_failing_decision_run_leaves_the_body_whole_and_says_so(tmp_path, monkeypatch):
    from precdoctor.core.errors import BadInput

    graph = open_model(_save(loop_model(), tmp_path))

    def refuse(*_):
        raise BadInput("ONNX Runtime cannot run this model: no kernel")

    monkeypatch.setattr("precdoctor.analysis.flatten._decisions", refuse)
    c = compare_plan(graph, Plan("fp16"), [LOOP_FEED], EmulationBackend())
    cov = {x.node: x for x in c.control_flow}
    assert not cov["/loop/Loop"].analysed and "tells its branch or trip count failed" in cov["/loop/Loop"].detail
    assert c.tensor("h_last") is not None and c.tensor("pre") is None  # the boundary is still compared

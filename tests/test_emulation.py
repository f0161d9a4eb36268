"""The emulation reproduces reduced-precision numerics that ONNX Runtime CPU hides."""
import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from precdoctor.backends import ort
from precdoctor.backends.emulate import EmulationBackend
from precdoctor.graph import name_nodes, view
from precdoctor.planning.plan import Plan


def _square_model(opset=13):
    nodes = [helper.make_node("Mul", ["x", "x"], ["sq"], name="square"),
             helper.make_node("Add", ["sq", "eps"], ["y"], name="add_eps")]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3])],
                          initializer=[numpy_helper.from_array(np.array(1e-10, np.float32), "eps")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    return m


def test_emulated_fp16_overflows_where_ort_cpu_fp16_does_not():
    x = np.array([300.0, 2.0, 0.0], np.float32)
    m = _square_model()
    y = EmulationBackend().runner(view(m), Plan("fp16"))({"x": x})["y"]
    assert np.isinf(y[0]) and y[1] == 4.0
    assert y[2] == 0.0  # the 1e-10 epsilon is 0 in FP16: rounded at the border
    # the same plan as a real FP16 graph on ORT CPU: computed in FP32 inside, the overflow is hidden
    from precdoctor.numerics.mixed import mixed_model

    fp16_model = mixed_model(view(m), Plan("fp16")).model
    hidden = ort.run(ort.session(fp16_model), {"x": x})["y"]
    assert hidden[0] == 90000.0


def test_pinned_node_computes_fp32_and_low_consumer_rounds_at_border():
    x = np.array([300.0, 2.0, 0.0], np.float32)
    g = view(_square_model())
    y = EmulationBackend().runner(g, Plan("fp16", frozenset({"square"})))({"x": x})["y"]
    assert np.isinf(y[0])  # 90000 leaves the pinned node in FP32, and the FP16 Add reads it rounded: inf
    y = EmulationBackend().runner(g, Plan("fp16", frozenset({"square", "add_eps"})))({"x": x})["y"]
    assert y[0] == 90000.0 and y[2] == np.float32(1e-10)


def test_bf16_on_opset_11_model():
    g = view(_square_model(opset=11))
    y = EmulationBackend().runner(g, Plan("bf16"))({"x": np.array([1.00390625 * 3, 2.0, 0.0], np.float32)})["y"]
    assert np.isfinite(y).all() and y[1] == 4.0
    assert y[0] != np.float32(1.00390625 * 3) ** 2  # rounded to bf16's 8 significant bits


def _ln_model():
    rng = np.random.default_rng(0)
    x_shape = [1, 4, 16]
    nodes = [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln", axis=-1, epsilon=1e-5)]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, x_shape)],
                          initializer=[numpy_helper.from_array(np.ones(16, np.float32), "g"),
                                       numpy_helper.from_array(np.zeros(16, np.float32), "b")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    x = rng.standard_normal(x_shape).astype(np.float32)
    x[0, 0, 0] = 2000.0  # (x - mean)^2 ~ 3.5e6 > 65504
    return m, x


def test_profiles_for_fused_layernorm():
    m, x = _ln_model()
    g = view(m)
    ref = ort.run(ort.session(m), {"x": x})["y"]
    fused = EmulationBackend("fused").runner(g, Plan("fp16"))({"x": x})["y"]
    strict = EmulationBackend("strict").runner(g, Plan("fp16"))({"x": x})["y"]
    assert np.abs(fused - ref).max() < 0.01  # FP32 inside, rounded output
    assert np.abs(strict[0, 0] - ref[0, 0]).max() > 0.5  # the decomposed variance overflows
    assert np.abs(strict[0, 1:] - ref[0, 1:]).max() < 0.01


def test_unnamed_nodes_get_tensorrt_names():
    m = _square_model()
    for n in m.graph.node:
        n.name = ""
    m.graph.node.append(helper.make_node("Identity", ["y"], ["z"]))
    m.graph.node.append(helper.make_node("Identity", ["y"], ["z2"], name="node_of_z"))
    name_nodes(m)
    names = [n.name for n in m.graph.node]
    assert names[:2] == ["node_of_sq", "node_of_y"]
    assert len(set(names)) == len(names)


def _weighted_model(w: np.ndarray):
    """y = x @ w with a batch dimension of any size; ``w`` large enough to go to the weight store."""
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", w.shape[0]])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", w.shape[1]])],
                          initializer=[numpy_helper.from_array(w, "w")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    return m


@pytest.mark.parametrize("make", ["emulation", "reference"])
def test_a_runner_outlives_the_view_it_was_made_from(make):
    """A runner keeps the weights its sessions read: one made from a view nobody else holds still builds
    a session for each new input shape from the weight store's files."""
    import gc

    from precdoctor.backends.reference import ReferenceRunner
    from precdoctor.graph.weights import WeightStore

    w = np.random.default_rng(0).standard_normal((64, 64)).astype(np.float32)
    assert w.nbytes >= WeightStore.MIN_BYTES
    build = (lambda g: EmulationBackend().runner(g, Plan("fp16"))) if make == "emulation" else ReferenceRunner
    kept = view(_weighted_model(w))
    assert kept.store is not None and "w" in kept.store.arrays  # the weights went to the store
    runner, expected = build(view(_weighted_model(w))), build(kept)
    gc.collect()
    for n in (1, 5):  # each shape its own session, built on first use
        x = np.random.default_rng(n).standard_normal((n, 64)).astype(np.float32)
        y = runner({"x": x})["y"]
        np.testing.assert_array_equal(y, expected({"x": x})["y"])
        np.testing.assert_allclose(y, x @ w, rtol=0.02, atol=0.05)


def test_mixed_onnx_is_the_same_file_in_every_process():
    """The Casts back to FP32 at the graph outputs follow the model's output order, not a set's (which changes with
    the process's string hashing): a shipped model.mixed.onnx is byte for byte reproducible."""
    from precdoctor.numerics.mixed import mixed_model

    outs = [f"y{k}" for k in range(8)]
    g = helper.make_graph([helper.make_node("Relu", ["x"], [o], name=f"relu{k}") for k, o in enumerate(outs)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, [3]) for o in outs])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    mixed = mixed_model(view(m), Plan("fp16")).model
    assert [n.output[0] for n in mixed.graph.node if n.op_type == "Cast" and n.output[0] in outs] == outs

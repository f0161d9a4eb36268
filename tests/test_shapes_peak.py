"""The live-activation peak that bounds a batched pass (graph/shapes.py)."""
import onnx
from onnx import TensorProto, helper

from precdoctor.graph import peak_activation_elements, view


def _chain():
    """x -> A -> a -> B -> b -> C(a, b) -> y: ``a`` lives until C reads it, so a, b and y are alive together."""
    f = lambda n, shape: helper.make_tensor_value_info(n, TensorProto.FLOAT, shape)  # noqa: E731
    nodes = [helper.make_node("Relu", ["x"], ["a"], name="A"), helper.make_node("Neg", ["a"], ["b"], name="B"),
             helper.make_node("Add", ["a", "b"], ["y"], name="C"), helper.make_node("Neg", ["y"], ["z"], name="D")]
    g = helper.make_graph(nodes, "chain", [f("x", [10])], [f("z", [10])])
    return view(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))


def test_peak_counts_what_is_alive_at_once_and_frees_after_the_last_reader():
    g = _chain()
    sizes = {"x": 10, "a": 10, "b": 10, "y": 10, "z": 10}
    # at C: a, b (read by C) and y; x died after A; after C, a and b are freed; at D: y and z
    assert peak_activation_elements(g, sizes) == 30
    assert peak_activation_elements(g, dict(sizes, b=100)) == 120  # b dominates while a and y live beside it
    assert peak_activation_elements(g, {}) == 0  # sizes unknown: nothing counted


def test_graph_outputs_live_to_the_end():
    g = _chain()
    m = onnx.ModelProto()
    m.CopyFrom(g.model)
    m.graph.output.append(helper.make_tensor_value_info("a", TensorProto.FLOAT, [10]))
    sizes = {"x": 10, "a": 10, "b": 10, "y": 10, "z": 10}
    assert peak_activation_elements(view(m), sizes) == 30  # a kept to the end: at D, a, y and z

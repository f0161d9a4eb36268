"""Bad input: one clear line on stderr, exit code 2, no traceback, nothing half-written."""
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from helpers import run_cli


def _expect_bad(args, needle):
    code, out, err = run_cli(*args)
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.strip().splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith("precdoctor: error:"), err
    assert "Traceback" not in err
    assert needle.lower() in lines[0].lower(), lines[0]


def _external_model(tmp_path, location):
    w = numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 64])], initializer=[w])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    path = tmp_path / "m.onnx"
    onnx.save(m, path, save_as_external_data=True, location="m.data", size_threshold=0)
    m = onnx.load(path, load_external_data=False)
    for e in m.graph.initializer[0].external_data:
        if e.key == "location":
            e.value = location
    onnx.save(m, path)
    return path


def test_truncated_onnx(planted_dir, tmp_path):
    data = (planted_dir / "healthy.onnx").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 2])
    _expect_bad(["compare", p, "--inputs", planted_dir / "healthy.npz"], "not a readable ONNX model")


def test_not_onnx(tmp_path, planted_dir):
    p = tmp_path / "x.onnx"
    p.write_text("hello, I am a text file\n" * 10)
    _expect_bad(["compare", p, "--inputs", planted_dir / "healthy.npz"], "not a readable ONNX model")


def test_missing_model(tmp_path):
    _expect_bad(["scan", tmp_path / "nope.onnx", "--input-shapes", "x:[1]"], "not found")


@pytest.mark.parametrize("arrays,needle", [
    ({"wrong": np.zeros((1, 48, 32), np.float32)}, "unknown input name"),
    ({"x": np.zeros((48, 32), np.float32)}, "rank"),
    ({"x": np.zeros((1, 48, 31), np.float32)}, "axis 2 must be 32"),
], ids=["wrong-name", "wrong-rank", "wrong-static-dim"])
def test_input_that_does_not_fit_the_model(arrays, needle, planted_dir, tmp_path):
    p = tmp_path / "in.npz"
    np.savez(p, **arrays)
    _expect_bad(["compare", planted_dir / "healthy.onnx", "--inputs", p], needle)


def test_bad_npz(planted_dir, tmp_path):
    p = tmp_path / "in.npz"
    p.write_bytes(b"PK\x03\x04garbage")
    _expect_bad(["compare", planted_dir / "healthy.onnx", "--inputs", p], "not a readable .npz")


def test_missing_external_data(tmp_path):
    p = _external_model(tmp_path, "m.data")
    os.remove(tmp_path / "m.data")
    _expect_bad(["scan", p, "--input-shapes", "x:[1,64]"], "missing")


def test_external_data_outside_folder(tmp_path):
    sub = tmp_path / "model"
    sub.mkdir()
    p = _external_model(sub, "../m.data")
    (sub / "m.data").rename(tmp_path / "m.data")
    _expect_bad(["scan", p, "--input-shapes", "x:[1,64]"], "outside the model's folder")


def test_external_data_ok(tmp_path):
    p = _external_model(tmp_path, "m.data")
    code, out, err = run_cli("scan", p, "--input-shapes", "x:[1,64]")
    assert code == 0, err


def test_no_float_tensors(tmp_path):
    g = helper.make_graph([helper.make_node("Add", ["a", "a"], ["b"], name="add")], "g",
                          [helper.make_tensor_value_info("a", TensorProto.INT64, [2])],
                          [helper.make_tensor_value_info("b", TensorProto.INT64, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    p = tmp_path / "int.onnx"
    onnx.save(m, p)
    _expect_bad(["compare", p, "--input-shapes", "a:[2]"], "no float32 tensors")


def test_op_onnxruntime_cannot_run(tmp_path):
    g = helper.make_graph([helper.make_node("FancyOp", ["x"], ["y"], name="fancy", domain="com.example")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("com.example", 1)])
    m.ir_version = 8
    p = tmp_path / "custom.onnx"
    onnx.save(m, p)
    _expect_bad(["compare", p, "--input-shapes", "x:[2]"], "ONNX Runtime cannot run")


def test_bad_accept_and_selector(planted_dir, tmp_path):
    _expect_bad(["bisect", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--out", tmp_path / "o",
                 "--accept", "max-abs>=3"], "max-abs<=X")
    _expect_bad(["compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--pin", "no_such_node"],
                "matches no node")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_unwritable_output_dir_unprivileged(planted_dir, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    _expect_bad(["bisect", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--out", ro / "x"], "cannot")


def test_output_dir_that_is_a_file(planted_dir, tmp_path):
    f = tmp_path / "file"
    f.write_text("x")
    _expect_bad(["bisect", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--out", f / "sub"], "cannot create output folder")
    _expect_bad(["compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--json", f / "r.json"], "cannot")

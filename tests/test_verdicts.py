"""Honest verdicts on odd input: FP32's own Inf/NaN found, located and never blamed on the low precision;
matching non-finite values agree; norms of non-finite rows are never "0 and 1"; Inf/NaN hidden inside a
passing plan fails by default and is flagged; verdicts on random data say so everywhere."""
import json
import math
import sys

import numpy as np
import pytest

from helpers import ROOT, run_cli

sys.path.insert(0, str(ROOT / "fixtures"))
import oddinputs  # noqa: E402


@pytest.fixture(scope="module")
def odd(tmp_path_factory):
    return oddinputs.write(tmp_path_factory.mktemp("odd"))


def _npz(path):
    return path.with_suffix(".npz")


def test_fp32_nan_is_found_located_and_not_blamed(odd, tmp_path):
    code, out, err = run_cli("compare", odd["log"], "--inputs", _npz(odd["log"]), "--json", tmp_path / "c.json")
    assert code == 1 and "verdict: REFERENCE-NONFINITE" in out and "not to blame" in out
    y = next(ln for ln in out.splitlines() if ln.strip().startswith("y "))
    assert y.split()[1:6] == ["8", "of", "8", "nan", "nan"]  # FP32's own Inf/NaN first; undefined norms, never 0 and 1
    r = json.loads((tmp_path / "c.json").read_text())
    ref = r["comparison"]["reference"]
    assert r["verdict"] == "reference-nonfinite" and ref["origin"] == "log" and ref["origin_op"] == "Log"
    assert ref["nan_outputs"] == {"y": 8} and r["comparison"]["origin"] is None  # nothing new in FP16
    y = r["comparison"]["outputs"]["y"]["metrics"]
    assert y["rel_l2"] == "nan" and y["cosine"] == "nan" and y["nonfinite_ref"] == 8
    code, out, err = run_cli("report", tmp_path / "c.json", "-o", tmp_path / "c.html")
    assert code == 0 and "REFERENCE-NONFINITE" in (tmp_path / "c.html").read_text()


def test_bisect_refuses_an_fp32_reference_that_is_nan(odd, tmp_path):
    code, out, err = run_cli("bisect", odd["log"], "--inputs", _npz(odd["log"]), "--out", tmp_path / "o", "--quiet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "'log'" in err and "FP32 reference itself" in err and "fp16" not in err.lower().split("fp32")[0]
    assert not (tmp_path / "o" / "run.json").exists() and not (tmp_path / "o" / "trtexec.txt").exists()


def test_scan_names_the_fp32_origin(odd):
    code, out, err = run_cli("scan", odd["log"], "--inputs", _npz(odd["log"]))
    row = next(ln for ln in out.splitlines() if "nonfinite" in ln)
    assert code == 0 and row.split()[:3] == ["high", "nonfinite", "log"] and "FP32 itself computes Inf/NaN" in row


def test_matching_infinities_agree(odd, tmp_path):
    code, out, err = run_cli("compare", odd["masked"], "--inputs", _npz(odd["masked"]), "--json", tmp_path / "m.json")
    assert code == 0 and "verdict: OK" in out
    assert "FP32 itself Inf/NaN" in out and "8 of 16" in next(ln for ln in out.splitlines() if ln.strip().startswith("y "))
    r = json.loads((tmp_path / "m.json").read_text())
    assert r["comparison"]["outputs"]["y"]["inf_ref"] == 8 and r["comparison"]["outputs"]["y"]["nonfinite_mismatch"] == 0
    assert any("FP32 reference itself" in w for w in r["warnings"])
    code, out, err = run_cli("bisect", odd["masked"], "--inputs", _npz(odd["masked"]), "--out", tmp_path / "b", "--quiet")
    assert code == 0 and json.loads((tmp_path / "b" / "run.json").read_text())["verdict"] == "healthy"


def test_non_finite_values_that_do_not_match_are_errors():
    from precdoctor.analysis import acceptance
    from precdoctor.core.formats import get_format
    from precdoctor.analysis.outputs import compare_outputs

    ref = {"y": np.array([[1.0, -np.inf, np.nan, 2.0]], np.float32)}
    same = {"y": np.array([[1.0, -np.inf, np.nan, 2.0]], np.float32)}
    lost = {"y": np.array([[1.0, -65504.0, 0.0, 2.0]], np.float32)}
    crit = acceptance.parse(["max-abs<=0.1", "rel-l2<=0.1", "cosine>=0.9", "finite"])
    assert acceptance.judge_outputs(crit, [(ref, same)], ["y"]).passed
    v = acceptance.judge_outputs(crit, [(ref, lost)], ["y"])
    assert set(v.failed) == {"max-abs<=0.1", "rel-l2<=0.1", "cosine>=0.9"}
    out = compare_outputs([(ref, lost)], ["y"], get_format("fp16"), 0.05, 1.0)["y"]
    assert out.diverges and out.nonfinite_mismatch == 2 and out.positions_off == 1
    assert not compare_outputs([(ref, same)], ["y"], get_format("fp16"), 0.05, 1.0)["y"].diverges


def test_norms_of_a_row_with_nothing_comparable_are_undefined_not_perfect():
    from precdoctor.core.formats import get_format
    from precdoctor.numerics.metrics import metrics
    from precdoctor.numerics.probes import numpy_stats

    nan = np.full(8, np.nan, np.float32)
    m = metrics(numpy_stats(nan, nan, get_format("fp16")), get_format("fp16"))
    assert math.isnan(m.rel_l2) and math.isnan(m.cosine) and m.compared == 0 and m.error == 0.0
    zeros = np.zeros(8, np.float32)
    z = metrics(numpy_stats(zeros, zeros, get_format("fp16")), get_format("fp16"))
    assert z.rel_l2 == 0.0 and z.cosine == 1.0 and z.compared == 8


def test_rel_l2_of_an_all_zero_reference():
    from precdoctor.analysis import acceptance

    c = acceptance.parse(["rel-l2<=0.05"])
    zero = {"y": np.zeros((1, 4), np.float32)}
    assert acceptance.judge_outputs(c, [(zero, zero)], ["y"]).measures["rel-l2<=0.05"] == 0.0
    assert acceptance.judge_outputs(c, [(zero, {"y": np.ones((1, 4), np.float32)})], ["y"]).measures["rel-l2<=0.05"] == math.inf


def test_inf_hidden_inside_a_passing_plan_fails_by_default(odd, tmp_path):
    args = ["compare", odd["hidden_inf"], "--inputs", _npz(odd["hidden_inf"])]
    code, out, err = run_cli(*args)
    assert code == 1 and "verdict: DIVERGES" in out and "born at node 'exp'" in out and "--allow-internal-nonfinite" in out
    code, out, err = run_cli(*args, "--allow-internal-nonfinite")
    assert code == 0 and "verdict: OK" in out and "WARNING:" in out and "accepted" in out


def test_bisect_pins_what_hides_the_inf_and_the_opt_out_flags_it(odd, tmp_path):
    code, out, err = run_cli("bisect", odd["hidden_inf"], "--inputs", _npz(odd["hidden_inf"]), "--out", tmp_path / "a", "--quiet")
    r = json.loads((tmp_path / "a" / "run.json").read_text())
    assert code == 0 and r["verdict"] == "fixed" and sorted(r["pins"]) == ["add1", "exp"]
    assert "finite-inside" in r["accept"] and r["internal_nonfinite"] is None and r["evaluations"] <= r["evaluation_bound"]
    assert sum(t["nonfinite_new"] for t in r["comparison"]["pinned"]["tensors"]) == 0
    code, out, err = run_cli("bisect", odd["hidden_inf"], "--inputs", _npz(odd["hidden_inf"]), "--out", tmp_path / "b", "--quiet",
                             "--allow-internal-nonfinite")
    r = json.loads((tmp_path / "b" / "run.json").read_text())
    assert code == 0 and r["verdict"] == "healthy" and "born at node 'exp'" in r["internal_nonfinite"]
    assert any("exp" in w for w in r["warnings"]) and "WARNING:" in out
    pins = json.loads((tmp_path / "b" / "pins.json").read_text())
    assert any("exp" in w for w in pins["warnings"])
    assert "born at node" in (tmp_path / "b" / "index.html").read_text()


@pytest.mark.parametrize("cmd", ["compare", "scan", "bisect"])
def test_verdicts_on_random_data_say_so_everywhere(cmd, planted_dir, tmp_path):
    extra = ["--out", tmp_path / "o", "--quiet", "--no-baselines"] if cmd == "bisect" else ["--json", tmp_path / "r.json"]
    code, out, err = run_cli(cmd, planted_dir / "healthy.onnx", "--input-shapes", "x:[1,48,32]", "--seed", "7", *extra)
    assert code == 0, err
    what = "these ranges and risks are" if cmd == "scan" else "the verdict is"  # scan has no verdict
    assert f"WARNING: {what} on seeded random data (seed 7)" in out and "--inputs" in out
    assert cmd != "scan" or "verdict" not in out
    r = json.loads(((tmp_path / "o" / "run.json") if cmd == "bisect" else tmp_path / "r.json").read_text())
    assert r["inputs"]["source"] == "random" and any("random data" in w for w in r["warnings"])
    if cmd == "bisect":
        assert any("random data" in w for w in json.loads((tmp_path / "o" / "pins.json").read_text())["warnings"])
        assert "seeded random data" in (tmp_path / "o" / "index.html").read_text()
    if cmd == "compare":
        assert run_cli("report", tmp_path / "r.json", "-o", tmp_path / "r.html")[0] == 0
        assert "seeded random data" in (tmp_path / "r.html").read_text()


def test_inputs_that_would_lie(planted_dir, tmp_path):
    x = np.load(planted_dir / "healthy.npz")["x"]
    for name, arr, needle in (("nan", np.where(np.arange(x.size).reshape(x.shape) == 3, np.nan, x), "NaN"),
                              ("f64", x.astype(np.float64) * 1e300, "past float32's range"),
                              ("i64", np.full(x.shape, 2**40, np.int64), "wants float32"),
                              ("c64", x.astype(np.complex64), "complex64"),
                              ("obj", np.array([None] * x.size, dtype=object).reshape(x.shape), "Python objects")):
        p = tmp_path / f"{name}.npz"
        np.savez(p, x=arr)
        code, out, err = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", p)
        assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, (name, err)


def test_infinite_inputs_are_named(odd, tmp_path):
    code, out, err = run_cli("compare", odd["masked"], "--inputs", _npz(odd["masked"]))
    assert code == 0 and "input 'mask' holds 8 infinite value(s)" in out


def test_fp32_nan_born_inside_an_if_branch_is_refused_too(tmp_path):
    """The control-flow path of the comparison (If bodies folded back) carries the FP32 reference's own NaN as the
    flat path does: bisect refuses it, compare says reference-nonfinite."""
    import onnx
    from onnx import TensorProto, helper

    branch = lambda name, op: helper.make_graph(  # noqa: E731
        [helper.make_node(op, ["x"], [f"{name}_y"], name=f"{name}/{op}")], name, [],
        [helper.make_tensor_value_info(f"{name}_y", TensorProto.FLOAT, [8])])
    graph = helper.make_graph(
        [helper.make_node("ReduceSum", ["x"], ["s"], name="sum", keepdims=0),
         helper.make_node("Greater", ["s", "zero"], ["c"], name="positive"),
         helper.make_node("If", ["c"], ["y"], name="branch", then_branch=branch("then", "Sqrt"), else_branch=branch("else", "Log"))],
        "if_log", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8])], [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "x.npz", x=-np.linspace(1, 2, 8, dtype=np.float32))  # sum < 0: the Log branch, log of negatives
    code, out, err = run_cli("compare", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "--json", tmp_path / "c.json")
    r = json.loads((tmp_path / "c.json").read_text())
    ref = r["comparison"]["reference"]
    assert code == 1 and r["verdict"] == "reference-nonfinite" and ref["nan_outputs"] == {"y": 8}, out + err
    assert ref["origin"] == "else/Log" and ref["origin_op"] == "Log"  # located inside the branch
    code, out, err = run_cli("bisect", tmp_path / "m.onnx", "--inputs", tmp_path / "x.npz", "--out", tmp_path / "o", "--quiet")
    assert code == 2 and "FP32 reference itself" in err and not (tmp_path / "o" / "run.json").exists()

"""Benign saturation (issue 18): a float32-min attention mask is -inf in FP16/BF16 and changes nothing; an Inf that
changes what follows stays a failure, its origin the first node of its chain."""
import json
import sys

import numpy as np
import pytest
from helpers import ROOT, run_cli

import precdoctor
from precdoctor.core.formats import FORMATS
from precdoctor.numerics.probes import IDX, numpy_stats

sys.path.insert(0, str(ROOT / "fixtures"))

import exports


@pytest.fixture(scope="module")
def exp_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("exports")
    exports.write(out, exports.build_all())
    return out


def test_probe_counts_saturation_and_zeroed_values():
    fmt = FORMATS["fp16"]
    ref = np.array([-3.4e38, 7e4, -7e4, 7e4, 5.0, 1.4e-5, 0.0, 1e-9], np.float32)
    cand = np.array([-np.inf, np.inf, np.inf, np.nan, np.inf, 0.0, 0.0, 0.0], np.float32)
    s = numpy_stats(ref, cand, fmt)
    assert s[IDX["nonfinite_new"]] == 5
    assert s[IDX["n_saturated"]] == 2  # same sign and beyond the range; not -7e4 -> +inf, not NaN, not 5 -> inf
    assert s[IDX["n_zeroed"]] == 1  # 1.4e-5 -> 0 (1 / inf); not 0 -> 0, not 1e-9 (rounds to 0 anyway)


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_healthy_mask_decoder_is_ok_and_the_mask_is_noted(exp_dir, precision, tmp_path):
    model, npz = exp_dir / "mask_decoder.onnx", exp_dir / "mask_decoder.npz"
    code, out, err = run_cli("compare", model, "--precision", precision, "--inputs", npz, "--json", tmp_path / "c.json")
    assert code == 0 and "verdict: OK" in out, out + err
    assert "Inf/NaN origin:    -" in out and "benign saturation" in out
    r = json.loads((tmp_path / "c.json").read_text())
    c = r["comparison"]
    assert c["origin"] is None and "mask/Where" in c["saturation"]["nodes"]
    assert all(t["benign"] for t in c["tensors"] if t["nonfinite_new"])
    code, out, err = run_cli("bisect", model, "--precision", precision, "--inputs", npz, "--out", tmp_path / "b", "--quiet",
                             "--no-baselines")
    r = json.loads((tmp_path / "b" / "run.json").read_text())
    assert code == 0 and r["verdict"] == "healthy" and r["pins"] == [], out + err
    assert not any(n.startswith("mask/") or n.endswith("Add_mask") for n in r["suspects"])


def test_in_graph_probes_see_the_same_saturation(exp_dir, monkeypatch):
    """Past limits.FETCH_ELEMENTS tensors are probed inside the graph: the same counts, the same verdict."""
    monkeypatch.setattr("precdoctor.backends.paired.FETCH_ELEMENTS", -1)
    for name, origin in (("mask_decoder", None), ("mask_decoder_fault", "layer1.cross/Exp")):
        run = precdoctor.compare(exp_dir / f"{name}.onnx", inputs=[str(exp_dir / f"{name}.npz")])
        assert run.comparison.origin == origin
        assert run.comparison.saturation is not None and "mask/Where" in run.comparison.saturation.nodes
        assert (run.verdict == "ok") == (origin is None)


def test_planted_fault_beside_the_mask_is_found_and_pinned_exactly(exp_dir, tmp_path):
    model, npz = exp_dir / "mask_decoder_fault.onnx", exp_dir / "mask_decoder_fault.npz"
    code, out, err = run_cli("compare", model, "--inputs", npz)
    assert code == 1 and "Inf/NaN origin:    layer1.cross/Exp" in out, out + err
    code, out, err = run_cli("bisect", model, "--inputs", npz, "--out", tmp_path / "b", "--quiet", "--no-baselines")
    r = json.loads((tmp_path / "b" / "run.json").read_text())
    assert code == 0 and r["verdict"] == "fixed", out + err
    assert sorted(r["pins"]) == sorted(exports.mask_decoder_fault().culprits["fp16"])
    assert r["comparison"]["naive"]["origin"] == "layer1.cross/Exp"


def test_an_inf_that_changes_what_follows_stays_the_failure(tmp_path):
    """The decomposed LayerNorm's (x - mean)^2 saturates like a mask does, but the Sqrt of the variance is inf where
    FP32 is finite: the whole chain fails and its origin is the Pow (not the Sqrt)."""
    import planted

    fx = planted.ln_overflow()
    import onnx

    onnx.save(fx.model, tmp_path / "m.onnx")
    np.savez(tmp_path / "m.npz", **fx.sample)
    run = precdoctor.compare(tmp_path / "m.onnx", inputs=[str(tmp_path / "m.npz")])
    assert run.comparison.origin == "layer1.ln/Pow" and run.comparison.saturation is None
    pow_ = run.comparison.of_node("layer1.ln/Pow")
    assert pow_.saturated == pow_.nonfinite_new > 0 and not pow_.benign  # saturated, but it changes what follows


def test_bf16_outputs_are_read_and_a_failure_in_our_graph_is_a_bug():
    """ONNX Runtime's binding has no numpy type for BF16 (the ort-cuda bisect died on it, exit 2): read through
    ml_dtypes; and a graph precdoctor built that fails to run is a bug (RuntimeFailure: exit 3), not bad input."""
    import onnx
    from onnx import TensorProto, helper

    from precdoctor.backends import ort
    from precdoctor.core.errors import BadInput

    g = helper.make_graph([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.BFLOAT16), helper.make_node("Identity", ["x"], ["z"])],
                          "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3])],
                          [helper.make_tensor_value_info("y", TensorProto.BFLOAT16, [3]), helper.make_tensor_value_info("z", TensorProto.FLOAT, [3])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)], producer_name="precdoctor-mixed")
    m.ir_version = 8
    sess = ort.session(m)
    x = np.array([1.0, 2.5, 3e38], np.float32)
    out = ort.run(sess, {"x": x})
    assert out["y"].dtype == np.float32 and out["y"][0] == 1.0 and out["y"][1] == 2.5 and abs(out["y"][2] / 3e38 - 1) < 2 ** -7
    assert np.array_equal(out["z"], x)
    with pytest.raises(ort.RuntimeFailure):
        ort.run(sess, {"x": np.zeros((2, 2), np.float32)})  # a rank our graph does not take
    m.producer_name = "pytorch"
    with pytest.raises(BadInput):
        ort.run(ort.session(m), {"x": np.zeros((2, 2), np.float32)})
    assert onnx.checker.check_model(m) is None


def test_a_plan_keeping_the_whole_model_in_fp32_is_not_fixed(exp_dir, tmp_path):
    """--accept 'max-abs<=0' is met only by pinning every node: its own verdict (mostly-fp32), exit 1, with its share."""
    model, npz = exp_dir / "ln_mlp.onnx", exp_dir / "ln_mlp.npz"
    code, out, err = run_cli("bisect", model, "--inputs", npz, "--accept", "max-abs<=0", "--out", tmp_path / "a", "--quiet",
                             "--no-baselines")
    r = json.loads((tmp_path / "a" / "run.json").read_text())
    assert code == 1 and r["verdict"] == "mostly-fp32" and "verdict: MOSTLY-FP32" in out, out + err
    assert "100%" in r["message"] and len(r["pins"]) == r["candidates"]
    assert "that is the FP32 model" in (tmp_path / "a" / "index.html").read_text()
    code, out, err = run_cli("bisect", model, "--inputs", npz, "--out", tmp_path / "b", "--quiet", "--no-baselines")
    r = json.loads((tmp_path / "b" / "run.json").read_text())
    assert code == 0 and r["verdict"] == "fixed" and 0 < len(r["pins"]) < r["candidates"] / 2


def test_positions_off_follow_the_format_and_the_magnitude(exp_dir, tmp_path):
    """Hidden states of ~500 in BF16: max abs error ~5 is BF16's rounding there (rel-L2 0.005), not corruption; an
    explicit --atol is used as given."""
    model, npz = exp_dir / "large_activations.onnx", exp_dir / "large_activations.npz"
    code, out, err = run_cli("compare", model, "--precision", "bf16", "--inputs", npz)
    assert code == 0 and "verdict: OK" in out, out + err
    code, out, err = run_cli("compare", model, "--precision", "bf16", "--inputs", npz, "--atol", "1")
    assert code == 1 and "positions off by more than 1" in out


def test_a_fault_reading_the_masked_scores_starts_at_its_exp(exp_dir, tmp_path):
    """The decomposed softmax reads the masked scores: the mask's -inf and the Exp's +inf meet in one computation.
    exp(-inf) = 0 is FP32's value; the +inf is the Exp's own overflow: the origin is the Exp, the pins its three nodes."""
    model, npz = exp_dir / "mask_decoder_masked_fault.onnx", exp_dir / "mask_decoder_masked_fault.npz"
    run = precdoctor.compare(model, inputs=[str(npz)])
    assert run.comparison.origin == "layer1.self/Exp"
    assert run.comparison.saturation is not None and "mask/Where" in run.comparison.saturation.nodes
    r = precdoctor.bisect(model, tmp_path / "b", inputs=[str(npz)], baselines=False, report=False)
    assert r.verdict == "fixed" and sorted(r.pins) == sorted(exports.mask_decoder_masked_fault().culprits["fp16"])


@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mask_inside_an_if_body(exp_dir, precision, tmp_path):
    """The control-flow path (the If inlined, body tensors folded back): the same rule."""
    run = precdoctor.compare(exp_dir / "masked_if.onnx", precision=precision, inputs=[str(exp_dir / "masked_if.npz")])
    assert run.verdict == "ok" and run.comparison.origin is None and "then/Where" in run.comparison.saturation.nodes
    run = precdoctor.compare(exp_dir / "masked_if_fault.onnx", precision=precision, inputs=[str(exp_dir / "masked_if_fault.npz")])
    if precision == "fp16":
        assert run.verdict == "diverges" and run.comparison.origin == "then/Exp"
        r = precdoctor.bisect(exp_dir / "masked_if_fault.onnx", tmp_path / "b", inputs=[str(exp_dir / "masked_if_fault.npz")],
                              baselines=False, report=False)
        assert r.verdict == "fixed" and sorted(r.pins) == sorted(exports.masked_if_fault().culprits["fp16"])
    else:  # BF16's range holds exp(50): no Inf; the Exp amplifies BF16's rounding: a divergence of precision, not the mask
        assert run.comparison.origin is None and run.comparison.first_divergence == "then/Exp"


def test_x_over_inf_stays_a_failure_through_in_graph_probes(monkeypatch, tmp_path):
    """1 / (1 + exp(4x)) + x: exp saturates like a mask, but 1/inf = 0 where FP32 holds 1e-5 (oddinputs.hidden_inf_model).
    With every tensor probed inside the graph, the Reciprocal (fed by the saturated Add) is re-probed in full to see it."""
    import oddinputs
    import onnx

    monkeypatch.setattr("precdoctor.backends.paired.FETCH_ELEMENTS", -1)
    m, sample = oddinputs.hidden_inf_model()
    onnx.save(m, tmp_path / "h.onnx")
    run = precdoctor.compare(tmp_path / "h.onnx", inputs=[sample])
    assert run.verdict == "diverges" and run.comparison.origin == "exp" and run.comparison.saturation is None
    recip = run.comparison.of_node("recip")
    assert recip.zeroed and recip.nonfinite_new == 0


@pytest.mark.parametrize("opset", [9, 13, 17])
def test_in_graph_full_probe_counts_as_numpy_does(opset):
    """The probe nodes (IsNaN, comparisons, no float Equal) give the saturation and zero counts numpy gives, down to opset 9."""
    from onnx import TensorProto, helper

    from precdoctor.backends import ort
    from precdoctor.graph import Namer
    from precdoctor.numerics.probes import K, ProbeBuilder, unpack

    fmt = FORMATS["fp16"]
    ref = np.array([-3.4e38, 7e4, -7e4, 7e4, 5.0, 1.4e-5, 0.0, 1e-9, np.inf, 2.0, -3.4e38, 7e4, 7e4], np.float32)
    cand = np.array([-np.inf, np.inf, np.inf, np.nan, np.inf, 0.0, 0.0, 0.0, np.inf, 2.0, -65504, 6e4, -65504], np.float32)
    pb = ProbeBuilder(fmt, Namer({"r", "c"}), full=True)
    pb.add("t", "r", "c", rank=1)
    nodes, inits, outs = pb.finish()
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("r", "c")],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 7
    res = ort.run(ort.session(m), {"r": ref, "c": cand})
    got = unpack([res[o] for o in outs], pb.names, pb.sized, True, {})[0]
    want = numpy_stats(ref, cand, fmt)
    assert got.shape == (K,)
    for f in ("nonfinite_new", "n_saturated", "n_saturated_pos", "n_zeroed", "n_overflow", "n_clamped", "sse"):
        assert got[IDX[f]] == pytest.approx(want[IDX[f]], rel=1e-6), f
    assert want[IDX["n_saturated"]] == 2 and want[IDX["n_saturated_pos"]] == 1 and want[IDX["n_zeroed"]] == 1
    assert want[IDX["n_clamped"]] == 1  # -3.4e38 held at -65504; not 7e4 -> 6e4 (an error), not 7e4 -> -65504


def test_onnx_runtime_failing_inside_precdoctor_is_exit_3(exp_dir, monkeypatch):
    """The ort-cuda bisect that died on BF16 outputs said "exit 2" (bad input): a graph precdoctor built failing to run
    is a bug of ours, one line and exit 3."""
    import onnxruntime

    real = onnxruntime.InferenceSession.run

    def failing(self, names, feed, *a, **k):
        if self.get_modelmeta().producer_name.startswith("precdoctor"):
            raise RuntimeError("No corresponding Numpy type for Tensor Type. bfloat16")
        return real(self, names, feed, *a, **k)

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", failing)
    code, out, err = run_cli("compare", exp_dir / "ln_mlp.onnx", "--inputs", exp_dir / "ln_mlp.npz")
    assert code == 3 and "internal error: RuntimeFailure" in err and "bfloat16" in err and len(err.strip().splitlines()) == 1


def test_a_clamped_mask_is_no_divergence(exp_dir):
    """trt-weak clamps the float32-min constant to -65504 (no Inf at all): the mask's error is not an error of
    arithmetic, so no first divergence at the Where; noted as benign saturation."""
    from precdoctor.backends import EngineParams

    run = precdoctor.compare(exp_dir / "mask_decoder.onnx", inputs=[str(exp_dir / "mask_decoder.npz")],
                             engine=EngineParams(target="trt-weak"))
    c = run.comparison
    assert run.verdict == "ok" and c.first_divergence is None and c.origin is None
    assert c.of_node("mask/Where").clamped == c.of_node("mask/Where").overflow > 0 and "mask/Where" in c.saturation.nodes


def test_an_output_of_another_shape_diverges_as_the_acceptance_says():
    """compare's outputs and bisect's acceptance, one rule for shapes: a candidate of another shape (a branch taken
    otherwise in the low precision) is off everywhere, never a crash."""
    from precdoctor.analysis import acceptance as acc
    from precdoctor.analysis.outputs import compare_outputs

    ref = {"y": np.ones((2, 4), np.float32)}
    pairs = [(ref, {"y": np.ones((2, 4), np.float32)}), (ref, {"y": np.ones((3, 4), np.float32)})]
    out = compare_outputs(pairs, ["y"], FORMATS["fp16"], 0.05, None)["y"]
    assert out.diverges and "shape differs" in out.reasons[0] and out.positions_off_per_sample == [0, 2]
    v = acc.judge_outputs(acc.parse(["finite", "rel-l2<=0.05"]), pairs, ["y"])
    assert not v.passed and v.failed == ["finite", "rel-l2<=0.05"]

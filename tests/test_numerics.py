"""Rounding and probes: the numbers everything else stands on."""
import ml_dtypes
import numpy as np
import pytest
from onnx import TensorProto, helper

from precdoctor.numerics import probes
from precdoctor.backends import ort
from precdoctor.core.formats import BF16, FP16
from precdoctor.graph import Namer
from precdoctor.numerics.rounding import round_nodes


def _run_graph(nodes, inits, x):
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, None)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 11)])
    m.ir_version = 7
    return ort.run(ort.session(m), {"x": x})["y"]


def test_fp16_rounding_overflows_and_flushes():
    r = FP16.round(np.array([65504, 65520, 1e-8, 3e-8, -7e4], np.float32))
    assert r[0] == 65504 and np.isinf(r[1]) and r[2] == 0 and r[3] == pytest.approx(5.96e-8, rel=1e-3) and r[4] == -np.inf


def test_bf16_veltkamp_matches_ml_dtypes_below_opset_13():
    """BF16 Cast needs opset 13; the arithmetic rounding must agree with real bfloat16 rounding."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.standard_normal(20000) * 10.0 ** rng.integers(-20, 20, 20000), [0.0, -0.0, 1.0, 3e38]]).astype(np.float32)
    nodes, inits = round_nodes("x", "y", BF16, 11, Namer({"x", "y"}))
    y = _run_graph(nodes, inits, x)
    want = x.astype(ml_dtypes.bfloat16).astype(np.float32)
    mismatch = y != want
    # Veltkamp splitting breaks exact ties away from even: at most one bf16 ulp, and only on ties
    assert mismatch.mean() < 0.01
    assert np.all(np.abs(y[mismatch] - want[mismatch]) <= np.abs(want[mismatch]) * 2.0 ** -7)


def _run_probes(pb, ref, cand):
    nodes, inits, outs = pb.finish()
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("r", "c")],
                          [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in outs], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    res = ort.run(ort.session(m), {"r": ref, "c": cand})
    return [res[o] for o in outs]


@pytest.mark.parametrize("full", [True, False])
def test_in_graph_probe_matches_numpy(full):
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((3, 50)).astype(np.float32) * 100
    ref[0, 0] = 1e-9  # underflows in FP16
    ref[0, 1] = 7e4  # overflows in FP16
    cand = FP16.round(ref)
    pb = probes.ProbeBuilder(FP16, Namer({"r", "c"}), full=full)
    pb.add("t", "r", "c", rank=2)
    flat = _run_probes(pb, ref, cand)
    got = probes.unpack(flat, pb.names, pb.sized, full, {})[0]
    want = probes.numpy_stats(ref, cand, FP16)
    if full:
        np.testing.assert_allclose(got, want, rtol=1e-4)
        assert got[probes.IDX["nonfinite_new"]] == 1 and got[probes.IDX["n_overflow"]] == 1 and got[probes.IDX["n_underflow"]] == 1
    else:
        # the fast probe sees the inf through its sums and asks for a full one
        assert probes.needs_full(got, FP16)


def test_fast_probe_completion_on_finite_data():
    rng = np.random.default_rng(2)
    ref = rng.standard_normal(1000).astype(np.float32)
    cand = BF16.round(ref)
    pb = probes.ProbeBuilder(BF16, Namer({"r", "c"}), full=False)
    pb.add("t", "r", "c", rank=1, size_in_graph=False)
    flat = _run_probes(pb, ref, cand)
    got = probes.complete_fast(probes.unpack(flat, pb.names, pb.sized, False, {"t": ref.size})[0])
    want = probes.numpy_stats(ref, cand, BF16)
    keep = [i for i, f in enumerate(probes.FIELDS) if f not in ("n_underflow", "n_zeroed")]  # not measured on the fast path
    np.testing.assert_allclose(got[keep], want[keep], rtol=1e-3)


def test_probe_groups_and_non_finite_candidates_in_the_fast_pass():
    """Probes come out in groups (one Concat of all keeps them alive to the end: start-up grows quadratically),
    and a candidate full of NaN/inf is counted by the fast probe itself: no second, full pass."""
    rng = np.random.default_rng(3)
    ref = rng.standard_normal(100).astype(np.float32)
    cand = ref.copy()
    cand[:30] = np.nan
    cand[30:35] = np.inf
    pb = probes.ProbeBuilder(FP16, Namer({"r", "c"}), full=False, group=2)
    for k in range(5):
        pb.add(f"t{k}", "r", "c", rank=1, size_in_graph=False)
    groups = _run_probes(pb, ref, cand)
    assert len(groups) == 3
    rows = probes.unpack(groups, pb.names, pb.sized, False, {f"t{k}": ref.size for k in range(5)})
    assert not any(probes.needs_full(r, FP16) for r in rows)
    got = probes.complete_fast(rows[4])
    want = probes.numpy_stats(ref, cand, FP16)
    for f in ("n", "nonfinite_ref", "nonfinite_cand", "nonfinite_new", "ref_absmax"):
        assert got[probes.IDX[f]] == pytest.approx(want[probes.IDX[f]], rel=1e-5), f
    assert np.isnan(got[probes.IDX["sse"]])  # the error over positions finite in both is not measured here


def test_numpy_stats_of_many_tensors_at_once_match_one_by_one():
    rng = np.random.default_rng(4)
    refs = [rng.standard_normal(s).astype(np.float32) * 1e3 for s in ((3, 4), (0,), (7,), (1,), (2, 5, 3))]
    refs[2][1] = 1e-9
    refs[4][0, 0, 0] = 7e4
    cands = [FP16.round(r) for r in refs]
    cands[0][1, 2] = np.nan
    refs[3][0] = np.inf
    got = probes.numpy_stats_many(refs, cands, FP16)
    for g, r, c in zip(got, refs, cands):
        np.testing.assert_allclose(g, probes.numpy_stats(r, c, FP16), rtol=1e-6)

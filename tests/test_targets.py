"""Targets: how constants are converted (clamp or cast), TF32 in the FP32 islands, and every verdict saying which
target it holds for."""
import json
import sys

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from helpers import ROOT, run_cli

sys.path.insert(0, str(ROOT / "fixtures"))
import planted  # noqa: E402

from precdoctor.core.formats import BF16, FP16, round_tf32  # noqa: E402


def test_every_target_sets_every_assumption_and_says_why():
    from precdoctor.numerics.constants import CONVERSIONS
    from precdoctor.numerics.emulation import PROFILES
    from precdoctor.numerics.recurrent import MODES
    from precdoctor.numerics.targets import DEFAULT_TARGET, TARGETS

    assert DEFAULT_TARGET in TARGETS and set(TARGETS) == {"trt-weak", "trt-strong", "ort-cuda"}
    for t in TARGETS.values():
        assert t.constants in CONVERSIONS and t.profile in PROFILES and t.recurrent in MODES and isinstance(t.tf32, bool)
        assert set(t.why) == {"constants", "profile", "recurrent", "tf32"} and all(t.why.values())
    assert TARGETS["trt-weak"].constants == "clamp" and TARGETS["trt-strong"].constants == "cast"


def test_overrides_change_one_assumption_each():
    from precdoctor.backends import EngineParams

    o = EngineParams(target="ort-cuda", profile="strict", tf32=False).options()
    assert (o.profile, o.recurrent, o.constants, o.tf32) == ("strict", "cudnn", "clamp", False)
    assert EngineParams().options().constants == "cast"  # the default target, trt-strong


# ---- constants

def test_clamp_and_cast_convert_constants_as_the_tools_do():
    from precdoctor.numerics.constants import convert

    a = np.array([1e-10, -1e-10, 7e4, -1e9, 0.0, -0.0, np.inf, np.nan, 1.0, 3e-8], np.float32)
    cast, clamp = convert(a, FP16, "cast"), convert(a, FP16, "clamp")
    assert list(cast[:4]) == [0.0, 0.0, np.inf, -np.inf]
    assert list(clamp[:4]) == [2.0**-24, -(2.0**-24), 65504.0, -65504.0]
    for c in (cast, clamp):
        assert c[4] == 0 and np.signbit(c[5]) and c[6] == np.inf and np.isnan(c[7]) and c[8] == 1.0
    assert clamp[9] == 2.0**-24  # below the smallest subnormal's half: a Cast flushes it, the builder holds it
    assert convert(np.array([1e-41], np.float32), BF16, "clamp")[0] == BF16.min_subnormal


def test_a_vanishing_floor_before_log_fails_under_cast_and_passes_under_clamp(planted_dir):
    """eps_underflow: Clip(min=1e-10) before Log. A Cast makes the floor 0 and silent frames give -inf; TensorRT's
    weakly typed builder clamps it to 5.96e-8, and Log stays finite."""
    model, sample = planted_dir / "eps_underflow.onnx", planted_dir / "eps_underflow.npz"
    code, out, _ = run_cli("compare", model, "--inputs", sample, "--target", "trt-strong")
    assert code == 1 and "non-finite" in out and "constants cast" in out
    code, out, _ = run_cli("compare", model, "--inputs", sample, "--target", "trt-weak")
    assert code == 0 and "constants clamp" in out
    code, out, _ = run_cli("compare", model, "--inputs", sample, "--target", "trt-strong", "--constants", "clamp")
    assert code == 0  # the override alone makes the difference


def _bisect(folder, name, out, *extra):
    """bisect NAME.onnx on NAME.npz into ``out``; (run.json, the summary)."""
    code, stdout, err = run_cli("bisect", folder / f"{name}.onnx", "--inputs", folder / f"{name}.npz", "--out", out, "--quiet",
                                "--no-baselines", *extra)
    assert code == 0, err
    return json.loads((out / "run.json").read_text()), stdout


def test_bisect_says_which_targets_fail_and_ships_clamped_constants(planted_dir, tmp_path):
    out = tmp_path / "eps"
    run, stdout = _bisect(planted_dir, "eps_underflow", out)
    assert run["target"] == "trt-strong" and run["pins"] == ["frontend/Clip", "frontend/Log"]
    naive = {t["target"]: t["naive"] for t in run["targets"]}
    assert naive == {"trt-strong": False, "trt-weak": True, "ort-cuda": True}
    assert all(t["plan"] for t in run["targets"])
    pins = json.loads((out / "pins.json").read_text())
    assert pins["target"] == "trt-strong" and pins["constants"].startswith("clamp") and "cast" in pins["assumptions"]
    assert "trt-weak: naive passes, this plan passes" in stdout and "target: trt-strong" in stdout
    html = (out / "index.html").read_text()
    assert "Targets" in html and "trt-weak" in html and "constants cast" in html
    mixed = onnx.load(out / "model.mixed.onnx")
    meta = {p.key: p.value for p in mixed.metadata_props}
    assert meta["precdoctor.constants"].startswith("clamp")
    # the floor read by a low node: frontend/Clip is pinned here, so check the shipped conversion itself on the naive plan
    from precdoctor.graph import open_model
    from precdoctor.numerics.mixed import mixed_model
    from precdoctor.planning.plan import Plan

    naive = mixed_model(open_model(planted_dir / "eps_underflow.onnx"), Plan("fp16")).model
    floor = next(i for i in naive.graph.initializer if i.name.startswith("frontend.floor"))
    assert numpy_helper.to_array(floor).dtype == np.float16 and float(numpy_helper.to_array(floor)) == 2.0**-24


def test_bisect_for_the_weak_builder_needs_no_pin_where_casts_would(planted_dir, tmp_path):
    run, _ = _bisect(planted_dir, "eps_underflow", tmp_path / "weak", "--target", "trt-weak", "--accept", "finite")
    assert run["verdict"] == "healthy" and run["target"] == "trt-weak"
    assert {t["target"]: t["naive"] for t in run["targets"]}["trt-strong"] is False
    assert "no node needs FP32 on target trt-weak; on trt-strong it fails" in (tmp_path / "weak" / "index.html").read_text()


def test_scan_judges_constants_as_the_target_converts_them(planted_dir):
    model, sample = planted_dir / "eps_underflow.onnx", planted_dir / "eps_underflow.npz"
    _, strong, _ = run_cli("scan", model, "--inputs", sample)
    _, weak, _ = run_cli("scan", model, "--inputs", sample, "--target", "trt-weak")
    assert "high      epsilon" in strong and "become 0 in FP16" in strong
    assert "low       epsilon" in weak and "clamped to 5.96e-08" in weak


# ---- TF32

def test_tf32_rounding_in_the_graph_matches_numpy():
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from precdoctor.graph import Namer
    from precdoctor.numerics.rounding import tf32_nodes

    nodes, inits = tf32_nodes("x", "y", 13, Namer(set()))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])], initializer=inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(100_000) * np.exp(rng.uniform(-30, 30, 100_000))).astype(np.float32)
    y = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    want = round_tf32(x)
    assert np.array_equal(y, want)
    assert np.all(np.abs(want - x) <= np.abs(x) * 2.0**-11)  # 10 explicit mantissa bits, round to nearest
    assert np.all(want.view(np.uint32) & 0x1FFF == 0)


def test_a_pinned_matmul_reads_tf32_inputs_when_the_target_computes_so():
    from precdoctor.numerics.emulation import EmulationOptions, emulation_model
    from precdoctor.graph import view
    from precdoctor.planning.plan import Plan

    fx = planted.tf32_offset()
    graph = view(fx.model)
    plan = Plan("fp16", frozenset(fx.culprits["fp16"]))
    from precdoctor.backends import ort

    def mm(tf32):
        m = emulation_model(graph, plan, EmulationOptions(tf32=tf32)).model
        del m.graph.output[:]
        m.graph.output.extend([onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None) for t in ("offset/add", "mix/MatMul")])
        return ort.session(m, graph_opt="none", weights=graph.store).run(None, fx.sample)

    (a, y_tf32), (_, y_fp32) = mm(True), mm(False)
    w = numpy_helper.to_array(next(i for i in fx.model.graph.initializer if i.name == "mix.weight"))
    np.testing.assert_allclose(y_tf32, round_tf32(a) @ round_tf32(w), rtol=1e-6, atol=1e-3)
    np.testing.assert_allclose(y_fp32, a @ w, rtol=1e-6, atol=1e-3)
    assert np.abs(y_tf32 - y_fp32).max() > 0.5  # x + 4000 in TF32: an ulp of 2


@pytest.fixture(scope="module")
def tf32_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tf32")
    fx = planted.tf32_offset()
    onnx.save(fx.model, d / "tf32_offset.onnx")
    np.savez(d / "tf32_offset.npz", **fx.sample)
    return d


def test_a_plan_that_needs_true_fp32_is_shipped_with_tf32_off(tf32_dir, tmp_path):
    model, sample = tf32_dir / "tf32_offset.onnx", tf32_dir / "tf32_offset.npz"
    pins = [a for p in planted.tf32_offset().culprits["fp16"] for a in ("--pin", p)]
    assert run_cli("compare", model, "--inputs", sample, *pins)[0] == 1  # the target computes the MatMul in TF32
    assert run_cli("compare", model, "--inputs", sample, *pins, "--no-tf32")[0] == 0
    out = tmp_path / "run"
    run, stdout = _bisect(tf32_dir, "tf32_offset", out)
    assert sorted(run["pins"]) == sorted(planted.tf32_offset().culprits["fp16"])
    assert run["tf32"]["checked"] and not run["tf32"]["allowed"] and run["tf32"]["islands"] == ["mix/MatMul"]
    assert json.loads((out / "pins.json").read_text())["tf32"] is False
    for name in ("trtexec.txt", "trtexec-11.txt", "verify-trt11.sh", "verify-trt10.sh"):
        assert "--noTF32" in (out / name).read_text(), name
    assert "--tf32" not in (out / "polygraphy.txt").read_text()  # Polygraphy's default is off
    assert "TF32: with TF32 in its FP32 islands the plan fails" in stdout


def test_a_plan_without_fp32_inner_products_keeps_tf32_on_and_says_so(planted_dir, tmp_path):
    out = tmp_path / "run"
    run, _ = _bisect(planted_dir, "ln_overflow", out)
    assert run["tf32"]["allowed"] and not run["tf32"]["checked"]
    assert "--noTF32" not in (out / "trtexec.txt").read_text() and "# TF32: on" in (out / "trtexec.txt").read_text()
    assert "--tf32" in (out / "polygraphy.txt").read_text()
    # the ORT-fused LayerNorm hides this failure: the naive plan passes only on ort-cuda
    assert {t["target"]: t["naive"] for t in run["targets"]} == {"trt-strong": False, "trt-weak": False, "ort-cuda": True}
    assert "on ort-cuda the naive plan already passes" in (out / "index.html").read_text()


def test_a_repeated_bisect_replays_the_other_targets_verdicts(planted_dir, tmp_path, monkeypatch):
    """The cross-target verdicts are journaled like the search's evaluations: the second run of the same bisect
    judges no plan under another target again (an emulation runner would raise), and says the same."""
    import precdoctor
    from precdoctor.pipelines.bisect import crosscheck

    args = dict(inputs=[planted_dir / "eps_underflow.npz"], baselines=False, report=False)
    first = precdoctor.bisect(planted_dir / "eps_underflow.onnx", tmp_path / "o", **args)
    lines = (tmp_path / "o" / "journal.targets.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 4  # header; naive and plan under trt-weak and ort-cuda (TF32: no FP32 inner product)

    class Refuses:
        def __init__(self, *a, **k):
            pass

        def runner(self, *a, **k):
            raise AssertionError("a target verdict was computed again")

    monkeypatch.setattr(crosscheck, "EmulationBackend", Refuses)
    again = precdoctor.bisect(planted_dir / "eps_underflow.onnx", tmp_path / "o", **args)
    assert [t.to_json() for t in again.targets] == [t.to_json() for t in first.targets]
    assert {t.target: t.naive for t in again.targets} == {"trt-strong": False, "trt-weak": True, "ort-cuda": True}

"""Every model family (fixtures/families.py): compare verdicts and origins, bisect's minimal pins within the bound,
mixed ONNX checked and run, odd containers run or refused in one line."""
import json

import numpy as np
import onnx
import pytest

import precdoctor
from helpers import run_cli
from precdoctor.backends import EngineParams, ort
from precdoctor.core.errors import BadInput
from precdoctor.graph import open_model
from precdoctor.core.limits import MOSTLY_FP32_SHARE
from precdoctor.numerics.mixed import check, mixed_model
from precdoctor.planning.plan import Plan

pytestmark = pytest.mark.slow  # every family compared, bisected and checked in both formats

FAMILIES = ["lstm_single", "lstm_scaled_input", "lstm_head", "gru_bidi2", "gru_inter_scale", "crnn_bilstm",
            "crnn_bilstm_input_overflow", "streaming_gru", "streaming_softmax_overflow", "scan_integrator",
            "scan_accumulator_overflow", "stft_logpower", "stft_log_then_floor", "stft_floor_vanishes", "stft_power_drift",
            "stft_offset_bf16", "if_resample", "if_resample_branch_overflow", "if_nested", "if_nested_branch_overflow",
            "odd_ir3_init_inputs", "odd_sparse_initializer", "odd_opset7", "odd_opset8", "odd_ir_too_new", "odd_wrong_output_shape"]
PLANTED = [n for n in FAMILIES if n.endswith(("_input", "_scale", "_overflow", "_vanishes", "_drift", "_bf16"))]


def _compare(family_dir, name, prec, **kw):
    return precdoctor.compare(family_dir / f"{name}.onnx", precision=prec, inputs=[family_dir / f"{name}.npz"], **kw).comparison


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_compare_verdict_and_origin(name, prec, family_dir, family_expected):
    exp = family_expected[name]
    c = _compare(family_dir, name, prec)
    if prec in exp["healthy"]:
        assert c.verdict == "ok", c.reasons
    if prec in exp["culprits"]:
        assert c.verdict == "diverges"
        want = exp["origin"][prec]
        assert (c.origin or c.first_divergence) == want  # None for the gradual drift: no node jumps
    assert all(cov.analysed for cov in c.control_flow)  # every If/Loop/Scan said to be analysed tensor by tensor


def test_body_tensors_are_compared_under_their_body_node(family_dir):
    scan = _compare(family_dir, "scan_integrator", "fp16")
    s = scan.tensor("s_next")  # the carried sum, [1, 1] per step: 64 instances summed
    assert s.node == "/integrator/body/Add" and s.elements == 64
    assert [c.detail for c in scan.control_flow] == ["unrolled: 64 steps (1 sample(s))"]
    branch = _compare(family_dir, "if_resample", "fp16")
    assert branch.of_node("/resample/down2/Conv") is not None and branch.of_node("/resample/pass/Identity") is None


@pytest.mark.parametrize("name", PLANTED)
def test_bisect_finds_the_planted_pins_within_the_bound(name, family_dir, family_expected, tmp_path):
    exp = family_expected[name]
    prec, want = next(iter(exp["culprits"].items()))
    r = precdoctor.bisect(family_dir / f"{name}.onnx", tmp_path, precision=prec, inputs=[family_dir / f"{name}.npz"],
                          baselines=False, report=False)
    # a model whose minimal fix is (nearly) all of it (lstm_scaled_input: its 2 nodes) is the FP32 model: mostly-fp32
    whole = len(want) >= MOSTLY_FP32_SHARE * r.candidates
    assert r.verdict == ("mostly-fp32" if whole else "fixed") and sorted(r.pins) == sorted(want) and r.one_minimal
    assert r.evaluations <= r.evaluation_bound and r.bound_note is None
    pins = json.loads((tmp_path / "pins.json").read_text())
    assert sorted(pins["pins"]) == sorted(want)
    mixed = onnx.load(str(tmp_path / "model.mixed.onnx"))
    onnx.checker.check_model(mixed, full_check=True)
    if prec == "fp16":  # ONNX Runtime CPU has no BF16 kernels for most ops
        sample = dict(np.load(family_dir / f"{name}.npz"))
        out = ort.run(ort.session(mixed, graph_opt="none"), sample)
        assert all(np.isfinite(v).all() for v in out.values() if v.dtype.kind == "f")


@pytest.mark.parametrize("name", FAMILIES)
def test_mixed_onnx_passes_full_check_and_runs(name, family_dir, family_expected):
    graph = open_model(family_dir / f"{name}.onnx")
    sample = dict(np.load(family_dir / f"{name}.npz"))
    for prec in ("fp16", "bf16"):
        m = mixed_model(graph, Plan(prec, frozenset(family_expected[name]["culprits"].get(prec, [])))).model
        check(m)
        if prec == "fp16":
            got = ort.run(ort.session(m, graph_opt="none"), sample)
            assert set(got) == set(graph.outputs)


def test_recurrent_step_emulation_is_selectable_and_recorded(family_dir):
    """State rounded at every step: more error than rounding the op's outputs only, on the same GRU."""
    steps = _compare(family_dir, "gru_bidi2", "fp16")
    op = _compare(family_dir, "gru_bidi2", "fp16", engine=EngineParams(recurrent="op"))
    assert steps.outputs["output"].metrics.rel_l2 > 1.3 * op.outputs["output"].metrics.rel_l2
    r = precdoctor.compare(family_dir / "gru_bidi2.onnx", inputs=[family_dir / "gru_bidi2.npz"], engine=EngineParams(recurrent="cudnn"))
    assert r.engine.recurrent == "cudnn"


def test_scan_sees_inside_if_bodies(family_dir):
    r = precdoctor.scan(family_dir / "if_nested_branch_overflow.onnx", inputs=[family_dir / "if_nested_branch_overflow.npz"])
    assert any(k.kind == "range" and k.node == "/model/encoder/resample/down2/Mul" for k in r.risks)
    assert [c.node for c in r.control_flow] == ["/model/If", "/model/encoder/resample/If"] and all(c.analysed for c in r.control_flow)


def test_drift_is_localized_by_range_findings(family_dir, tmp_path):
    """No node jumps; the FP32 ranges (flush to zero before a Log, subnormal values) name the culprits."""
    code, out, _ = run_cli("bisect", family_dir / "stft_power_drift.onnx", "--inputs", family_dir / "stft_power_drift.npz",
                           "--out", tmp_path, "--no-report")
    r = json.loads((tmp_path / "run.json").read_text())
    assert code == 0 and r["evaluations"] <= r["evaluation_bound"] and "BOUND EXCEEDED" not in out
    assert {"/frontend/power/Mul", "/frontend/power/Add"} <= set(r["suspects"])


@pytest.mark.parametrize("name", ["odd_ir3_init_inputs", "odd_sparse_initializer", "odd_ir_too_new", "odd_wrong_output_shape"])
def test_odd_containers_run(name, family_dir, family_expected, tmp_path):
    """Each odd container (initializers as inputs, sparse initializers, an IR newer than the runtime, a wrong declared
    output shape) is compared like any model: every node's output and every graph output at the shape FP32 computes."""
    model = onnx.load(family_dir / f"{name}.onnx")
    feed = dict(np.load(family_dir / f"{name}.npz"))
    fixed = onnx.load(family_dir / f"{name}.onnx")
    fixed.ir_version = min(fixed.ir_version, 8)  # what the runtime reads (odd_ir_too_new is otherwise valid)
    ref = ort.session(fixed).run(None, feed)
    for prec in ("fp16", "bf16"):
        out_json = tmp_path / f"{prec}.json"
        code, out, err = run_cli("compare", family_dir / f"{name}.onnx", "--inputs", family_dir / f"{name}.npz", "--precision", prec,
                                 "--json", out_json)
        assert code == 0, err
        r = json.loads(out_json.read_text())
        assert r["verdict"] == "ok" and r["nodes"] == family_expected[name]["nodes"]
        assert {t["node"] for t in r["comparison"]["tensors"]} == {n.name for n in model.graph.node}
        outputs = r["comparison"]["outputs"]
        assert list(outputs) == family_expected[name]["outputs"]
        assert [outputs[o]["elements"] for o in outputs] == [a.size for a in ref]


def test_opset_7_and_8_in_bf16_round_without_where(family_dir):
    for name in ("odd_opset7", "odd_opset8"):
        graph = open_model(family_dir / f"{name}.onnx")
        from precdoctor.numerics.emulation import emulation_model

        emu = emulation_model(graph, Plan("bf16")).model
        assert not any(n.op_type == "Where" for n in emu.graph.node)
        assert _compare(family_dir, name, "bf16").verdict == "ok"


def test_ir_newer_than_any_runtime_reads_is_refused_in_one_line(tmp_path):
    from onnx import helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [helper.make_tensor_value_info("x", 1, [2])],
                          [helper.make_tensor_value_info("y", 1, [2])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", onnx.defs.onnx_opset_version())])
    m.ir_version = onnx.IR_VERSION
    from precdoctor.graph.containers import needed_ir, runtime_max_ir

    if needed_ir(m) <= (runtime_max_ir() or 10**6):
        pytest.skip("the installed onnxruntime reads this onnx's newest IR")
    onnx.save(m, tmp_path / "new.onnx")
    code, out, err = run_cli("compare", tmp_path / "new.onnx", "--input-shapes", "x:[2]")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "export with opset <=" in err
    with pytest.raises(BadInput):
        open_model(tmp_path / "new.onnx")


def test_artifacts_pin_what_the_schema_keeps_fp32(family_dir, tmp_path):
    """BF16 at opset 17: no bfloat16 Conv. The verified plan computes the Convs in FP32, so every artifact pins them,
    and pins.json lists them apart from the searched pins."""
    r = precdoctor.bisect(family_dir / "stft_offset_bf16.onnx", tmp_path, precision="bf16", inputs=[family_dir / "stft_offset_bf16.npz"],
                          baselines=False, report=False)
    convs = {"/frontend/stft/Conv", "/frontend/stft/Conv_1", "/encoder/conv0/Conv", "/encoder/conv1/Conv"}
    pins = json.loads((tmp_path / "pins.json").read_text())
    assert set(pins["forced"]) == convs and not convs & set(pins["pins"]) and set(r.artifacts.forced) == convs
    for f, spelled in (("trtexec.txt", "{}:fp32"), ("polygraphy.txt", "{}:float32"), ("autocast.txt", "'^{}")):
        text = (tmp_path / f).read_text()
        assert all(spelled.format(n) in text for n in convs | set(r.pins)), f
    mixed = onnx.load(str(tmp_path / "model.mixed.onnx"))
    types = {vi.name: vi.type.tensor_type.elem_type for vi in onnx.shape_inference.infer_shapes(mixed).graph.value_info}
    conv_outputs = [n.output[0] for n in mixed.graph.node if n.name in convs]
    assert conv_outputs and all(types[o] == onnx.TensorProto.FLOAT for o in conv_outputs)


def test_nan_heavy_candidate_needs_no_second_pass(family_dir, monkeypatch):
    """Probed in the graph (nothing fetched), a candidate full of NaN is measured by the fast pass itself,
    with the same non-finite counts as numpy finds; only the one tensor whose FP32 reference leaves the
    FP16 range is probed again (for its overflow count)."""
    fetched = _compare(family_dir, "crnn_bilstm_input_overflow", "fp16")
    monkeypatch.setattr("precdoctor.backends.paired.FETCH_ELEMENTS", -1)
    probed = _compare(family_dir, "crnn_bilstm_input_overflow", "fp16")
    assert [n for n in probed.notes if "re-probed" in n] == ["1 tensor(s) re-probed in full (FP32 reference not finite or out of range)"]
    assert probed.tensor("/rnn/reverse/input_proj/Mul").overflow == fetched.tensor("/rnn/reverse/input_proj/Mul").overflow == 263
    assert probed.origin == fetched.origin == "/rnn/reverse/input_proj/Mul"
    assert [t.nonfinite_new for t in probed.tensors] == [t.nonfinite_new for t in fetched.tensors]
    assert sum(t.nonfinite_new > 0 for t in probed.tensors) > 400


def test_multi_output_nodes_get_unique_generated_names(family_dir):
    from precdoctor.numerics.emulation import EmulationOptions, emulation_model

    graph = open_model(family_dir / "lstm_single.onnx")  # Y, Y_h, Y_c: three Cast pairs on one node
    emu = emulation_model(graph, Plan("fp16"), EmulationOptions(recurrent="op")).model
    names = [n.name for n in emu.graph.node]
    assert len(names) == len(set(names)) and sum(n.op_type == "Cast" for n in emu.graph.node) == 2 * (1 + 3)  # x in, 3 out

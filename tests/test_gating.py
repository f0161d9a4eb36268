"""The plan as a runtime input (gating.py): one emulation session for every plan of a search, bit for bit the
per-plan graphs (emulation.py) on every planted fixture and model family, bodies and recurrent ops included."""
import families
import onnx
import numpy as np
import planted
import pytest
from helpers import run_cli

from precdoctor.backends import ort
from precdoctor.backends.emulate import EmulationBackend
from precdoctor.numerics.emulation import EmulationOptions
from precdoctor.core.errors import BadInput
from precdoctor.numerics.gating import gated_model
from precdoctor.graph import view
from precdoctor.planning.plan import Plan

OPTIONS = [EmulationOptions(), EmulationOptions(profile="strict"),
           EmulationOptions(profile="ort-fused", recurrent="cudnn", constants="clamp"), EmulationOptions(tf32=True, recurrent="op")]
PLANTED = sorted(planted.ALL) + ["tf32_offset"]  # tf32_offset: built apart, its fault shows only under TF32
MODELS = PLANTED + sorted(families.ALL)


def _same(a, b) -> bool:
    """Bit for bit (NaN as NaN: a Cast pair may change a NaN's payload, no judge reads it)."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.kind != "f":
        return np.array_equal(a, b)
    na, nb = np.isnan(a), np.isnan(b)
    return np.array_equal(na, nb) and np.array_equal(a[~na].view(np.uint32), b[~nb].view(np.uint32))


def _build(name):
    return getattr(planted, name)() if name in PLANTED else families.ALL[name]()


def _plans(fx, names, rng):
    picks = [frozenset(), frozenset(names), frozenset(rng.choice(names, len(names) // 3, replace=False)),
             frozenset(rng.choice(names, max(1, len(names) // 10), replace=False))]
    return picks + [frozenset(v) for v in fx.culprits.values()]


@pytest.mark.parametrize("name", MODELS)
def test_gated_session_equals_per_plan_graphs_bitwise(name):
    fx = _build(name)
    try:
        g = view(fx.model)
    except BadInput:
        pytest.skip("refused at load, before any emulation (test_families covers the message)")
    names = [n.name for n in g.all_nodes()]
    rng = np.random.default_rng(len(name))
    checked = 0
    for options in OPTIONS:
        backend = EmulationBackend(options)
        runners = backend.runners(g, [fx.sample])
        for precision in ("fp16", "bf16"):
            for pins in _plans(fx, names, rng):
                plan = Plan(precision, pins)
                try:
                    want = backend.runner(g, plan, [fx.sample])(fx.sample)
                except BadInput:  # the per-plan graph does not run either (an IR-3 model's BF16 constants): nothing to equal
                    continue
                got = runners(plan)(fx.sample)
                assert list(got) == list(want)
                for out in want:
                    assert _same(got[out], want[out]), (name, options, precision, sorted(pins), out)
                checked += 1
    assert checked
    assert set(runners.gated) == {"fp16", "bf16"}  # one gated model per format served every plan


def test_one_session_serves_every_plan(monkeypatch):
    fx = planted.ln_overflow()
    g = view(fx.model)
    built = []
    real = ort.session
    monkeypatch.setattr(ort, "session", lambda *a, **k: built.append(1) or real(*a, **k))
    runners = EmulationBackend().runners(g, [fx.sample])
    names = [n.name for n in g.all_nodes()]
    outs = [runners(Plan("fp16", frozenset(names[:k])))(fx.sample) for k in range(0, len(names), max(1, len(names) // 6))]
    assert len(built) == 1
    assert len(outs) >= 6
    assert not all(_same(outs[0][o], outs[-1][o]) for o in outs[0])  # the plans did change what was computed


def test_gates_no_plan_can_open_are_folded():
    """A node the schema keeps FP32 in every plan (Conv has no bfloat16 before opset 22) reads its weights as they
    are, no select; in FP16 the same node selects its weight per plan."""
    fx = families.ALL["stft_logpower"]()
    g = view(fx.model)
    convs = [n for n in g.nodes if n.op_type == "Conv"]
    for fmt, selected in (("bf16", False), ("fp16", True)):
        gm = gated_model(g, Plan(fmt).format)
        by_name = {n.name: n for n in gm.model.graph.node}
        for conv in convs:
            assert (by_name[conv.name].input[1] != conv.input[1]) == selected, (fmt, conv.name)
            assert any(conv.name in gate.any_low for gate in gm.gates) == selected
        assert gm.vector(Plan(fmt)).all()  # the naive plan opens every gate left


@pytest.mark.parametrize("name", ["if_resample", "scan_integrator"])
def test_pinned_control_flow_node_computes_tf32_inside_its_bodies(name):
    """Pinning a control-flow node pins its body nodes: under TF32 their inner products round their inputs, as
    when each body node is pinned by name (the per-plan rewrite copied a pinned control-flow node verbatim)."""
    fx = families.ALL[name]()
    g = view(fx.model)
    cf = [n.name for n in g.nodes if n.op_type in ("If", "Loop", "Scan")]
    inside = set(g.bodies.nodes)
    backend = EmulationBackend(EmulationOptions(tf32=True))
    by_cf = backend.runner(g, Plan("fp16", frozenset(cf)), [fx.sample])(fx.sample)
    by_name = backend.runner(g, Plan("fp16", frozenset(cf) | inside), [fx.sample])(fx.sample)
    no_tf32 = EmulationBackend(EmulationOptions()).runner(g, Plan("fp16", frozenset(cf)), [fx.sample])(fx.sample)
    assert all(_same(by_cf[o], by_name[o]) for o in by_cf)
    assert not all(_same(by_cf[o], no_tf32[o]) for o in by_cf)


def test_device_cuda_without_a_cuda_runtime_is_one_line_exit_2(planted_dir, tmp_path):
    """--device cuda (ONNX Runtime's CUDA provider, not run here) asks for onnxruntime-gpu before any work."""
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("a CUDA provider is present: the GPU path runs instead")
    code, _, err = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                           "--out", tmp_path / "o", "--device", "cuda")
    assert code == 2 and "--device cuda needs onnxruntime-gpu" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()
    code, _, err = run_cli("compare", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                           "--backend", "ort-cuda", "--device", "cuda")
    assert code == 2 and "--device places the emulation" in err


def _free_first_axis(model):
    for vi in list(model.graph.input) + list(model.graph.output):
        vi.type.tensor_type.shape.dim[0].dim_param = "batch"
    return model


def test_samples_of_one_shape_run_as_one_batch_where_the_first_axis_is_free():
    fx = planted.two_culprits()
    g = view(_free_first_axis(fx.model))
    rng = np.random.default_rng(1)
    samples = [{k: (v * rng.uniform(0.5, 1.5, v.shape)).astype(v.dtype) for k, v in fx.sample.items()} for _ in range(3)]
    backend = EmulationBackend()
    runners = backend.runners(g, samples)
    names = [n.name for n in g.all_nodes()]
    for pins in (frozenset(), frozenset(fx.culprits["fp16"]), frozenset(names[::3])):
        plan = Plan("fp16", pins)
        got = runners.outputs(plan)
        alone = backend.runner(g, plan, samples)
        for s, out in zip(samples, got):
            want = alone(s)
            assert all(_same(out[o], want[o]) for o in want)
    assert runners.batches == {"fp16": True}


def test_a_first_axis_the_graph_fixes_is_not_batched():
    """wav2vec2.py reshapes to [1, -1, heads, dh]: declared dynamic, the batch is not free; the outputs say so."""
    import wav2vec2

    g = view(_free_first_axis(wav2vec2.build(wav2vec2.Config())))
    rng = np.random.default_rng(2)
    samples = [{"input_values": rng.standard_normal((1, 4000)).astype(np.float32)} for _ in range(2)]
    runners = EmulationBackend().runners(g, samples)
    got = runners.outputs(Plan("fp16"))
    assert runners.batches == {"fp16": False}
    alone = EmulationBackend().runner(g, Plan("fp16"), samples)
    assert all(_same(out["logits"], alone(s)["logits"]) for s, out in zip(samples, got))
    static = EmulationBackend().runners(view(planted.two_culprits().model), [planted.two_culprits().sample] * 2)
    static.outputs(Plan("fp16"))
    assert static.batches == {"fp16": False}  # a first axis fixed at 1 in the model: not tried


@pytest.mark.parametrize("name", ["two_culprits", "residual_overflow", "softmax_overflow"])
def test_bisect_on_the_gated_session_writes_the_per_plan_runs_record_and_journal(name, planted_dir, tmp_path, monkeypatch):
    """The search's evaluations on one gated session: the same pins, verdicts, measures, journal (its fingerprint
    included) and run record as with a model and session per plan."""
    import json

    import precdoctor
    from precdoctor.backends import Backend

    def run(out):
        precdoctor.bisect(planted_dir / f"{name}.onnx", out, inputs=[planted_dir / f"{name}.npz"], baselines=False, report=False)
        record = json.loads((out / "run.json").read_text())
        record.pop("timing")
        for e in record["evaluation_log"]:
            e.pop("seconds")
        journal = [{k: v for k, v in json.loads(ln).items() if k != "seconds"} for ln in (out / "journal.jsonl").read_text().splitlines()]
        return json.dumps(record, sort_keys=True).replace(str(out), "OUT"), journal

    built = []
    monkeypatch.setattr("precdoctor.backends.emulate.gated_model", lambda *a, **k: built.append(1) or gated_model(*a, **k))
    gated = run(tmp_path / "gated")
    assert built  # the search ran on the gated model
    monkeypatch.setattr(EmulationBackend, "runners", Backend.runners)
    per_plan = run(tmp_path / "per-plan")
    assert gated == per_plan


def test_the_cheaper_of_gated_and_per_plan_serves_the_search():
    """One per-plan evaluation, a gated build and a gated pass are timed; the cheaper serves the rest."""
    from precdoctor.backends.emulate import Choice

    for per_plan, gated_pass, want in ((1.0, 0.5, "gated"), (1.0, 1.5, "per-plan")):
        c = Choice()
        assert c.pick() == "per-plan"
        c.took("per-plan", per_plan)
        assert c.pick() == "gated"
        c.took("gated", 9.0)  # the build
        assert c.pick() == "gated"
        c.took("gated", gated_pass)
        assert c.pick() == want and c.chosen == want


@pytest.mark.parametrize("with_past", [False, True])
def test_a_merged_decoder_whose_weights_live_in_its_branches_is_gated_bit_for_bit(tmp_path, with_past):
    """optimum's merged decoder: one If whose branches hold the weights as their own initializers. The gated model
    made their rounding and selects in the outer graph, which does not see them, and ONNX Runtime refused it."""
    import toy_decoders

    toy_decoders.write(tmp_path)
    g = view(onnx.load(tmp_path / "decoder_model_merged.fault.onnx"))
    rng = np.random.default_rng(3)
    past = 2 if with_past else 0
    feed = {"input_ids": np.array([[1, 2]] if not with_past else [[3]], np.int64),
            "encoder_hidden_states": rng.standard_normal((1, 6, 8)).astype(np.float32),
            "past_key_values.0.decoder.key": rng.standard_normal((1, 1, past, 8)).astype(np.float32),
            "past_key_values.0.encoder.key": rng.standard_normal((1, 1, 6 if with_past else 0, 8)).astype(np.float32),
            "use_cache_branch": np.array([with_past])}
    backend = EmulationBackend()
    runners = backend.runners(g, [feed])
    names = [n.name for n in g.all_nodes()]
    for pins in (frozenset(), frozenset(names), frozenset(names[::3])):
        plan = Plan("fp16", pins)
        want = backend.runner(g, plan, [feed])(feed)
        got = runners(plan)(feed)
        assert all(_same(got[o], want[o]) for o in want), sorted(pins)


def test_the_memory_budget_bounds_a_batch_and_the_outputs_stay_each_samples_own():
    """A batched pass takes as many samples as the budget's live activations allow (at least one), never more."""
    fx = planted.two_culprits()
    g = view(_free_first_axis(fx.model))
    rng = np.random.default_rng(3)
    samples = [{k: (v * rng.uniform(0.5, 1.5, v.shape)).astype(v.dtype) for k, v in fx.sample.items()} for _ in range(5)]
    roomy = EmulationBackend().runners(g, samples)
    from precdoctor.core.limits import BATCH_SAMPLES

    assert roomy.batch_limit(samples[0]) == BATCH_SAMPLES  # the default budget holds a full batch of these
    from precdoctor.graph import concrete_sizes, peak_activation_elements

    one = 4 * 3 * peak_activation_elements(g, concrete_sizes(g, samples[0]))
    tight = EmulationBackend(memory_budget_gb=2.5 * one / 2**30).runners(g, samples)
    assert tight.batch_limit(samples[0]) == 2
    starved = EmulationBackend(memory_budget_gb=1e-12).runners(g, samples)
    assert starved.batch_limit(samples[0]) == 1
    plan = Plan("fp16", frozenset(fx.culprits["fp16"]))
    want = roomy.outputs(plan)
    for runners in (tight, starved):
        got = runners.outputs(plan)
        assert all(_same(a[o], b[o]) for a, b in zip(got, want) for o in a)


def test_a_free_batch_axis_is_used_only_where_a_batch_gives_each_samples_own_bits():
    """fixtures/wav2vec2.py --batch: the Reshapes copy the batch axis (shape value 0), as transformers' exports do, and
    the batch runs; on ONNX Runtime CPU its convolutions then accumulate in another order and the rounded outputs move
    (0.0078 measured), so the batch is refused by value and the outputs stay those of the samples run alone."""
    import wav2vec2

    from precdoctor.backends.emulate import _split, _stack

    g = view(wav2vec2.build(wav2vec2.Config(batch=True)))
    rng = np.random.default_rng(2)
    samples = [{"input_values": rng.standard_normal((1, 4000)).astype(np.float32)} for _ in range(3)]
    alone = EmulationBackend().runner(g, Plan("fp16"), samples)
    batched = _split(alone(_stack(samples[:2])), samples[:2])  # the model takes the batch: the axis is free
    exact = all(_same(b["logits"], alone(s)["logits"]) for s, b in zip(samples, batched))
    runners = EmulationBackend().runners(g, samples)
    got = runners.outputs(Plan("fp16"))
    assert runners.batches == {"fp16": exact}
    assert all(_same(out["logits"], alone(s)["logits"]) for s, out in zip(samples, got))

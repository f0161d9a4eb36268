"""bisect --fix rewrite|auto: each family on a model built in fixtures/, verified like pins (FP32 equivalence,
acceptance in the low format, necessity, evaluations), the artifacts with no FP32 node, and the fall-back to pins."""
import json
import random
import sys

import numpy as np
import onnx
import pytest
from helpers import ROOT, run_cli
from onnx import TensorProto

from precdoctor.rewrite import FP32_TOLERANCE

sys.path.insert(0, str(ROOT / "fixtures"))
import rewrites

PLANTED = {  # planted fixture -> the family that rewrites it in FP16
    "ln_overflow": "norm-scale", "softmax_overflow": "softmax", "eps_underflow": "floor", "residual_overflow": "residual-scale",
}


@pytest.fixture(scope="module")
def rewrite_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("rewrites")
    rewrites.write(out)
    return out


def _bisect(folder, name, out, *extra, precision="fp16"):
    code, stdout, err = run_cli("bisect", folder / f"{name}.onnx", "--inputs", folder / f"{name}.npz", "--precision", precision,
                                "--out", out, "--quiet", "--no-baselines", *extra)
    return code, json.loads((out / "run.json").read_text()), stdout


def _low_everywhere(path) -> bool:
    """Every node of the mixed ONNX computes in FP16 but the Casts at the graph's inputs and outputs."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    types = {v.name: v.type.tensor_type.elem_type for v in list(m.graph.value_info) + list(m.graph.output) + list(m.graph.input)}
    io = {i.name for i in m.graph.input} | {o.name for o in m.graph.output}
    for n in m.graph.node:
        if n.op_type == "Cast" and (set(n.input) & io or set(n.output) & io):
            continue
        if any(types.get(o) == TensorProto.FLOAT for o in n.output):
            return False
    return True


def _verified(r, out, families):
    w = r["rewrite"]
    assert r["verdict"] == "fixed" and w["status"] == "fixed" and w["pins"] == []
    assert sorted(c["rewrite"]["family"] for c in w["rewrites"]) == sorted(families)
    assert max(w["fp32_outputs"].values()) <= FP32_TOLERANCE
    assert all(c["fp32_max_rel"] <= FP32_TOLERANCE for c in w["rewrites"] if c["rewrite"]["exact"])
    assert w["fp32_tensors"] and all(c["without"] for c in w["rewrites"])  # matched tensors compared; each one necessary
    assert w["evaluations"] >= len(w["evaluation_log"]) >= 1 and w["cost"]["fp32_nodes"] == 0
    assert all(c["pins"] and c["pin_cost"]["fp32_nodes"] == len(c["pins"]) for c in w["rewrites"])
    assert _low_everywhere(out / w["files"]["mixed_onnx"])
    flags = (out / w["files"]["trtexec"]).read_text()
    assert "--fp16" in flags and "--layerPrecisions" not in flags and "model.rewritten.onnx" in flags
    assert r["pins"]  # the pin alternative stays in the run, beside the rewrite
    assert [t["target"] for t in w["targets"] if t["own"]] == [r["target"]] and all(t["plan"] for t in w["targets"])
    # the run file reads back: a rewrite that removes nodes has a negative net cost, which the record must accept
    code, _, err = run_cli("report", out / "run.json", "-o", out / "again.html")
    assert code == 0, err
    assert (out / "again.html").read_bytes() == (out / "index.html").read_bytes()


@pytest.mark.parametrize("name", sorted(PLANTED))
def test_planted_fixed_with_zero_fp32_nodes(name, planted_dir, tmp_path):
    code, r, stdout = _bisect(planted_dir, name, tmp_path, "--fix", "rewrite")
    assert code == 0, stdout
    _verified(r, tmp_path, [PLANTED[name]])


@pytest.mark.parametrize("name", ["rms_overflow", "exp_activations", "log_eps", "log_eps_wide", "softmax_inner_axis"])
def test_family_fixtures_fixed_exactly(name, rewrite_dir, tmp_path):
    code, r, stdout = _bisect(rewrite_dir, name, tmp_path, "--fix", "rewrite")
    assert code == 0, stdout
    want = rewrites.REWRITES[name]
    _verified(r, tmp_path, [f for f, _, _ in want])
    ops = {n.op_type for n in onnx.load(str(tmp_path / "model.rewritten.onnx")).graph.node}
    assert {op for _, op, _ in want} <= ops


def test_two_culprits_need_both_rewrites(planted_dir, tmp_path):
    code, r, _ = _bisect(planted_dir, "two_culprits", tmp_path, "--fix", "rewrite")
    _verified(r, tmp_path, ["softmax", "norm-scale"])
    assert len(r["rewrite"]["evaluation_log"]) >= 3  # both together, then each one dropped


def test_changed_constant_is_stated_and_judged(rewrite_dir, tmp_path):
    code, r, _ = _bisect(rewrite_dir, "l2norm_eps", tmp_path, "--fix", "rewrite")
    w = r["rewrite"]
    assert code == 0 and w["status"] == "fixed"
    (c,) = w["rewrites"]
    assert not c["rewrite"]["exact"] and "changed" in c["rewrite"]["summary"] and "6.1e-05" in c["rewrite"]["summary"]
    assert c["without"] and "changed" in w["message"]


def test_layernorm_fusion_alternative_depends_on_the_engine(planted_dir, tmp_path):
    _, r, _ = _bisect(planted_dir, "ln_overflow", tmp_path, "--fix", "rewrite")
    (alt,) = r["rewrite"]["alternatives"]
    assert alt["rewrite"]["family"] == "layernorm-fusion" and alt["fp32_max_rel"] <= FP32_TOLERANCE
    assert alt["passes"] == {"fused": True, "strict": False}  # FP32 inside: fine; built from FP16 primitives: overflows


def test_strict_profile_refuses_the_stream_scale_its_norms_cannot_hold(planted_dir, tmp_path):
    _, fused, _ = _bisect(planted_dir, "residual_overflow", tmp_path / "fused", "--fix", "rewrite")
    code, strict, _ = _bisect(planted_dir, "residual_overflow", tmp_path / "strict", "--fix", "rewrite", "--profile", "strict")
    assert fused["rewrite"]["status"] == "fixed" and fused["rewrite"]["rewrites"][0]["rewrite"]["params"]["exponent"] < 0
    # built from FP16 primitives, the final LayerNormalization's epsilon scaled by 2^-24 is 0: a zero row gives 0/0
    assert code == 1 and strict["rewrite"]["status"] == "refused" and "epsilon 5.96046e-13 is 0" in strict["rewrite"]["message"]


def test_auto_rewrites_what_it_covers_and_pins_the_rest(rewrite_dir, tmp_path):
    code, r, _ = _bisect(rewrite_dir, "partial_cover", tmp_path, "--fix", "auto")
    w = r["rewrite"]
    assert code == 0 and r["verdict"] == "fixed" and w["status"] == "partial"
    assert [c["rewrite"]["family"] for c in w["rewrites"]] == ["softmax"] and w["rewrites"][0]["without"]
    assert 0 < len(w["pins"]) < len(r["pins"]) and all(p.startswith("energy/") for p in w["pins"])
    assert w["cost"]["fp32_nodes"] == len(w["pins"]) < w["pins_cost"]["fp32_nodes"]
    assert "--layerPrecisions" in (tmp_path / w["files"]["trtexec"]).read_text()


def test_auto_falls_back_to_pins_where_no_rewrite_applies(planted_dir, tmp_path):
    code, r, _ = _bisect(planted_dir, "bf16_precision", tmp_path, "--fix", "auto", precision="bf16")
    assert code == 0 and r["verdict"] == "fixed" and r["rewrite"]["status"] == "none"
    assert sorted(r["pins"]) == ["offset/add", "offset/sub"] and "falls back to the pins" in r["message"]
    assert not (tmp_path / "model.rewritten.onnx").exists()
    code, r, _ = _bisect(planted_dir, "bf16_precision", tmp_path / "rw", "--fix", "rewrite", precision="bf16")
    assert code == 1 and r["verdict"] == "unfixed" and r["pins"]  # --fix rewrite stands or falls with the rewrites


def _renamed(model: onnx.ModelProto, seed: int) -> onnx.ModelProto:
    """Every node and internal tensor renamed at random: a matcher keyed on names finds nothing."""
    rng = random.Random(seed)
    keep = {i.name for i in model.graph.input} | {o.name for o in model.graph.output}
    names = {t for n in model.graph.node for t in list(n.input) + list(n.output) if t and t not in keep}
    names |= {i.name for i in model.graph.initializer}
    new = {t: f"t{rng.randrange(10**9)}_{k}" for k, t in enumerate(sorted(names))}
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for n in m.graph.node:
        n.name = f"n{rng.randrange(10**9)}"
        n.input[:] = [new.get(i, i) for i in n.input]
        n.output[:] = [new.get(o, o) for o in n.output]
    for i in m.graph.initializer:
        i.name = new[i.name]
    return m


@pytest.mark.parametrize("name", ["two_culprits", "exp_activations"])
def test_matched_by_structure_not_names(name, planted_dir, rewrite_dir, tmp_path):
    folder = planted_dir if name == "two_culprits" else rewrite_dir
    onnx.save(_renamed(onnx.load(str(folder / f"{name}.onnx")), 7), tmp_path / f"{name}.onnx")
    (tmp_path / f"{name}.npz").write_bytes((folder / f"{name}.npz").read_bytes())
    _, original, _ = _bisect(folder, name, tmp_path / "a", "--fix", "rewrite")
    _, renamed, _ = _bisect(tmp_path, name, tmp_path / "b", "--fix", "rewrite")
    def fams(r):
        return sorted(c["rewrite"]["family"] for c in r["rewrite"]["rewrites"])

    assert renamed["rewrite"]["status"] == "fixed" and fams(renamed) == fams(original)


def test_rewritten_model_runs_the_same_in_fp32(planted_dir, tmp_path):
    from precdoctor.backends import ort

    _bisect(planted_dir, "two_culprits", tmp_path, "--fix", "rewrite")
    x = dict(np.load(planted_dir / "two_culprits.npz"))
    a = ort.run(ort.session(onnx.load(str(planted_dir / "two_culprits.onnx"))), x)["logits"]
    b = ort.run(ort.session(onnx.load(str(tmp_path / "model.rewritten.onnx"))), x)["logits"]
    assert np.max(np.abs(a - b)) / np.max(np.abs(a)) <= FP32_TOLERANCE


def test_report_shows_each_rewrite_beside_its_pins(planted_dir, tmp_path):
    code, _, _ = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz", "--out", tmp_path,
                         "--quiet", "--no-baselines", "--fix", "auto")
    html = (tmp_path / "index.html").read_text()
    assert code == 0 and 'id="rewrite"' in html and "norm-scale:layer1.ln/Pow" in html
    assert "layer1.ln/Prescale" in html and "layer1.ln/Pow = Pow(layer1.ln/Sub, 2)" in html  # after and before
    assert "pins alone (the pin alternative)" in html and "trtexec-rewritten.txt" in html


@pytest.mark.slow
@pytest.mark.network
def test_whisper_fp16_fixed_by_rewrite_with_wer_acceptance(whisper_dir, tmp_path):
    code, stdout, err = run_cli("bisect", whisper_dir / "encoder.onnx", "--task", "whisper", "--data", ROOT / "fixtures" / "audio",
                                "--accept", "wer<=+0.5", "--out", tmp_path, "--quiet", "--no-baselines", "--fix", "rewrite")
    r = json.loads((tmp_path / "run.json").read_text())
    w = r["rewrite"]
    assert code == 0 and r["verdict"] == "fixed" and w["status"] == "fixed", stdout
    assert [c["rewrite"]["family"] for c in w["rewrites"]] == ["norm-scale"] and w["rewrites"][0]["rewrite"]["anchor"].startswith("/encoder/ln_post/")
    assert w["pins"] == [] and w["cost"]["fp32_nodes"] == 0 and max(w["fp32_outputs"].values()) <= FP32_TOLERANCE
    rows = {row["config"]: row["wer"] for row in r["task"]["rows"]}
    assert abs(rows["fp16+rewrite"] - rows["fp32"]) <= 0.005 and rows["fp16"] - rows["fp32"] > 0.005  # naive FP16 is worse
    assert _low_everywhere(tmp_path / w["files"]["mixed_onnx"])


def test_floor_past_the_log_where_the_power_flushes(family_dir, tmp_path):
    """The STFT power's smallest values flush to 0 in FP16: log gives -inf inside, which the commuted floor takes by
    design (declared, not judged by finite-inside); the outputs pass."""
    code, r, _ = _bisect(family_dir, "stft_floor_vanishes", tmp_path, "--fix", "rewrite")
    w = r["rewrite"]
    assert code == 0 and w["status"] == "fixed"
    (c,) = w["rewrites"]
    assert c["rewrite"]["family"] == "floor" and c["rewrite"]["absorbed"] and "takes it by design" in c["rewrite"]["note"]


def _nonfinite_on(model_path, edge_npz, precision="fp16") -> int:
    """Output elements non-finite in the low format (emulated, no pins) on the saved edge input."""
    from precdoctor.backends.emulate import EmulationBackend
    from precdoctor.graph.view import view
    from precdoctor.planning.plan import Plan

    g = view(onnx.load(str(model_path)))
    feed = dict(np.load(edge_npz))
    out = EmulationBackend().runner(g, Plan(precision), [feed])(feed)
    return int(sum((~np.isfinite(v)).sum() for v in out.values()))


def test_rewrite_refused_where_its_epsilon_vanishes(rewrite_dir, tmp_path):
    """The variance itself passes 65504, so the norm rewrite must scale epsilon by 2^-10: 9.77e-9, which a Cast makes 0
    in FP16 (a zero-variance row: 0/0). No power of two holds it with 2x headroom: refused and said so, never FIXED."""
    code, r, stdout = _bisect(rewrite_dir, "ln_variance_overflow", tmp_path / "rw", "--fix", "rewrite")
    w = r["rewrite"]
    assert code == 1 and r["verdict"] == "unfixed" and w["status"] == "refused", stdout
    assert "9.77e-09 is 0 in fp16" in w["message"] and "norm-scale:ln/Pow" in w["dropped"]
    assert "refused" in stdout and not (tmp_path / "rw" / "model.rewritten.onnx").exists()
    code, r, stdout = _bisect(rewrite_dir, "ln_variance_overflow", tmp_path / "auto", "--fix", "auto")
    assert code == 0 and r["verdict"] == "fixed" and r["rewrite"]["status"] == "refused" and "falls back to the pins" in r["message"]
    assert _nonfinite_on(tmp_path / "auto" / "model.mixed.onnx", rewrite_dir / "ln_variance_overflow.edge.npz") == 0


def test_rewrite_takes_a_scale_whose_epsilon_the_format_holds(rewrite_dir, tmp_path):
    """2^-4 would make epsilon 3.9e-8 (5.96e-8 in FP16: 53 % off); 2^-3 keeps 2.7x headroom and holds it. The shipped
    rewritten model stays finite on zero rows, and scan finds no risk in it that the original lacks."""
    code, r, stdout = _bisect(rewrite_dir, "ln_variance_rescaled", tmp_path, "--fix", "rewrite")
    assert code == 0, stdout
    _verified(r, tmp_path, ["norm-scale"])
    (c,) = r["rewrite"]["rewrites"]
    assert c["rewrite"]["params"]["exponent"] == -3 and "so 2^-3 is used" in c["rewrite"]["note"]
    edges = r["rewrite"]["edges"]
    assert len(edges) == 2 and all(e["added"] == 0 and e["finite"] > 0 for e in edges)
    assert _nonfinite_on(tmp_path / "model.rewritten.onnx", rewrite_dir / "ln_variance_rescaled.edge.npz") == 0
    risks = {}
    for name, path in (("original", rewrite_dir / "ln_variance_rescaled.onnx"), ("rewritten", tmp_path / "model.rewritten.onnx")):
        code, _, _ = run_cli("scan", path, "--inputs", rewrite_dir / "ln_variance_rescaled.npz", "--json", tmp_path / f"{name}.json")
        risks[name] = {(k["kind"], k["node"]) for k in json.loads((tmp_path / f"{name}.json").read_text())["risks"]
                       if k["severity"] != "low"}
    assert risks["rewritten"] <= risks["original"]


def test_edge_inputs_catch_an_epsilon_lost_on_zero_rows(rewrite_dir):
    """The check itself: the scale today's matcher refuses (2^-5, epsilon 9.77e-9) applied by hand passes the sample
    but gives NaN on the zero rows derived from it, where FP32 is finite."""
    from precdoctor.backends.emulate import EmulationBackend
    from precdoctor.graph.view import view
    from precdoctor.planning.plan import Plan
    from precdoctor.rewrite import Candidate, apply_all, edges, norm_scale
    from precdoctor.rewrite.core import Rewrite
    from precdoctor.rewrite.structure import norm_sites

    g = view(onnx.load(str(rewrite_dir / "ln_variance_overflow.onnx")))
    (site,) = norm_sites(g)
    rec = Rewrite("norm-scale:test", "norm-scale", site.square.name, [n.name for n in site.nodes], "", True, [site.output])
    rg = apply_all(g, [Candidate(rec, norm_scale._apply(site, -5, False, rec))])
    sample = dict(np.load(rewrite_dir / "ln_variance_overflow.npz"))
    derived = edges.edge_inputs([sample])
    assert any((v == 0).all(axis=-1).any() for _, f in derived for v in f.values())  # zero rows derived from the sample
    pins = Plan("fp16", frozenset(n.name for n in site.nodes if n.op_type in ("Pow", "ReduceMean", "Add", "Sqrt")))
    (on_sample,) = edges.check(g, rg, EmulationBackend(), Plan("fp16"), pins, [("sample", sample)])
    assert on_sample.added == 0  # what the samples alone show
    found = edges.check(g, rg, EmulationBackend(), Plan("fp16"), pins, derived)
    assert found[0].added > 0 and found[0].alternative == 0  # the pins keep the zero rows finite; the rewrite does not
    assert all(e.finite > 0 for e in found)


def test_a_rewrite_that_is_the_verdict_leads_terminal_and_report(planted_dir, tmp_path):
    """--fix auto, the rewrite the verdict: the summary and the report's first screen show it first and the pins after,
    as its alternative; the progress lines never call one target's naive plan both PASS and fail."""
    import re

    code, stdout, err = run_cli("bisect", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz",
                                "--out", tmp_path, "--no-baselines", "--fix", "auto")
    assert code == 0, err
    assert stdout.index("rewrite (--fix auto): FIXED") < stdout.index("the pin alternative (") < stdout.index("verdict: FIXED")
    assert "the pin alternative passes" in stdout and "this plan" not in stdout
    naive: dict[str, set[str]] = {}
    for target, word in re.findall(r"target (\S+): naive (PASS|fail)", stdout + err):
        naive.setdefault(target, set()).add(word)
    assert naive and all(len(words) == 1 for words in naive.values()), naive
    assert "the rewritten model: PASS" in stdout + err
    html = (tmp_path / "index.html").read_text()
    fix = html[html.index('id="fix"'):html.index('id="rewrite"')]
    assert fix.index("Apply 1 rewrite") < fix.index("The pin alternative: keep these 2 nodes in FP32 instead")
    assert fix.index("trtexec-rewritten.txt") < fix.index("(trtexec.txt)")

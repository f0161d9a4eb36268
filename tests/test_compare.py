"""compare and scan on the planted fixtures: origin, first divergence, verdicts, exit codes."""
import json

import pytest
from helpers import run_cli


PLANTED = ["ln_overflow", "softmax_overflow", "eps_underflow", "two_culprits", "residual_overflow", "bf16_precision"]


@pytest.mark.parametrize("name", PLANTED)
def test_origin_or_first_divergence_is_the_planted_node(name, planted_dir, fixtures, tmp_path):
    fx = fixtures[name]
    prec = next(iter(fx.culprits))
    out = tmp_path / "r.json"
    code, stdout, _ = run_cli("compare", planted_dir / f"{name}.onnx", "--inputs", planted_dir / f"{name}.npz",
                              "--precision", prec, "--json", out)
    r = json.loads(out.read_text())["comparison"]
    assert code == 1 and r["verdict"] == "diverges"
    assert fx.origin[prec] in (r["origin"], r["first_divergence"])
    assert r["tensors"] and [t["index"] for t in r["tensors"]] == list(range(len(r["tensors"])))
    # with the planted culprits pinned, compare passes
    pins = tmp_path / "pins.json"
    pins.write_text(json.dumps({"precision": prec, "pins": fx.culprits[prec]}))
    code, stdout, _ = run_cli("compare", planted_dir / f"{name}.onnx", "--inputs", planted_dir / f"{name}.npz",
                              "--precision", prec, "--pins", pins)
    assert code == 0, stdout


@pytest.mark.parametrize("prec", ["fp16", "bf16"])
def test_healthy_raises_no_alarm(prec, planted_dir, tmp_path):
    out = tmp_path / "r.json"
    code, stdout, _ = run_cli("compare", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--precision", prec, "--json", out)
    r = json.loads(out.read_text())["comparison"]
    assert code == 0 and r["verdict"] == "ok" and r["origin"] is None and r["first_divergence"] is None


def test_other_precision_of_planted_faults_stays_healthy(planted_dir, fixtures):
    for name, fx in fixtures.items():
        for prec in fx.healthy:
            code, stdout, _ = run_cli("compare", planted_dir / f"{name}.onnx", "--inputs", planted_dir / f"{name}.npz", "--precision", prec)
            assert code == 0, (name, prec, stdout)


def test_silent_corruption_is_reported(planted_dir, tmp_path):
    """ln_overflow: the Inf dies inside the LayerNorm (x / inf = 0); the output is finite but wrong."""
    out = tmp_path / "r.json"
    run_cli("compare", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz", "--json", out)
    r = json.loads(out.read_text())["comparison"]
    o = r["outputs"]["logits"]
    assert o["metrics"]["nonfinite_new"] == 0 and o["diverges"]
    assert any("silent corruption" in x for x in o["reasons"])
    assert r["trace"][0]["node"] == "layer1.ln/Pow" and r["trace"][-1]["is_output"]


def test_random_inputs_from_shapes(planted_dir):
    code, stdout, _ = run_cli("compare", planted_dir / "healthy.onnx", "--input-shapes", "x:[1,48,32]", "--seed", "3")
    assert code == 0 and "verdict: OK" in stdout


def test_scan_flags_ranges_epsilons_and_decomposed_norms(planted_dir, tmp_path):
    out = tmp_path / "s.json"
    code, stdout, _ = run_cli("scan", planted_dir / "ln_overflow.onnx", "--inputs", planted_dir / "ln_overflow.npz", "--json", out)
    r = json.loads(out.read_text())
    kinds = {(x["kind"], x["node"]) for x in r["risks"] if x["severity"] == "high"}
    assert ("range", "layer1.ln/Pow") in kinds and ("decomposed-norm", "layer1.ln/Pow") in kinds
    assert not any(x["node"].startswith("layer0") and x["severity"] == "high" for x in r["risks"])
    run_cli("scan", planted_dir / "eps_underflow.onnx", "--inputs", planted_dir / "eps_underflow.npz", "--json", out)
    r = json.loads(out.read_text())
    assert any(x["kind"] == "epsilon" and "frontend.floor" in x["tensor"] for x in r["risks"])
    run_cli("scan", planted_dir / "healthy.onnx", "--inputs", planted_dir / "healthy.npz", "--json", out)
    assert not [x for x in json.loads(out.read_text())["risks"] if x["severity"] == "high"]


def test_polygraphy_json_inputs(planted_dir, tmp_path):
    import numpy as np
    from polygraphy.json import save_json

    x = dict(np.load(planted_dir / "ln_overflow.npz"))
    save_json([x, {"x": x["x"] * 0.5}], str(tmp_path / "inputs.json"))
    out = tmp_path / "r.json"
    code, stdout, _ = run_cli("compare", planted_dir / "ln_overflow.onnx", "--inputs", tmp_path / "inputs.json", "--json", out)
    r = json.loads(out.read_text())
    assert r["inputs"]["samples"] == 2 and r["comparison"]["origin"] == "layer1.ln/Pow"


def test_memory_budget_splits_probes_without_changing_results(planted_dir, tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    run_cli("compare", planted_dir / "two_culprits.onnx", "--inputs", planted_dir / "two_culprits.npz", "--json", a)
    run_cli("compare", planted_dir / "two_culprits.onnx", "--inputs", planted_dir / "two_culprits.npz", "--json", b,
            "--memory-budget", "0.0001")  # ~100 kB: one pass per few tensors
    ra, rb = json.loads(a.read_text())["comparison"], json.loads(b.read_text())["comparison"]
    assert ra["origin"] == rb["origin"] and ra["first_divergence"] == rb["first_divergence"]
    # run.json writes non-finite numbers as "nan"/"inf" strings; float() reads both forms back.
    rel_a, rel_b = ([float(t["rel_l2"]) for t in r["tensors"]] for r in (ra, rb))
    assert rel_a == pytest.approx(rel_b, rel=1e-6, nan_ok=True)


def test_integer_outputs_are_compared_exactly(tmp_path, fixtures):
    """A model that ends in ArgMax (token ids): the verdict and argmax-agreement read the ids."""
    import onnx
    from onnx import helper

    import planted

    fx = planted.ln_overflow()
    m = fx.model
    m.graph.node.append(helper.make_node("ArgMax", ["logits"], ["ids"], name="argmax", axis=-1, keepdims=0))
    del m.graph.output[:]
    m.graph.output.append(helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 48]))
    onnx.save(m, tmp_path / "ids.onnx")
    import numpy as np

    np.savez(tmp_path / "x.npz", **fx.sample)
    out = tmp_path / "r.json"
    code, stdout, _ = run_cli("compare", tmp_path / "ids.onnx", "--inputs", tmp_path / "x.npz", "--json", out)
    r = json.loads(out.read_text())["comparison"]
    assert code == 1 and r["outputs"]["ids"]["mismatch"] > 0 and "differ from FP32" in stdout
    code, stdout, _ = run_cli("bisect", tmp_path / "ids.onnx", "--inputs", tmp_path / "x.npz", "--accept", "argmax-agreement>=1",
                              "--out", tmp_path / "b", "--quiet", "--no-report", "--no-baselines")
    r = json.loads((tmp_path / "b" / "run.json").read_text())
    assert code == 0 and r["verdict"] == "fixed" and "layer1.ln/Pow" in r["pins"]
